//! GPU access: device, NVRTC discovery and compilation, module cache, timing.
pub mod cache;
pub mod libs;
pub mod nvrtc;
