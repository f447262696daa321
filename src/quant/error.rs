//! Errors for quantized weight formats and converters.
//!
//! Every variant names the tensor it is about (`qweight`, `scales`, ...), so a loader can add
//! the layer name with `anyhow::Context` and the user sees exactly which array is wrong.

use thiserror::Error;

#[derive(Debug, Error, PartialEq)]
pub enum FormatError {
    /// A shape parameter is unusable (zero, not a multiple of what the layout needs, ...).
    #[error("{tensor}: {what}")]
    BadShape { tensor: String, what: String },

    /// A tensor holds a different number of elements than its shape demands.
    #[error("{tensor}: has {got} elements but shape {shape} needs {expected}")]
    WrongLength { tensor: String, shape: String, expected: usize, got: usize },

    /// A tensor's declared shape differs from the one the layout requires.
    #[error("{tensor}: shape {got:?} does not match the expected {expected:?}")]
    ShapeMismatch { tensor: String, expected: Vec<usize>, got: Vec<usize> },

    /// A value is out of its allowed range (zero point > 16, non-finite weight, bad g_idx...).
    #[error("{tensor}: {what}")]
    BadValue { tensor: String, what: String },

    /// A format name or dtype we do not know.
    #[error("unknown {kind} '{name}' (known: {known})")]
    Unknown { kind: String, name: String, known: String },
}

pub type Result<T> = std::result::Result<T, FormatError>;

pub(crate) fn bad_shape(tensor: &str, what: impl Into<String>) -> FormatError {
    FormatError::BadShape { tensor: tensor.to_string(), what: what.into() }
}

pub(crate) fn bad_value(tensor: &str, what: impl Into<String>) -> FormatError {
    FormatError::BadValue { tensor: tensor.to_string(), what: what.into() }
}

/// Checks `data.len() == expected`, naming the tensor and its shape when it is not.
pub(crate) fn check_len(tensor: &str, shape: &[usize], expected: usize, got: usize) -> Result<()> {
    if expected != got {
        return Err(FormatError::WrongLength {
            tensor: tensor.to_string(),
            shape: format!("{shape:?}"),
            expected,
            got,
        });
    }
    Ok(())
}

/// Checks a declared tensor shape against the one the layout requires.
pub(crate) fn check_shape(tensor: &str, expected: &[usize], got: &[usize]) -> Result<()> {
    if expected != got {
        return Err(FormatError::ShapeMismatch {
            tensor: tensor.to_string(),
            expected: expected.to_vec(),
            got: got.to_vec(),
        });
    }
    Ok(())
}
