//! Fuzz target: The in-memory ONNX fix-up of `vision::onnx_edit` on arbitrary bytes.
//! The check and the input layout are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blindface_fuzz::onnx_edit(data);
});
