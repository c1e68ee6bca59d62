//! `blindface bench`: timings and sizes of the encrypted path on a synthetic gallery held
//! by the real matcher (store, blocks, streamed identify), with every decrypted distance
//! checked against the plaintext. The gallery is bulk-encrypted in parallel into a store
//! in a temporary directory, then re-opened, so `store_open_ms` and the gallery's
//! resident memory are measured, not computed from sizes.

use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rayon::prelude::*;
use serde::Serialize;

use blindface::he::{
    decrypt_block, encrypt_probe, encrypt_template, synthetic_template, BlockResult, MatchResult,
    Params, PreparedProbe, SecretKey, TemplateId,
};
use blindface::matcher::{Galleries, Store, StoreUsage, IDENTIFY_CHUNK, STORE_FILE};

use super::output::{emit, Globals};

#[derive(Serialize)]
struct BenchOutput {
    params_version: u16,
    dims: usize,
    slots_per_block: usize,
    gallery: usize,
    blocks: usize,
    threads: usize,
    probe_encrypt_ms: f64,
    probe_prepare_ms: f64,
    template_encrypt_ms: f64,
    enrol_total_s: f64,
    match_1to1_ms: f64,
    match_ms: f64,
    match_1thread_ms: f64,
    decrypt_ms: f64,
    probe_bytes: usize,
    template_bytes: usize,
    /// Resident memory the re-opened gallery added, per template (Linux; null elsewhere).
    server_bytes_per_template: Option<f64>,
    /// Size of the store file after enrolling and compacting, per template.
    store_bytes_per_template: f64,
    /// Disk space the compacted store file takes (Unix: blocks allocated; redb grows its
    /// file by doubling, and the unwritten end of the file takes no space).
    store_disk_bytes_per_template: Option<f64>,
    /// The store file's length before compaction (free pages of the bulk transactions).
    store_bytes_per_template_uncompacted: f64,
    /// redb's accounting of the compacted store: allocated pages, and per table the bytes
    /// stored, indexed and left unused in its pages.
    store_usage: StoreUsage,
    store_open_ms: f64,
    result_bytes: usize,
    result_bytes_per_template: f64,
    /// Peak resident memory an identify added, matcher and decryption together (Linux).
    identify_peak_mb: Option<f64>,
    exact: bool,
}

/// Median wall time of `reps` runs of `f`, in milliseconds.
fn median_ms<T>(reps: usize, mut f: impl FnMut() -> T) -> f64 {
    let mut times: Vec<Duration> = (0..reps.max(1))
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

const SEED: u64 = 2026;
const TENANT: &str = "bench";
/// A sealed label's size for a 13-byte name (magic, nonce, name, tag): what a real
/// enrolment stores beside its template.
const LABEL_BYTES: usize = 4 + 24 + 13 + 16;
/// Templates encrypted (in parallel) and committed per store transaction.
const BATCH: usize = 15 * 200;

/// Ids are spread over [1, 2^53) like the app's random ones (so the store's slot table
/// sees inserts in random order, as in real use): template `i` is synthetic number `i`
/// and gets id `(i + 1) * ID_MULTIPLIER mod 2^53`, a bijection that never gives 0.
const ID_MULTIPLIER: u64 = 0x9E37_79B9_7F4A_7C15;
const ID_MASK: u64 = (1 << 53) - 1;

fn id_of(i: usize) -> TemplateId {
    TemplateId((i as u64 + 1).wrapping_mul(ID_MULTIPLIER) & ID_MASK)
}

/// The synthetic number of an [`id_of`] id.
fn index_of(id: TemplateId) -> u64 {
    // The multiplier's inverse mod 2^64 (Newton's iteration), hence mod 2^53.
    let mut inverse = ID_MULTIPLIER;
    for _ in 0..6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(ID_MULTIPLIER.wrapping_mul(inverse)));
    }
    (id.0.wrapping_mul(inverse) & ID_MASK) - 1
}

pub fn bench(globals: &Globals, n: usize, params: Params) -> Result<()> {
    ensure!(n >= 1, "--gallery must be at least 1");
    let key = SecretKey::generate(&params);
    let probe_t = synthetic_template(u64::MAX, SEED, &params);
    let dir = tempfile::tempdir().context("creating a temporary store directory")?;

    // Build: encrypt in parallel, enrol in bulk transactions.
    let label = vec![0x5au8; LABEL_BYTES];
    let mut encrypt_time = Duration::ZERO;
    let started = Instant::now();
    let template_bytes;
    {
        let galleries = Galleries::open(dir.path(), &params, n)?;
        template_bytes = encrypt_template(&key, &probe_t).wire_len();
        for start in (0..n).step_by(BATCH) {
            let t = Instant::now();
            let items: Vec<_> = (start..n.min(start + BATCH))
                .into_par_iter()
                .map(|i| {
                    let t = synthetic_template(i as u64, SEED, &params);
                    (id_of(i), encrypt_template(&key, &t), label.clone())
                })
                .collect();
            encrypt_time += t.elapsed();
            galleries.enrol_many(TENANT, items, BATCH)?;
        }
    }
    let enrol_total_s = started.elapsed().as_secs_f64();
    let store_file = dir.path().join(STORE_FILE);
    let store_bytes_uncompacted = std::fs::metadata(&store_file)?.len();
    let store_usage = {
        let mut store = Store::open(dir.path())?;
        store.compact()?;
        store.usage()?
    };
    let store_bytes = std::fs::metadata(&store_file)?.len();
    let store_disk_bytes = disk_bytes(&store_file)?;

    // Re-open: the time to load, and the memory the gallery holds.
    let idle = resident_bytes();
    let t = Instant::now();
    let galleries = Galleries::open(dir.path(), &params, n)?;
    let store_open_ms = t.elapsed().as_secs_f64() * 1e3;
    let server_bytes_per_template = idle
        .zip(resident_bytes())
        .map(|(a, b)| b.saturating_sub(a) as f64 / n as f64);

    let probe_encrypt_ms = median_ms(21, || encrypt_probe(&key, &probe_t));
    let (probe, ctx) = encrypt_probe(&key, &probe_t);
    let probe_bytes = probe.wire_len();
    let probe_prepare_ms = median_ms(21, || PreparedProbe::new(&probe, &params));
    let prepared = PreparedProbe::new(&probe, &params)?;

    let (blocks, match_1to1_ms, match_ms, match_1thread_ms) =
        galleries.with_gallery(TENANT, |g| -> Result<_> {
            let blocks = g.occupied_blocks();
            let reps = (4000 / blocks.max(1)).clamp(3, 201);
            let count_only = || {
                g.identify_chunks(&prepared, IDENTIFY_CHUNK, |part| {
                    std::hint::black_box(part);
                    Ok::<(), blindface::he::HeError>(())
                })
            };
            let match_1to1_ms = median_ms(201, || g.verify(&prepared, id_of(0)));
            let match_ms = median_ms(reps, count_only);
            let single = rayon::ThreadPoolBuilder::new().num_threads(1).build()?;
            let match_1thread_ms = single.install(|| median_ms(reps.min(5), count_only));
            Ok((blocks, match_1to1_ms, match_ms, match_1thread_ms))
        })??;

    // One streamed identify through the matcher, decrypting each chunk as it comes, with
    // every distance checked and the peak memory it took.
    reset_peak();
    let before = resident_bytes();
    let mut decrypting = Duration::ZERO;
    let mut checked = 0usize;
    let mut exact = true;
    let mut result_bytes = MatchResult::max_wire_len(&params, 0);
    let mut block_no = 0usize;
    galleries.identify_chunks(
        TENANT,
        &probe,
        IDENTIFY_CHUNK,
        |_| Ok(()),
        |_, part: Vec<BlockResult>| {
            for b in &part {
                result_bytes += BlockResult::encoded_len(&params, b.entries.len());
                let t = Instant::now();
                let distances = decrypt_block(&key, &ctx, b, block_no)?;
                decrypting += t.elapsed();
                block_no += 1;
                for d in distances {
                    let plain = synthetic_template(index_of(d.id), SEED, &params);
                    exact &= d.distance_sq == probe_t.distance_sq(&plain);
                    checked += 1;
                }
            }
            Ok(())
        },
    )?;
    let identify_peak_mb = before
        .zip(peak_bytes())
        .map(|(a, b)| b.saturating_sub(a) as f64 / 1e6);
    let exact = exact && checked == n;

    let out = BenchOutput {
        params_version: params.version,
        dims: params.dim,
        slots_per_block: params.slots_per_block(),
        gallery: n,
        blocks,
        threads: rayon::current_num_threads(),
        probe_encrypt_ms,
        probe_prepare_ms,
        template_encrypt_ms: encrypt_time.as_secs_f64() * 1e3 / n as f64,
        enrol_total_s,
        match_1to1_ms,
        match_ms,
        match_1thread_ms,
        decrypt_ms: decrypting.as_secs_f64() * 1e3,
        probe_bytes,
        template_bytes,
        server_bytes_per_template,
        store_bytes_per_template: store_bytes as f64 / n as f64,
        store_disk_bytes_per_template: store_disk_bytes.map(|b| b as f64 / n as f64),
        store_bytes_per_template_uncompacted: store_bytes_uncompacted as f64 / n as f64,
        store_usage,
        store_open_ms,
        result_bytes,
        result_bytes_per_template: result_bytes as f64 / n as f64,
        identify_peak_mb,
        exact,
    };
    let opt = |v: Option<f64>, unit: &str| v.map_or("n/a".into(), |v| format!("{v:.0} {unit}"));
    emit(globals, &out, || {
        format!(
            "encrypted path, parameters v{} ({} dimensions), gallery {} ({} blocks of {}), {} threads\n\
             \x20 probe encryption       {:>9.3} ms   ({} bytes)\n\
             \x20 probe to Fourier       {:>9.3} ms   (matcher, once per probe)\n\
             \x20 template encryption    {:>9.3} ms   ({} bytes uploaded; {:.1} s to enrol all)\n\
             \x20 match 1:1              {:>9.3} ms\n\
             \x20 match 1:{:<6}         {:>9.3} ms   ({:.3} ms on 1 thread)\n\
             \x20 decrypt 1:{:<6}       {:>9.3} ms   (result {} bytes, {:.0} per template)\n\
             \x20 memory per template    {}   (store file {:.0} bytes compacted, {:.0} before, on disk {}; open {:.0} ms)\n\
             \x20 identify peak memory   {}\n\
             \x20 every distance exact   {}\n",
            out.params_version,
            out.dims,
            out.gallery,
            out.blocks,
            params.slots_per_block(),
            out.threads,
            out.probe_encrypt_ms,
            out.probe_bytes,
            out.probe_prepare_ms,
            out.template_encrypt_ms,
            out.template_bytes,
            out.enrol_total_s,
            out.match_1to1_ms,
            out.gallery,
            out.match_ms,
            out.match_1thread_ms,
            out.gallery,
            out.decrypt_ms,
            out.result_bytes,
            out.result_bytes_per_template,
            opt(out.server_bytes_per_template, "bytes"),
            out.store_bytes_per_template,
            out.store_bytes_per_template_uncompacted,
            opt(out.store_disk_bytes_per_template, "bytes"),
            out.store_open_ms,
            opt(out.identify_peak_mb, "MB"),
            if out.exact { "yes" } else { "NO" }
        )
    });
    ensure!(
        exact,
        "decrypted distances differ from the plaintext computation"
    );
    Ok(())
}

/// Bytes of disk a file takes (Unix), as `du` counts them.
fn disk_bytes(path: &std::path::Path) -> Result<Option<u64>> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt;
        Ok(Some(meta.blocks() * 512))
    }
    #[cfg(not(unix))]
    {
        let _ = meta;
        Ok(None)
    }
}

/// Resident set size of this process, after returning freed heap to the OS (Linux).
fn resident_bytes() -> Option<u64> {
    blindface::matcher::return_free_heap();
    status_field("VmRSS:")
}

/// Peak resident set size since the last [`reset_peak`] (Linux).
fn peak_bytes() -> Option<u64> {
    status_field("VmHWM:")
}

fn reset_peak() {
    // Linux >= 4.0: writing 5 resets the peak RSS to the current RSS.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn status_field(name: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(name))?;
    let kb: u64 = line[name.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bench_ids_are_valid_distinct_and_map_back() {
        let mut seen = std::collections::HashSet::new();
        for i in (0..100_000).chain([999_999, 5_000_000]) {
            let id = id_of(i);
            assert!(id.is_valid(), "{id}");
            assert!(seen.insert(id));
            assert_eq!(index_of(id), i as u64);
        }
    }
}
