//! A user kernel's description, resolved: every name bound to a buffer or scalar, every
//! expression compiled once with the sweep files' checked evaluator ([`expr`]) and kept with
//! its line. Errors name the file and line and say what to do.
//!
//! Expressions see slots laid out as: the shape's dimensions, [`DEVICE_NAMES`], then every
//! tunable any variant has (its swept parameters and its template's `#ifndef` defaults).
//! Reference and peer launches see only the first two groups: they have no tunables.

use super::schema::{RawBuffer, RawFile, RawGemm, RawInit, RawKernel, RawLaunch, RawProgram, RawScalar};
use crate::kernels::tunables::template_defaults;
use crate::kernels::DType;
use crate::tune::space::expr::{self, Type};
use crate::tune::space::{Sweep, DEVICE_NAMES};
use anyhow::{anyhow, bail, Context, Result};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Element type of a buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Elem {
    /// The swept dtype (bf16, fp16 or fp32).
    Dtype,
    F32,
    F16,
    Bf16,
    I32,
    U8,
}

impl Elem {
    fn parse(s: &str) -> Option<Elem> {
        Some(match s {
            "dtype" => Elem::Dtype,
            "f32" | "fp32" | "float" => Elem::F32,
            "f16" | "fp16" | "half" => Elem::F16,
            "bf16" => Elem::Bf16,
            "i32" | "int" => Elem::I32,
            "u8" | "uint8" => Elem::U8,
            _ => return None,
        })
    }
    /// The concrete type for a dtype: the code the helper kernels (user.cu) use.
    pub fn code(self, dt: DType) -> i32 {
        match self.concrete(dt) {
            Elem::F32 => 0,
            Elem::F16 => 1,
            Elem::Bf16 => 2,
            Elem::I32 => 3,
            _ => 4,
        }
    }
    pub fn concrete(self, dt: DType) -> Elem {
        match (self, dt) {
            (Elem::Dtype, DType::F32) => Elem::F32,
            (Elem::Dtype, DType::F16) => Elem::F16,
            (Elem::Dtype, DType::BF16) => Elem::Bf16,
            (e, _) => e,
        }
    }
    pub fn bytes(self, dt: DType) -> usize {
        match self.concrete(dt) {
            Elem::F32 | Elem::I32 => 4,
            Elem::F16 | Elem::Bf16 => 2,
            _ => 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Input,
    Output,
    InOut,
    /// Workspace: not initialized, not compared; its size may depend on the tunables.
    Scratch,
}

/// Initial values, drawn afresh for every verification round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    Normal {
        mean: f64,
        std: f64,
    },
    Uniform {
        low: f64,
        high: f64,
    },
    /// Whole numbers in [low, high].
    Int {
        low: f64,
        high: f64,
    },
    Constant(f64),
}

/// An expression with its line, and whether it reads a tunable.
#[derive(Debug, Clone)]
pub struct UExpr {
    pub text: String,
    pub line: usize,
    pub prog: expr::Program,
    pub uses_tunables: bool,
}

#[derive(Debug, Clone)]
pub struct Buffer {
    pub name: String,
    pub line: usize,
    pub elem: Elem,
    pub dims: Vec<UExpr>,
    pub role: Role,
    pub init: Init,
}

impl Buffer {
    pub fn uses_tunables(&self) -> bool {
        self.dims.iter().any(|d| d.uses_tunables)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarTy {
    I32,
    U32,
    I64,
    U64,
    F32,
}

#[derive(Debug, Clone)]
pub enum ScalarValue {
    Expr(UExpr),
    Number(f64),
}

#[derive(Debug, Clone)]
pub struct Scalar {
    pub name: String,
    pub line: usize,
    pub ty: ScalarTy,
    pub value: ScalarValue,
}

/// What one launch argument is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgRef {
    Buffer(usize),
    Scalar(usize),
}

#[derive(Debug, Clone)]
pub struct Launch {
    pub entry: String,
    pub line: usize,
    pub grid: Vec<UExpr>,
    pub block: Vec<UExpr>,
    pub smem: Option<UExpr>,
    pub args: Vec<ArgRef>,
    pub args_line: usize,
}

/// A template and the launches of one run of it.
#[derive(Debug, Clone)]
pub struct Program {
    pub file: PathBuf,
    pub line: usize,
    pub source: String,
    pub launches: Vec<Launch>,
}

#[derive(Debug, Clone)]
pub enum Reference {
    Template(Program),
    /// C[M,N] = A[M,K] · B[N,K]ᵀ by cuBLAS (buffer indices; M, N, K expressions).
    Gemm {
        a: usize,
        b: usize,
        c: usize,
        m: UExpr,
        n: UExpr,
        k: UExpr,
        line: usize,
    },
}

#[derive(Debug, Clone)]
pub struct Description {
    pub path: PathBuf,
    pub name: String,
    pub dims: Vec<String>,
    pub buffers: Vec<Buffer>,
    pub scalars: Vec<Scalar>,
    pub launches: Vec<Launch>,
    pub reference: Reference,
    pub peer: Option<(String, Program)>,
    pub compare: Vec<usize>,
    pub flops: UExpr,
    pub min_bytes: Option<UExpr>,
    pub selftest_shapes: Vec<String>,
    /// Slot names: dims, device names, tunables.
    pub names: Vec<String>,
    /// The first tunable slot.
    pub tunable_start: usize,
    /// Entry points of the candidate's module, in order of first launch.
    pub entries: Vec<String>,
}

/// Whether a sweep file describes a kernel of its own (has a `[kernel]` table).
pub fn is_user_sweep(text: &str) -> bool {
    toml::from_str::<RawFile>(text).map(|f| f.kernel.is_some()).unwrap_or(false)
}

/// 1-based line of a byte offset.
pub fn line_at(text: &str, offset: usize) -> usize {
    let end = offset.min(text.len());
    text.as_bytes()[..end].iter().filter(|b| **b == b'\n').count() + 1
}

/// Reading context: the file, its text, and the slot names.
struct Ctx<'a> {
    path: &'a Path,
    text: &'a str,
    names: Vec<String>,
    tunable_start: usize,
}

impl Ctx<'_> {
    fn at<T>(&self, s: &Spanned<T>) -> String {
        format!("{}:{}", self.path.display(), line_at(self.text, s.span().start))
    }
    fn line<T>(&self, s: &Spanned<T>) -> usize {
        line_at(self.text, s.span().start)
    }

    /// Compiles an integer expression; `tunables` says whether tunable names are visible.
    fn int(&self, raw: &Spanned<String>, what: &str, tunables: bool) -> Result<UExpr> {
        let visible = if tunables { self.names.len() } else { self.tunable_start };
        let names: Vec<&str> = self.names[..visible].iter().map(String::as_str).collect();
        self.int_over(raw, what, &names)
    }

    fn int_over(&self, raw: &Spanned<String>, what: &str, names: &[&str]) -> Result<UExpr> {
        let src = raw.get_ref();
        let prog = expr::compile(src, names).map_err(|e| anyhow!("{}: {what} {src:?}: {e}", self.at(raw)))?;
        if prog.ty() != Type::Int {
            bail!("{}: {what} {src:?} is a condition; it must be a number", self.at(raw));
        }
        let uses_tunables = prog.variables().iter().any(|s| *s as usize >= self.tunable_start);
        Ok(UExpr { text: src.clone(), line: self.line(raw), prog, uses_tunables })
    }
}

/// Reads the `[kernel]` table of `text` against the already parsed `sweep` (its variants give
/// the tunable names).
pub fn load(path: &Path, text: &str, sweep: &Sweep) -> Result<Description> {
    let raw: RawFile = toml::from_str(text).map_err(|e| anyhow!("{}: {e}", path.display()))?;
    let name = raw.family.get_ref().clone();
    let kernel = raw.kernel.with_context(|| format!("{}: no [kernel] table", path.display()))?;
    let k: RawKernel = kernel.into_inner();
    let mut names: Vec<String> = k.dims.get_ref().clone();
    names.extend(DEVICE_NAMES.iter().map(|s| s.to_string()));
    let tunable_start = names.len();
    let mut tunables: BTreeSet<String> = BTreeSet::new();
    for v in &sweep.variants {
        tunables.extend(v.params.keys().cloned());
        for dt in [DType::BF16, DType::F16, DType::F32] {
            tunables.extend(template_defaults(&v.source, dt).into_keys());
        }
    }
    tunables.retain(|t| !names.contains(t));
    names.extend(tunables);
    let cx = Ctx { path, text, names, tunable_start };
    let buffers = k.buffers.iter().map(|b| buffer(&cx, b)).collect::<Result<Vec<_>>>()?;
    let scalars = k.scalars.iter().map(|s| scalar(&cx, s)).collect::<Result<Vec<_>>>()?;
    check_unique(&cx, &k, &buffers, &scalars)?;
    let binder = Binder { cx: &cx, buffers: &buffers, scalars: &scalars };
    if k.launches.is_empty() {
        bail!("{}: [kernel] has no [[kernel.launch]]: say which entry point to launch and how", cx.at(&k.dims));
    }
    let launches = k.launches.iter().map(|l| binder.launch(l, true)).collect::<Result<Vec<_>>>()?;
    let reference = binder.reference(&k)?;
    let peer = match &k.peer {
        Some(p) => Some((p.get_ref().name.clone().unwrap_or_else(|| "peer".into()), binder.program(p)?)),
        None => None,
    };
    let compare = binder.compare(&k)?;
    let dims: Vec<&str> = k.dims.get_ref().iter().map(String::as_str).chain(["dtype_bytes"]).collect();
    // FLOPs do not depend on the element type (Family::flops is asked without one).
    let flops = cx.int_over(&k.flops, "flops", &dims[..dims.len() - 1])?;
    let min_bytes = k.min_bytes.as_ref().map(|m| cx.int_over(m, "min_bytes", &dims)).transpose()?;
    let mut entries: Vec<String> = Vec::new();
    for l in &launches {
        if !entries.contains(&l.entry) {
            entries.push(l.entry.clone());
        }
    }
    Ok(Description {
        path: path.to_path_buf(),
        name,
        dims: k.dims.into_inner(),
        buffers,
        scalars,
        launches,
        reference,
        peer,
        compare,
        flops,
        min_bytes,
        selftest_shapes: k.selftest_shapes,
        names: cx.names,
        tunable_start,
        entries,
    })
}

fn buffer(cx: &Ctx, raw: &Spanned<RawBuffer>) -> Result<Buffer> {
    let b = raw.get_ref();
    let name = b.name.get_ref().clone();
    let elem = match &b.ty {
        Some(t) => Elem::parse(t.get_ref()).ok_or_else(|| {
            anyhow!(
                "{}: buffer {name}: unknown type {:?}: expected dtype (the swept one), f32, f16, bf16, i32 or u8",
                cx.at(t),
                t.get_ref()
            )
        })?,
        None => Elem::Dtype,
    };
    let role = match b.role.get_ref().as_str() {
        "input" => Role::Input,
        "output" => Role::Output,
        "inout" => Role::InOut,
        "scratch" => Role::Scratch,
        other => bail!("{}: buffer {name}: role {other:?}: expected input, output, inout or scratch", cx.at(&b.role)),
    };
    if b.dims.get_ref().is_empty() {
        bail!(
            "{}: buffer {name} has no dims: give its element count, e.g. dims = [\"rows\", \"cols\"]",
            cx.at(&b.dims)
        );
    }
    let dims =
        b.dims.get_ref().iter().map(|d| cx.int(d, &format!("buffer {name} dim"), true)).collect::<Result<Vec<_>>>()?;
    let buf = Buffer { name: name.clone(), line: cx.line(raw), elem, dims, role, init: Init::Constant(0.0) };
    if role != Role::Scratch && buf.uses_tunables() {
        bail!(
            "{}: buffer {name}: only scratch buffers may depend on tunables (an {} must have one size for every \
             candidate, to be compared with the reference)",
            cx.at(&b.dims),
            b.role.get_ref()
        );
    }
    let init = match &b.init {
        Some(i) => init(cx, &name, i)?,
        None if matches!(role, Role::Input | Role::InOut) => Init::Normal { mean: 0.0, std: 1.0 },
        None => Init::Constant(0.0),
    };
    Ok(Buffer { init, ..buf })
}

fn init(cx: &Ctx, name: &str, raw: &Spanned<RawInit>) -> Result<Init> {
    let (dist, t) = match raw.get_ref() {
        RawInit::Name(n) => (n.as_str(), None),
        RawInit::Table(t) => (t.dist.as_str(), Some(t)),
    };
    let get = |f: fn(&super::schema::RawInitTable) -> Option<f64>, d: Option<f64>, what: &str| -> Result<f64> {
        match t.and_then(f).or(d) {
            Some(v) if v.is_finite() => Ok(v),
            Some(v) => bail!("{}: buffer {name}: init {what} = {v} is not a finite number", cx.at(raw)),
            None => bail!(
                "{}: buffer {name}: init {dist:?} needs {what}, e.g. {{ dist = \"{dist}\", {what} = 1 }}",
                cx.at(raw)
            ),
        }
    };
    let i = match dist {
        "normal" => Init::Normal { mean: get(|t| t.mean, Some(0.0), "mean")?, std: get(|t| t.std, Some(1.0), "std")? },
        "uniform" => {
            Init::Uniform { low: get(|t| t.low, Some(-1.0), "low")?, high: get(|t| t.high, Some(1.0), "high")? }
        }
        "int" => Init::Int { low: get(|t| t.low, None, "low")?, high: get(|t| t.high, None, "high")? },
        "zeros" => Init::Constant(0.0),
        "constant" => Init::Constant(get(|t| t.value, None, "value")?),
        other => bail!(
            "{}: buffer {name}: unknown init {other:?}: expected normal, uniform, int, zeros or constant",
            cx.at(raw)
        ),
    };
    if let Init::Uniform { low, high } | Init::Int { low, high } = i {
        if low > high {
            bail!("{}: buffer {name}: init low {low} is above high {high}", cx.at(raw));
        }
    }
    Ok(i)
}

fn scalar(cx: &Ctx, raw: &Spanned<RawScalar>) -> Result<Scalar> {
    let s = raw.get_ref();
    let name = s.name.get_ref().clone();
    let ty = match s.ty.get_ref().as_str() {
        "i32" | "int" => ScalarTy::I32,
        "u32" => ScalarTy::U32,
        "i64" => ScalarTy::I64,
        "u64" => ScalarTy::U64,
        "f32" | "float" => ScalarTy::F32,
        other => bail!("{}: scalar {name}: type {other:?}: expected i32, u32, i64, u64 or f32", cx.at(&s.ty)),
    };
    let value = match s.value.get_ref() {
        toml::Value::String(t) => {
            let spanned = Spanned::new(s.value.span(), t.clone());
            ScalarValue::Expr(cx.int(&spanned, &format!("scalar {name}"), true)?)
        }
        toml::Value::Integer(v) => ScalarValue::Number(*v as f64),
        toml::Value::Float(v) if ty == ScalarTy::F32 => ScalarValue::Number(*v),
        _ => bail!(
            "{}: scalar {name}: value must be an expression in quotes (\"rows * cols\") or a number (floats for f32 only)",
            cx.at(&s.value)
        ),
    };
    Ok(Scalar { name, line: cx.line(raw), ty, value })
}

fn check_unique(cx: &Ctx, k: &RawKernel, buffers: &[Buffer], scalars: &[Scalar]) -> Result<()> {
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let all = k.buffers.iter().map(|b| &b.get_ref().name).chain(k.scalars.iter().map(|s| &s.get_ref().name));
    for n in all {
        if !seen.insert(n.get_ref()) {
            bail!("{}: {:?} is declared twice (buffers and scalars share one namespace)", cx.at(n), n.get_ref());
        }
    }
    let _ = (buffers, scalars);
    Ok(())
}

/// Binds names in launches, the reference and `compare` to buffers and scalars.
struct Binder<'a> {
    cx: &'a Ctx<'a>,
    buffers: &'a [Buffer],
    scalars: &'a [Scalar],
}

impl Binder<'_> {
    fn arg(&self, n: &Spanned<String>) -> Result<ArgRef> {
        let name = n.get_ref();
        if let Some(i) = self.buffers.iter().position(|b| &b.name == name) {
            return Ok(ArgRef::Buffer(i));
        }
        if let Some(i) = self.scalars.iter().position(|s| &s.name == name) {
            return Ok(ArgRef::Scalar(i));
        }
        let known: Vec<&str> =
            self.buffers.iter().map(|b| b.name.as_str()).chain(self.scalars.iter().map(|s| s.name.as_str())).collect();
        bail!(
            "{}: unknown argument {name:?}: not a [[kernel.buffer]] or [[kernel.scalar]] (known: {})",
            self.cx.at(n),
            known.join(", ")
        )
    }

    fn buffer(&self, n: &Spanned<String>) -> Result<usize> {
        match self.arg(n)? {
            ArgRef::Buffer(i) => Ok(i),
            ArgRef::Scalar(_) => bail!("{}: {:?} is a scalar; a buffer is needed here", self.cx.at(n), n.get_ref()),
        }
    }

    /// `tunables`: the candidate's own launches see tunables; reference and peer ones do not.
    fn launch(&self, raw: &Spanned<RawLaunch>, tunables: bool) -> Result<Launch> {
        let l = raw.get_ref();
        let entry = l.entry.get_ref().clone();
        let three = |v: &Spanned<Vec<Spanned<String>>>, what: &str| -> Result<Vec<UExpr>> {
            if v.get_ref().is_empty() || v.get_ref().len() > 3 {
                bail!("{}: {entry}: {what} needs one to three expressions (x, y, z)", self.cx.at(v));
            }
            v.get_ref().iter().map(|e| self.cx.int(e, &format!("{entry}: {what}"), tunables)).collect()
        };
        let grid = three(&l.grid, "grid")?;
        let block = three(&l.block, "block")?;
        let smem = l.smem.as_ref().map(|s| self.cx.int(s, &format!("{entry}: smem"), tunables)).transpose()?;
        let mut args = Vec::new();
        for a in l.args.get_ref() {
            let r = self.arg(a)?;
            if !tunables {
                let depends = match r {
                    ArgRef::Buffer(i) => self.buffers[i].uses_tunables(),
                    ArgRef::Scalar(i) => matches!(&self.scalars[i].value, ScalarValue::Expr(e) if e.uses_tunables),
                };
                if depends {
                    bail!(
                        "{}: {:?} depends on tunables, so a reference or peer launch cannot use it",
                        self.cx.at(a),
                        a.get_ref()
                    );
                }
            }
            args.push(r);
        }
        Ok(Launch { entry, line: self.cx.line(&l.entry), grid, block, smem, args, args_line: self.cx.line(&l.args) })
    }

    fn program(&self, raw: &Spanned<RawProgram>) -> Result<Program> {
        let p = raw.get_ref();
        self.template(&p.file, &p.launches)
    }

    fn template(&self, file: &Spanned<String>, launches: &[Spanned<RawLaunch>]) -> Result<Program> {
        let dir = self.cx.path.parent().unwrap_or(Path::new("."));
        let path = dir.join(file.get_ref());
        let source = crate::gpu::nvrtc::load_source(&path)
            .with_context(|| format!("{}: cannot read template {}", self.cx.at(file), path.display()))?;
        if launches.is_empty() {
            bail!("{}: {} has no launches: add [[...launch]] tables after it", self.cx.at(file), file.get_ref());
        }
        let launches = launches.iter().map(|l| self.launch(l, false)).collect::<Result<Vec<_>>>()?;
        Ok(Program { file: path, line: self.cx.line(file), source, launches })
    }

    fn reference(&self, k: &RawKernel) -> Result<Reference> {
        let r = k.reference.get_ref();
        match (&r.file, &r.gemm) {
            (Some(f), None) => Ok(Reference::Template(self.template(f, &r.launches)?)),
            (None, Some(g)) => self.gemm(g),
            _ => bail!(
                "{}: [kernel.reference] needs either file = \"reference.cu\" with [[kernel.reference.launch]] tables, \
                 or gemm = {{ a, b, c, m, n, k }} (cuBLAS), not both",
                self.cx.at(&k.reference)
            ),
        }
    }

    fn gemm(&self, g: &Spanned<RawGemm>) -> Result<Reference> {
        let r = g.get_ref();
        let (a, b, c) = (self.buffer(&r.a)?, self.buffer(&r.b)?, self.buffer(&r.c)?);
        for (i, n) in [(a, &r.a), (b, &r.b), (c, &r.c)] {
            if self.buffers[i].elem != Elem::Dtype {
                bail!("{}: the cuBLAS reference needs buffers of type dtype; {:?} is not", self.cx.at(n), n.get_ref());
            }
        }
        let e = |s: &Spanned<String>, w: &str| self.cx.int(s, &format!("gemm {w}"), false);
        Ok(Reference::Gemm { a, b, c, m: e(&r.m, "m")?, n: e(&r.n, "n")?, k: e(&r.k, "k")?, line: self.cx.line(g) })
    }

    fn compare(&self, k: &RawKernel) -> Result<Vec<usize>> {
        let list: Vec<usize> = match &k.compare {
            Some(c) => c.get_ref().iter().map(|n| self.buffer(n)).collect::<Result<_>>()?,
            None => (0..self.buffers.len())
                .filter(|&i| matches!(self.buffers[i].role, Role::Output | Role::InOut))
                .collect(),
        };
        for &i in &list {
            if !matches!(self.buffers[i].role, Role::Output | Role::InOut) {
                bail!(
                    "{}:{}: compare names {:?}, which is not an output or inout buffer",
                    self.cx.path.display(),
                    self.buffers[i].line,
                    self.buffers[i].name
                );
            }
        }
        if list.is_empty() {
            bail!("{}: nothing to compare: declare an output buffer (role = \"output\")", self.cx.at(&k.dims));
        }
        Ok(list)
    }
}
