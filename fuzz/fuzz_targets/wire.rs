//! Fuzz target: Wire objects of `he::wire` (keys, templates, probes, gallery blocks): parse,
//! re-serialise, compare.
//! The check and the input layout are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blindface_fuzz::wire(data);
});
