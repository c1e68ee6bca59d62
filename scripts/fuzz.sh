#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ (cargo-fuzz, libFuzzer) for SECONDS seconds each, one
# after the other. Not run by CI: fuzzing is open-ended and needs nightly Rust.
#
#   scripts/fuzz.sh [SECONDS] [TARGET...]     (default: 180 seconds, every target)
#
# Needs `rustup toolchain install nightly` and `cargo install cargo-fuzz --locked`.
# Builds in release with debug assertions (overflow checks on), 16 codegen units (a
# faster build) and AddressSanitizer off
# (`-s none`: the Rust code is memory-safe; libFuzzer still finds panics, hangs and
# excessive allocation). CARGO_TARGET_DIR defaults to fuzz/target. Each run starts from
# the seeds in fuzz/seeds/TARGET (small real objects, see tests/fuzz_regressions.rs) and
# the corpus it grew before (fuzz/corpus/TARGET, not committed), and is limited to
# RSS_MB (default 1024) resident and MALLOC_MB (default 512) per allocation, and 10
# seconds per input. A crash is saved under fuzz/artifacts/TARGET/; keep it as
# tests/fuzz_regressions/TARGET/NAME once fixed (see tests/fuzz_regressions.rs) and
# reproduce it with
#   cargo +nightly fuzz run -s none -a TARGET fuzz/artifacts/TARGET/crash-...
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-180}
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(wire result_stream jpeg_frame onnx_edit multipart)
FLAGS=(-s none -a --release --codegen-units 16)

for t in "${TARGETS[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  echo "== $t: ${SECONDS_EACH}s"
  cargo +nightly fuzz run "${FLAGS[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
    -max_total_time="$SECONDS_EACH" -rss_limit_mb="${RSS_MB:-1024}" \
    -malloc_limit_mb="${MALLOC_MB:-512}" -timeout=10 -print_final_stats=1
done
