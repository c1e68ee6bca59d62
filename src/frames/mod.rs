//! Frames from outside, with no UI: camera buffers decoded to RGB by our own code
//! ([`decode`]: MJPEG, YUYV, NV12, RGB, BGR, GRAY, with typed errors and drop counters).
//! The app's capture thread hands [`RawFrame`]s to [`decode`].

pub mod decode;

pub use decode::{
    decode, decode_jpeg, DropReason, FrameCounter, FrameCounts, FrameError, PixelFormat, RawFrame,
};
