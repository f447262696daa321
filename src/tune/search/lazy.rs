//! The adapter between the sweep's lazy space ([`SweepSpace`], addressed by index and never
//! built) and what a strategy sees ([`SearchSpace`]): the variants that apply to the shape,
//! each variant's value lists, and a validity check that evaluates the sweep file's
//! constraints at a point.
//!
//! A space of at most [`GRID_LIMIT`] points is examined once in full, so the strategies get
//! the exact list of valid candidates (and the sweep its exact drop counts) when there are at
//! most [`LIST_LIMIT`] of them. A larger space is never examined in full: strategies sample
//! it by rejection and walk neighbours, and only the points they look at are checked, so
//! memory follows the number of evaluations, not the size of the space (2^64 is fine).

use super::space::{Dim, SearchSpace};
use crate::tune::space::enumerate::Tally;
use crate::tune::space::{Candidate, SweepSpace, VariantSpace, Verdict, GRID_LIMIT};
use anyhow::{anyhow, Result};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The most valid candidates kept as a list (about 200 bytes each).
pub const LIST_LIMIT: usize = 100_000;

pub struct LazySpace<'a> {
    space: SweepSpace<'a>,
    variants: Vec<String>,
    dims: BTreeMap<String, Vec<Dim>>,
    by_name: BTreeMap<String, &'a VariantSpace>,
    /// Every valid candidate, in enumeration order, when the space was examined in full
    /// and they are few enough.
    list: Option<Vec<Candidate>>,
    /// Valid candidates, when the space was examined in full.
    valid: Option<u128>,
    /// Drop counts by rule of the full examination (empty otherwise) and the total.
    dropped: Vec<(String, u128)>,
    /// The first error a validity check hit (an overflow in a constraint): the strategy
    /// sees such a point as invalid, the runner stops with the error.
    error: Mutex<Option<String>>,
}

impl<'a> LazySpace<'a> {
    pub fn new(space: SweepSpace<'a>) -> Result<LazySpace<'a>> {
        let mut variants = Vec::new();
        let mut dims = BTreeMap::new();
        let mut by_name = BTreeMap::new();
        for v in space.variants() {
            // A strategy's moves go along sorted value lists; the file's order does not matter.
            let d = v
                .params
                .iter()
                .map(|(name, vals)| {
                    let mut values = vals.clone();
                    values.sort_unstable();
                    Dim { name: name.clone(), values }
                })
                .collect();
            variants.push(v.name.clone());
            dims.insert(v.name.clone(), d);
            by_name.insert(v.name.clone(), v);
        }
        let mut out = LazySpace {
            space,
            variants,
            dims,
            by_name,
            list: None,
            valid: None,
            dropped: Vec::new(),
            error: Mutex::new(None),
        };
        if out.space.live() <= GRID_LIMIT {
            out.examine_all()?;
        }
        Ok(out)
    }

    fn examine_all(&mut self) -> Result<()> {
        let mut tally = Tally::default();
        let mut list = Vec::new();
        let mut valid = 0u128;
        for g in 0..self.space.live() {
            if let Some(c) = self.space.examine(g, &mut tally)? {
                valid += 1;
                if list.len() < LIST_LIMIT {
                    list.push(c);
                }
            }
        }
        self.list = (valid <= LIST_LIMIT as u128).then_some(list);
        self.valid = Some(valid);
        self.dropped = self.space.counts(tally).0;
        Ok(())
    }

    /// The sweep's lazy space underneath.
    pub fn sweep_space(&self) -> &SweepSpace<'a> {
        &self.space
    }

    /// Points of the variants that apply to the shape.
    pub fn points(&self) -> u128 {
        self.space.live()
    }

    /// Valid candidates, when the space was small enough to examine in full.
    pub fn valid(&self) -> Option<u128> {
        self.valid
    }

    /// Drop counts by rule, when the space was examined in full.
    pub fn dropped(&self) -> &[(String, u128)] {
        &self.dropped
    }

    /// The error a validity check hit, if any (then the search must stop).
    pub fn take_error(&self) -> Option<anyhow::Error> {
        let mut e = self.error.lock().unwrap_or_else(|p| p.into_inner());
        e.take().map(|m| anyhow!(m))
    }

    fn check(&self, c: &Candidate) -> bool {
        let Some(v) = self.by_name.get(&c.variant) else { return false };
        if c.params.len() != v.params.len() {
            return false;
        }
        let mut point = Vec::with_capacity(v.params.len());
        for (name, vals) in &v.params {
            match c.params.get(name) {
                Some(x) if vals.contains(x) => point.push(*x),
                _ => return false,
            }
        }
        match self.space.check(v, &point) {
            Ok(verdict) => verdict == Verdict::Valid,
            Err(e) => {
                let mut slot = self.error.lock().unwrap_or_else(|p| p.into_inner());
                slot.get_or_insert_with(|| format!("{e:#}"));
                false
            }
        }
    }
}

impl SearchSpace for LazySpace<'_> {
    fn variants(&self) -> &[String] {
        &self.variants
    }
    fn dims(&self, variant: &str) -> &[Dim] {
        self.dims.get(variant).map(|d| d.as_slice()).unwrap_or(&[])
    }
    fn is_valid(&self, c: &Candidate) -> bool {
        self.check(c)
    }
    fn size(&self) -> Option<usize> {
        self.valid.and_then(|n| usize::try_from(n).ok())
    }
    fn list(&self) -> Option<&[Candidate]> {
        self.list.as_deref()
    }
}
