//! GPU access: device, NVRTC discovery and compilation, module cache, timing.
pub mod blas;
pub mod cache;
pub mod device;
pub mod error;
pub mod libs;
pub mod nvml;
pub mod nvrtc;
pub mod timer;
pub mod tma;
pub mod util;
pub mod wheels;
