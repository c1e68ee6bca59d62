//! Fuzz target: the MJPEG stream's multipart part splitter (`frames::multipart`): the
//! same parts and outcome whatever the pieces the body arrives in, no part over the limit.
//! The check and the input layout are in `fuzz/src/lib.rs`.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    blindface_fuzz::multipart(data);
});
