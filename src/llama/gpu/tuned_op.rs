//! What a row of the model's tuned-op table ([`super::ops::TUNED_OPS`]) is, and the one
//! trait the launchers it builds sit behind. The choice ([`super::op_choice`]) reads a row's
//! families, shape and fit; the op kernels ([`super::ops`]) its entries and launcher.

use super::op_fit::{Chosen, OpKind};
use super::shape::ModelShape;
use crate::gpu::device::{Gpu, Kernel};
use crate::kernels::tunables::Tunables;
use crate::llama::config::LlamaConfig;
use anyhow::{anyhow, Result};
use std::any::Any;

/// What the tuned-op table's rows read about the model to choose and fit a family's config.
pub struct ModelFacts<'a> {
    pub config: &'a LlamaConfig,
    pub shape: &'a ModelShape,
    /// Dynamic shared memory one block may opt into on this GPU.
    pub max_smem: i64,
}

/// A family's shape dimensions by name, as the tuned database is queried with them.
pub type QueryShape = Vec<(&'static str, i64)>;

/// What a row's launcher constructor returns.
pub type BoxedLauncher = Box<dyn TunedLauncher>;

/// One op of the model that may run a tuned kernlab family instead of its ops.cu kernel.
pub struct TunedOp {
    /// The op's name in the choice notes.
    pub name: &'static str,
    /// The op it runs: its profile row, and its key in [`OpChoice`] and [`OpKernels`].
    pub kind: OpKind,
    /// Families whose tuned winners serve the op, searched in order; the first gives the
    /// template defaults when none has a winner (the varlen and plain attention families
    /// share a template).
    pub families: &'static [&'static str],
    /// The model's shape for the tuned database query; an error keeps the reference kernel.
    pub shape: fn(&ModelFacts) -> Result<QueryShape>,
    /// Makes the chosen config fit the model (vector widths, head dim, shared memory); an
    /// error keeps the reference kernel.
    pub fit: fn(Chosen, &ModelFacts) -> Result<Chosen>,
    /// Entry points the model loads from the family's module for a variant, in the order
    /// `launcher` takes them.
    pub entries: fn(variant: &str) -> &'static [&'static str],
    /// The family's launcher over those kernels, built from the tunables they were compiled with.
    pub launcher: fn(&Gpu, Vec<Kernel>, &Tunables) -> Result<BoxedLauncher>,
    /// A note the choice adds after all others when the op is tuned.
    pub tuned_note: Option<&'static str>,
}

/// A tuned family compiled for the model: its kernels with the family's launcher, as
/// [`super::ops::OpKernels`] keeps it per op. The op's method takes it back as the concrete
/// type its row built (a downcast through [`Any`]), since each op launches with its own
/// buffers and integers. A launcher type says it is one next to its definition.
pub trait TunedLauncher: Any {}

/// A family of one entry point (rmsnorm, swiglu, rope) with its launcher.
pub struct OneKernel<L> {
    pub kernel: Kernel,
    pub launch: L,
}

impl<L> OneKernel<L> {
    pub fn new(ks: Vec<Kernel>, launch: L) -> Result<OneKernel<L>> {
        let [kernel] = kernels(ks)?;
        Ok(OneKernel { kernel, launch })
    }
}

impl<L: 'static> TunedLauncher for OneKernel<L> {}

/// The `N` kernels of a row's entries, in order.
pub fn kernels<const N: usize>(ks: Vec<Kernel>) -> Result<[Kernel; N]> {
    let got = ks.len();
    ks.try_into().map_err(|_| anyhow!("internal: expected {N} kernels of a tuned family, loaded {got}"))
}
