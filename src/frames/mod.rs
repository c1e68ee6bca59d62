//! Frames from outside, with no UI: camera buffers decoded to RGB by our own code
//! ([`mod@decode`]: MJPEG, YUYV, NV12, RGB, BGR, GRAY, with typed errors and drop counters) and
//! a live source that needs no webcam ([`mjpeg_http`]: an MJPEG-over-HTTP stream reader
//! with reconnect, over ureq, whose body [`multipart`] splits into parts). The app's capture
//! thread hands [`RawFrame`]s to [`decode()`]; the app and the CLI open [`MjpegStream`]s.

pub mod decode;
pub mod mjpeg_http;
pub mod multipart;

pub use decode::{
    decode, decode_jpeg, DropReason, FrameCounter, FrameCounts, FrameError, PixelFormat, RawFrame,
};
pub use mjpeg_http::{MjpegStream, StreamError, StreamOptions, StreamState, StreamStatus};
pub use multipart::{MultipartError, Part, Splitter};
