//! blindface: face verification and identification where the matcher is blind.
//!
//! Data flows one way: frame -> face ([`vision`]) -> template ([`he::quantise`]) ->
//! ciphertext ([`he`]) -> matcher -> distances -> verdict. The crypto core ([`he`]) depends
//! on neither UI, camera, network nor ONNX. [`calibration`] says what a threshold means in
//! error rates (LFW View 1 DevTrain, shipped).

pub mod app;
pub mod calibration;
pub mod client;
pub mod eval;
pub mod frames;
pub mod fsutil;
pub mod he;
pub mod labels;
pub mod live;
pub mod matcher;
pub mod ort_platform;
pub mod paths;
pub mod ranking;
pub mod roc;
pub mod server;
pub mod vision;
