//! Face pipeline: image loading, YuNet detection, alignment, SFace embedding.
