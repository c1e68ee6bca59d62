//! Fuzz target: Camera frames of `frames::decode`: JPEG structural checks, MJPEG and
//! raw-format decoding. The check and the input layout are in `fuzz/src/lib.rs`.
//!
//! `decode_jpeg` runs the third-party decoder inside `catch_unwind` on purpose (one bad
//! frame must not take the camera down). libfuzzer-sys's panic hook aborts before any
//! unwinding, which would report those contained panics as crashes; the init block puts
//! the default hook back (it prints the panic), so only a panic that escapes `decode` (one
//! in our code) reaches libfuzzer-sys's own `catch_unwind` and is reported.
#![no_main]

libfuzzer_sys::fuzz_target!(
    init: {
        drop(std::panic::take_hook());
    },
    |data: &[u8]| {
        blindface_fuzz::jpeg_frame(data);
    }
);
