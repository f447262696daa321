//! Evaluating a user kernel's description for one shape, dtype, device and candidate:
//! buffer sizes, scalar arguments and launch geometry, each checked against the limits CUDA
//! imposes, with errors naming the file, the line and the values that broke the limit.

use super::desc::{ArgRef, Description, Launch, ScalarTy, ScalarValue, UExpr};
use crate::gpu::device::Arg;
use crate::kernels::{DType, Geometry, Shape};
use crate::tune::space::DeviceLimits;
use anyhow::{anyhow, bail, Result};
use std::collections::BTreeMap;

/// The largest grid and block CUDA accepts (the same on every architecture kernlab builds for).
pub const MAX_GRID: [i64; 3] = [(1 << 31) - 1, 65_535, 65_535];
pub const MAX_BLOCK: [i64; 3] = [1024, 1024, 64];

/// Values of every slot for one (shape, dtype, device, candidate); a tunable the candidate's
/// variant lacks is `None` and an expression reading it fails naming it.
pub struct Env<'a> {
    desc: &'a Description,
    slots: Vec<Option<i64>>,
    /// "shape 64x64 fp32, TILE=32" for error messages.
    pub label: String,
}

impl Description {
    /// The environment of a shape; `tunables` = (variant, values) for the candidate's own
    /// launches, `None` for the reference, the peer and the buffers.
    pub fn env(
        &self,
        s: &Shape,
        dt: DType,
        l: &DeviceLimits,
        tunables: Option<(&str, &BTreeMap<String, i64>)>,
    ) -> Env<'_> {
        let mut slots: Vec<Option<i64>> = self.dims.iter().map(|d| Some(s.get(d))).collect();
        slots.extend([l.max_smem, l.max_threads, l.sm_count, l.cc, dt.bytes() as i64].map(Some));
        let mut label = format!("shape {} {}", s.label(), dt.name());
        let names = &self.names[self.tunable_start..];
        match tunables {
            Some((variant, t)) => {
                slots.extend(names.iter().map(|n| t.get(n).copied()));
                let cfg: Vec<String> = t.iter().map(|(k, v)| format!("{k}={v}")).collect();
                label = format!("{label}, variant {variant} {}", cfg.join(","));
            }
            None => slots.extend(names.iter().map(|_| None)),
        }
        Env { desc: self, slots, label }
    }

    fn at(&self, line: usize) -> String {
        format!("{}:{line}", self.path.display())
    }

    /// FLOPs of one run (for the roofline): the `flops` expression over dims and dtype_bytes.
    pub fn flops_of(&self, s: &Shape, dt: DType) -> Result<f64> {
        self.shape_expr(&self.flops, s, dt)
    }

    /// Fewest bytes one run moves: `min_bytes`, or each input read once and each output
    /// written once (inout both).
    pub fn min_bytes_of(&self, s: &Shape, dt: DType) -> Result<f64> {
        if let Some(m) = &self.min_bytes {
            return self.shape_expr(m, s, dt);
        }
        let env = self.env(s, dt, &DeviceLimits { max_smem: 0, max_threads: 0, sm_count: 0, cc: 0 }, None);
        let mut total = 0.0;
        for (i, b) in self.buffers.iter().enumerate() {
            let times = match b.role {
                super::desc::Role::Input | super::desc::Role::Output => 1.0,
                super::desc::Role::InOut => 2.0,
                super::desc::Role::Scratch => 0.0,
            };
            if times > 0.0 {
                total += times * env.buffer_bytes(i, dt)? as f64;
            }
        }
        Ok(total)
    }

    fn shape_expr(&self, e: &UExpr, s: &Shape, dt: DType) -> Result<f64> {
        let mut slots: Vec<i64> = self.dims.iter().map(|d| s.get(d)).collect();
        slots.push(dt.bytes() as i64);
        let v = e
            .prog
            .eval(&slots)
            .map_err(|err| anyhow!("{}: `{}` for shape {}: {err}", self.at(e.line), e.text, s.label()))?;
        Ok(v as f64)
    }
}

impl Env<'_> {
    /// The value of an expression; errors name the line and the shape.
    pub fn eval(&self, e: &UExpr, what: &str) -> Result<i64> {
        let mut vals = Vec::with_capacity(self.slots.len());
        for (i, v) in self.slots.iter().enumerate() {
            match v {
                Some(v) => vals.push(*v),
                None if e.prog.variables().contains(&(i as u32)) => {
                    let name = &self.desc.names[i];
                    bail!(
                        "{}: {what} `{}` needs tunable {name}, which {} does not set (no sweep value, no template default)",
                        self.desc.at(e.line),
                        e.text,
                        self.label
                    );
                }
                None => vals.push(0),
            }
        }
        e.prog
            .eval(&vals)
            .map_err(|err| anyhow!("{}: {what} `{}` ({}): {err}", self.desc.at(e.line), e.text, self.label))
    }

    /// Elements of buffer `i`: the product of its dims, each at least 1, without overflow.
    pub fn buffer_elems(&self, i: usize) -> Result<usize> {
        let b = &self.desc.buffers[i];
        let mut n: i64 = 1;
        for d in &b.dims {
            let v = self.eval(d, &format!("buffer {} dim", b.name))?;
            if v < 1 {
                bail!(
                    "{}: buffer {}: dim `{}` is {v} ({}); every dim must be at least 1",
                    self.desc.at(d.line),
                    b.name,
                    d.text,
                    self.label
                );
            }
            n = n.checked_mul(v).ok_or_else(|| {
                anyhow!(
                    "{}: buffer {}: its element count overflows 64 bits at dim `{}` ({})",
                    self.desc.at(d.line),
                    b.name,
                    d.text,
                    self.label
                )
            })?;
        }
        usize::try_from(n)
            .map_err(|_| anyhow!("{}: buffer {} is too large for this host", self.desc.at(b.line), b.name))
    }

    pub fn buffer_bytes(&self, i: usize, dt: DType) -> Result<usize> {
        let b = &self.desc.buffers[i];
        self.buffer_elems(i)?.checked_mul(b.elem.bytes(dt)).filter(|n| *n <= isize::MAX as usize).ok_or_else(|| {
            anyhow!("{}: buffer {}: its size in bytes overflows ({})", self.desc.at(b.line), b.name, self.label)
        })
    }

    /// The argument value of scalar `i`, checked to fit its type.
    pub fn scalar(&self, i: usize) -> Result<Arg> {
        let s = &self.desc.scalars[i];
        let v = match &s.value {
            ScalarValue::Expr(e) => self.eval(e, &format!("scalar {}", s.name))? as f64,
            ScalarValue::Number(v) => *v,
        };
        let fits = |lo: f64, hi: f64| v >= lo && v <= hi;
        let arg = match s.ty {
            ScalarTy::I32 if fits(i32::MIN as f64, i32::MAX as f64) => Arg::I32(v as i32),
            ScalarTy::U32 if fits(0.0, u32::MAX as f64) => Arg::U32(v as u32),
            ScalarTy::I64 => Arg::U64(v as i64 as u64),
            ScalarTy::U64 if v >= 0.0 => Arg::U64(v as u64),
            ScalarTy::F32 => Arg::F32(v as f32),
            _ => bail!(
                "{}: scalar {} = {v} does not fit its type {:?} ({})",
                self.desc.at(s.line),
                s.name,
                s.ty,
                self.label
            ),
        };
        Ok(arg)
    }

    /// Grid, block and shared memory of one launch, checked against CUDA's and the device's limits.
    pub fn geometry(&self, l: &Launch, limits: &DeviceLimits) -> Result<Geometry> {
        let axes = ["x", "y", "z"];
        let mut grid = [1i64; 3];
        let mut block = [1i64; 3];
        for (which, exprs, out, max) in
            [("grid", &l.grid, &mut grid, MAX_GRID), ("block", &l.block, &mut block, MAX_BLOCK)]
        {
            for (i, e) in exprs.iter().enumerate() {
                let v = self.eval(e, &format!("{}: {which}", l.entry))?;
                let what = format!(
                    "{}: {}: {which}.{} = `{}` is {v} ({})",
                    self.desc.at(e.line),
                    l.entry,
                    axes[i],
                    e.text,
                    self.label
                );
                if v < 1 {
                    bail!("{what}; a launch needs at least 1 along every axis");
                }
                if v > max[i] {
                    bail!("{what}; CUDA allows at most {} for {which}.{}", max[i], axes[i]);
                }
                out[i] = v;
            }
        }
        let threads = block.iter().product::<i64>();
        if threads > limits.max_threads {
            bail!(
                "{}: {}: block {}x{}x{} is {threads} threads ({}); the device allows {} per block",
                self.desc.at(l.block[0].line),
                l.entry,
                block[0],
                block[1],
                block[2],
                self.label,
                limits.max_threads
            );
        }
        let smem = match &l.smem {
            Some(e) => {
                let v = self.eval(e, &format!("{}: smem", l.entry))?;
                if v < 0 || v > limits.max_smem {
                    bail!(
                        "{}: {}: smem = `{}` is {v} bytes ({}); it must be between 0 and the device's {} bytes per block",
                        self.desc.at(e.line),
                        l.entry,
                        e.text,
                        self.label,
                        limits.max_smem
                    );
                }
                v
            }
            None => 0,
        };
        Ok(Geometry {
            grid: (grid[0] as u32, grid[1] as u32, grid[2] as u32),
            block: (block[0] as u32, block[1] as u32, block[2] as u32),
            smem: smem as u32,
        })
    }
}

/// One launch, ready: geometry and arguments (buffers by index, scalars by value).
#[derive(Debug, Clone)]
pub struct Ready {
    pub entry: String,
    pub geometry: Geometry,
    pub args: Vec<ReadyArg>,
}

#[derive(Debug, Clone, Copy)]
pub enum ReadyArg {
    Buffer(usize),
    Value(Arg),
}

/// Resolves a sequence of launches in `env`.
pub fn ready(env: &Env, launches: &[Launch], limits: &DeviceLimits) -> Result<Vec<Ready>> {
    launches
        .iter()
        .map(|l| {
            let geometry = env.geometry(l, limits)?;
            let args = l
                .args
                .iter()
                .map(|a| match a {
                    ArgRef::Buffer(i) => Ok(ReadyArg::Buffer(*i)),
                    ArgRef::Scalar(i) => Ok(ReadyArg::Value(env.scalar(*i)?)),
                })
                .collect::<Result<Vec<_>>>()?;
            Ok(Ready { entry: l.entry.clone(), geometry, args })
        })
        .collect()
}

/// Refuses buffers that do not fit in `free` bytes, listing the largest.
pub fn check_fits(desc: &Description, label: &str, sizes: &[(usize, usize)], free: usize) -> Result<()> {
    let need: usize = sizes.iter().map(|(_, n)| n).fold(0usize, |a, b| a.saturating_add(*b));
    if need <= free {
        return Ok(());
    }
    let mut by_size = sizes.to_vec();
    by_size.sort_by(|a, b| b.1.cmp(&a.1));
    let gib = |n: usize| n as f64 / (1u64 << 30) as f64;
    let list: Vec<String> = by_size
        .iter()
        .take(3)
        .map(|(i, n)| {
            format!("{} ({}:{}) {:.2} GiB", desc.buffers[*i].name, desc.path.display(), desc.buffers[*i].line, gib(*n))
        })
        .collect();
    bail!(
        "{} {label}: the buffers need {:.2} GiB (with the reference's copies of the outputs), {:.2} GiB of device memory \
         is free: {}. Use a smaller shape",
        desc.name,
        gib(need),
        gib(free),
        list.join(", ")
    )
}
