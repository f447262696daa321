//! Spaces of any size, never built in memory.
//!
//! A variant's space is the mixed-radix product of its parameter value lists (parameters in
//! name order, the last one varying fastest). Point `i` is computed from `i` alone, so a space
//! of 2^64 points costs nothing until points are examined. For one shape, the variants that
//! apply are laid end to end into one index range ([`SweepSpace`]); strategies draw indices
//! from it and check each point as they go.
//!
//! The API a search strategy needs:
//! - [`Sweep::env`]: the shape and device values, once per shape;
//! - [`Sweep::space`]: the shape's index range; [`SweepSpace::live`] its size,
//!   [`SweepSpace::locate`] the variant and local index of a global index;
//! - [`VariantSpace::size`], [`VariantSpace::point`] (index → values, in
//!   [`VariantSpace::param_names`] order), [`VariantSpace::check`] / [`VariantSpace::is_valid`]
//!   (derived values and constraints), [`VariantSpace::candidate`] (values → [`Candidate`]).
//!
//! Expressions are evaluated over slots laid out as: the shape's dimensions, [`DEVICE_NAMES`],
//! the parameters, the derived values (see `load_variant`).

use super::{Candidate, DeviceLimits, Sweep, VariantSpace, DEVICE_NAMES};
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// The most points a strategy examines one by one (grid, or random over the whole space);
/// above it, grid needs a budget and random samples.
pub const GRID_LIMIT: u128 = 1_000_000;

/// The values of a shape's dimensions and the device limits, in slot order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShapeEnv {
    slots: Vec<i64>,
    cc: i64,
}

/// Whether a point passes its variant's constraints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Valid,
    /// Dropped by the constraint with this index in [`VariantSpace::constraints`].
    Dropped(usize),
    /// Passes the constraints but belongs to another `--shard` ([`crate::tune::shard`]).
    OtherShard,
}

/// The result of examining a whole (small) space for one shape.
#[derive(Debug, Clone, Default)]
pub struct Enumeration {
    pub kept: Vec<Candidate>,
    /// How many were dropped by each rule ("BM % WM == 0", "not for this shape: M > 16", ...).
    pub dropped: Vec<(String, usize)>,
    pub total: usize,
}

/// Drop counts by rule, and how many points were examined one by one.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    pub dropped: BTreeMap<String, u128>,
    pub examined: u128,
}

impl Sweep {
    /// The values expressions see for one shape (`shape` must name every dimension of the
    /// family).
    pub fn env(&self, shape: &[(String, i64)], dtype_bytes: i64, l: &DeviceLimits) -> Result<ShapeEnv> {
        let mut slots = Vec::with_capacity(self.dims.len() + DEVICE_NAMES.len());
        for d in &self.dims {
            let v = shape.iter().find(|(k, _)| k == d).map(|(_, v)| *v);
            slots.push(v.ok_or_else(|| anyhow!("{}: the shape has no dimension {d}", self.path.display()))?);
        }
        slots.extend([l.max_smem, l.max_threads, l.sm_count, l.cc, dtype_bytes]);
        Ok(ShapeEnv { slots, cc: l.cc })
    }

    /// The index range of the variants that apply to a shape (`when`, `min_cc`).
    pub fn space<'a>(&'a self, env: &'a ShapeEnv) -> Result<SweepSpace<'a>> {
        let mut parts = Vec::new();
        let (mut total, mut live) = (0u128, 0u128);
        let mut skipped = Vec::new();
        for (i, v) in self.variants.iter().enumerate() {
            total = total.checked_add(v.size).ok_or_else(|| self.too_many_points())?;
            match v.skip_reason(&self.path, env)? {
                Some(why) => skipped.push((why, v.size)),
                None => {
                    parts.push((i, live));
                    live = live.checked_add(v.size).ok_or_else(|| self.too_many_points())?;
                }
            }
        }
        Ok(SweepSpace { sweep: self, env, parts, total, live, skipped })
    }

    fn too_many_points(&self) -> anyhow::Error {
        anyhow!("{}: the variants together have more than 2^128 points; split the sweep file", self.path.display())
    }

    /// Examines every point for one shape and keeps the valid ones. For spaces of at most
    /// [`GRID_LIMIT`] points; larger ones get an error that says to sample them.
    pub fn enumerate(&self, shape: &[(String, i64)], dtype_bytes: i64, limits: &DeviceLimits) -> Result<Enumeration> {
        let env = self.env(shape, dtype_bytes, limits)?;
        let space = self.space(&env)?;
        if space.live() > GRID_LIMIT {
            return Err(space.too_large("enumerating every candidate"));
        }
        let mut tally = Tally::default();
        let mut kept = Vec::new();
        for g in 0..space.live() {
            if let Some(c) = space.examine(g, &mut tally)? {
                kept.push(c);
            }
        }
        let (dropped, total) = space.counts(tally);
        let small = |n: u128| usize::try_from(n).map_err(|_| space.too_large("counting the candidates"));
        let dropped = dropped.into_iter().map(|(k, n)| Ok((k, small(n)?))).collect::<Result<Vec<_>>>()?;
        Ok(Enumeration { kept, dropped, total: small(total)? })
    }
}

impl VariantSpace {
    /// Number of points (the product of the value-list lengths).
    pub fn size(&self) -> u128 {
        self.size
    }

    /// Parameter names in the order of [`VariantSpace::point`]'s values.
    pub fn param_names(&self) -> impl Iterator<Item = &str> {
        self.params.keys().map(|k| k.as_str())
    }

    /// The values of point `i` (None past the end), the last parameter varying fastest.
    pub fn point(&self, i: u128) -> Option<Vec<i64>> {
        if i >= self.size {
            return None;
        }
        let mut rest = i;
        let mut out = vec![0; self.params.len()];
        for (slot, vals) in out.iter_mut().zip(self.params.values()).rev() {
            let n = vals.len() as u128;
            *slot = vals[(rest % n) as usize];
            rest /= n;
        }
        Some(out)
    }

    /// The candidate with these parameter values.
    pub fn candidate(&self, point: &[i64]) -> Candidate {
        Candidate {
            variant: self.name.clone(),
            params: self.param_names().map(String::from).zip(point.iter().copied()).collect(),
        }
    }

    /// Why the whole variant is not tried on this shape, if it is not.
    pub fn skip_reason(&self, path: &std::path::Path, env: &ShapeEnv) -> Result<Option<String>> {
        if let Some(min) = self.min_cc {
            if env.cc < min {
                return Ok(Some(format!("{}: needs compute capability >= {min}", self.name)));
            }
        }
        if let Some(w) = &self.when {
            let ok = w
                .prog
                .eval(&env.slots)
                .map_err(|e| anyhow!("{}:{}: when {:?}: {e}", path.display(), w.line, w.text))?;
            if ok == 0 {
                return Ok(Some(format!("{}: not for this shape ({})", self.name, w.text)));
            }
        }
        Ok(None)
    }

    /// Evaluates the derived values and the constraints at `point` (values in
    /// [`VariantSpace::param_names`] order). An overflow or a division by zero is an error
    /// naming the expression, its line and the point.
    pub fn check(&self, path: &std::path::Path, point: &[i64], env: &ShapeEnv) -> Result<Verdict> {
        if point.len() != self.params.len() || env.slots.len() != self.env_slots {
            bail!("{}: point {point:?} does not match the parameters of variant {}", path.display(), self.name);
        }
        let mut slots = Vec::with_capacity(self.env_slots + point.len() + self.derived.len());
        slots.extend_from_slice(&env.slots);
        slots.extend_from_slice(point);
        let fail = |e: &super::Expr, role: &str, err: super::expr::EvalError| {
            let at: Vec<String> = self.param_names().zip(point).map(|(k, v)| format!("{k}={v}")).collect();
            anyhow!(
                "{}:{}: {role} {:?}: {err} (variant {}, {})",
                path.display(),
                e.line,
                e.text,
                self.name,
                at.join(",")
            )
        };
        for (name, e) in &self.derived {
            let v = e.prog.eval(&slots).map_err(|err| fail(e, &format!("derived {name} ="), err))?;
            slots.push(v);
        }
        for (k, c) in self.constraints.iter().enumerate() {
            if c.prog.eval(&slots).map_err(|err| fail(c, "constraint", err))? == 0 {
                return Ok(Verdict::Dropped(k));
            }
        }
        Ok(Verdict::Valid)
    }

    /// Whether `point` passes every constraint (see [`VariantSpace::check`]).
    pub fn is_valid(&self, path: &std::path::Path, point: &[i64], env: &ShapeEnv) -> Result<bool> {
        Ok(self.check(path, point, env)? == Verdict::Valid)
    }

    /// The drop-count key of constraint `k`.
    pub fn drop_rule(&self, k: usize) -> String {
        format!("{}: {}", self.name, self.constraints[k].text)
    }
}

/// The points of a sweep for one shape: the applicable variants end to end.
#[derive(Debug)]
pub struct SweepSpace<'a> {
    sweep: &'a Sweep,
    env: &'a ShapeEnv,
    /// (index into sweep.variants, first global index), for the variants that apply.
    parts: Vec<(usize, u128)>,
    total: u128,
    live: u128,
    skipped: Vec<(String, u128)>,
}

impl<'a> SweepSpace<'a> {
    /// Points of all variants, including those that do not apply to the shape.
    pub fn total(&self) -> u128 {
        self.total
    }

    /// Points of the variants that apply: global indices run over `0..live()`.
    pub fn live(&self) -> u128 {
        self.live
    }

    /// The variant holding global index `g`, and the index within it.
    pub fn locate(&self, g: u128) -> Option<(&'a VariantSpace, u128)> {
        if g >= self.live {
            return None;
        }
        let k = self.parts.partition_point(|(_, start)| *start <= g) - 1;
        let (vi, start) = self.parts[k];
        Some((&self.sweep.variants[vi], g - start))
    }

    /// The variants that apply to the shape, in index order.
    pub fn variants(&self) -> impl Iterator<Item = &'a VariantSpace> + '_ {
        self.parts.iter().map(|(vi, _)| &self.sweep.variants[*vi])
    }

    /// Checks a point of variant `v` (values in [`VariantSpace::param_names`] order)
    /// against its constraints for this shape, then against the sweep's shard.
    pub fn check(&self, v: &VariantSpace, point: &[i64]) -> Result<Verdict> {
        let verdict = v.check(&self.sweep.path, point, self.env)?;
        Ok(self.shard_verdict(v, point, verdict))
    }

    /// A valid point of another shard is dropped like one a constraint rejects, so every
    /// strategy sees only its shard's piece of the space.
    fn shard_verdict(&self, v: &VariantSpace, point: &[i64], verdict: Verdict) -> Verdict {
        match self.sweep.shard {
            Some(s) if verdict == Verdict::Valid && !s.contains(&v.name, &v.candidate(point).params) => {
                Verdict::OtherShard
            }
            _ => verdict,
        }
    }

    /// Checks global index `g`, counting it; the candidate if it is valid.
    pub fn examine(&self, g: u128, tally: &mut Tally) -> Result<Option<Candidate>> {
        let Some((v, i)) = self.locate(g) else { return Ok(None) };
        let point = v.point(i).unwrap_or_default();
        tally.examined += 1;
        match self.check(v, &point)? {
            Verdict::Valid => Ok(Some(v.candidate(&point))),
            Verdict::Dropped(k) => {
                *tally.dropped.entry(v.drop_rule(k)).or_default() += 1;
                Ok(None)
            }
            Verdict::OtherShard => {
                let rule = self.sweep.shard.map(|s| s.drop_rule()).unwrap_or_default();
                *tally.dropped.entry(rule).or_default() += 1;
                Ok(None)
            }
        }
    }

    /// Drop counts (whole variants skipped for the shape, plus the tally) and the total.
    pub fn counts(&self, tally: Tally) -> (Vec<(String, u128)>, u128) {
        let mut all = tally.dropped;
        for (why, n) in &self.skipped {
            *all.entry(why.clone()).or_default() += n;
        }
        (all.into_iter().collect(), self.total)
    }

    /// The error for a space too large to examine point by point: its size per variant and
    /// what to run instead.
    pub fn too_large(&self, doing: &str) -> anyhow::Error {
        let per: Vec<String> = self
            .parts
            .iter()
            .map(|(vi, _)| &self.sweep.variants[*vi])
            .map(|v| format!("{} {}", v.name, v.size))
            .collect();
        anyhow!(
            "{}: {doing} is not possible: the space has {} points ({}), more than the {GRID_LIMIT} a grid \
             examines one by one; sample it with `--strategy random --budget 200` (or set strategy = \"random\" \
             and budget in the sweep file), or narrow the parameter lists",
            self.sweep.path.display(),
            self.live,
            per.join(", ")
        )
    }
}
