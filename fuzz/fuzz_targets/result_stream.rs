//! Fuzz target: Match result streams of `he::result`: the whole-buffer and streaming readers
//! agree, and accepted results round-trip.
//! The check and the input layout are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blindface_fuzz::result_stream(data);
});
