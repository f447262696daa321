//! The bottom layer: plain types every other layer shares and none of which depends on a
//! GPU, a kernel family or the tuner (element types, timing summaries, device limits).
//! Everything above imports from here; nothing here imports from above.

pub mod dtype;
pub mod limits;
pub mod timing;

pub use dtype::DType;
pub use limits::DeviceLimits;
pub use timing::Timing;
