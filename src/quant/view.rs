//! A borrowed tensor (shape + flat row-major data), as a checkpoint loader hands it over.

use super::error::{check_len, check_shape, Result};

#[derive(Debug, Clone, Copy)]
pub struct TensorView<'a, T> {
    pub shape: &'a [usize],
    pub data: &'a [T],
}

impl<'a, T> TensorView<'a, T> {
    pub fn new(shape: &'a [usize], data: &'a [T]) -> Self {
        TensorView { shape, data }
    }

    /// Checks that the declared shape is `expected` and that the data fills it; errors name
    /// `tensor`.
    pub fn expect(&self, tensor: &str, expected: &[usize]) -> Result<()> {
        check_shape(tensor, expected, self.shape)?;
        check_len(tensor, self.shape, expected.iter().product(), self.data.len())
    }
}
