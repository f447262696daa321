//! GPU access: device, NVRTC discovery and compilation, module cache, timing.
