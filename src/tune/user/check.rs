//! Checks of a user kernel before anything runs: every launch's entry point is declared in
//! its template with as many parameters as the launch passes (pointers for buffers, values
//! for scalars); and, for every planned shape and candidate, the buffers, scalars, grids,
//! blocks and shared memory evaluate within CUDA's and the device's limits.

use super::desc::{ArgRef, Description, Launch, Reference};
use super::eval;
use super::signature;
use crate::gpu::cache::ModuleCache;
use crate::gpu::nvrtc::CompileRequest;
use crate::kernels::tunables::Tunables;
use crate::kernels::{DType, Shape};
use crate::tune::space::{DeviceLimits, Strategy, Sweep};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Entry points and argument lists of the variants', reference's and peer's templates.
pub fn check_sources(desc: &Description, sweep: &Sweep) -> Result<()> {
    for v in &sweep.variants {
        check_program(desc, &v.file, &v.source, &desc.launches)
            .with_context(|| format!("variant {} ({})", v.name, v.file.display()))?;
    }
    if let Reference::Template(p) = &desc.reference {
        check_program(desc, &p.file, &p.source, &p.launches).context("the reference")?;
    }
    if let Some((name, p)) = &desc.peer {
        check_program(desc, &p.file, &p.source, &p.launches).with_context(|| format!("the peer {name}"))?;
    }
    Ok(())
}

fn check_program(desc: &Description, file: &Path, source: &str, launches: &[Launch]) -> Result<()> {
    let declared = signature::entries(source);
    let at = |line: usize| format!("{}:{line}", desc.path.display());
    for l in launches {
        let Some(e) = declared.iter().find(|e| e.name == l.entry) else {
            let names: Vec<&str> = declared.iter().map(|e| e.name.as_str()).collect();
            bail!(
                "{}: entry point {:?} is not in {} (it declares {}); define it as extern \"C\" __global__ void {}(...)",
                at(l.line),
                l.entry,
                file.display(),
                if names.is_empty() { "no __global__ function".to_string() } else { names.join(", ") },
                l.entry
            );
        };
        if e.pointers.len() != l.args.len() {
            bail!(
                "{}: {} takes {} parameters in {} ({}), but the launch passes {} arguments",
                at(l.args_line),
                l.entry,
                e.pointers.len(),
                file.display(),
                e.params.join(", "),
                l.args.len()
            );
        }
        for (i, (a, is_ptr)) in l.args.iter().zip(&e.pointers).enumerate() {
            let (name, is_buf) = match a {
                ArgRef::Buffer(b) => (&desc.buffers[*b].name, true),
                ArgRef::Scalar(s) => (&desc.scalars[*s].name, false),
            };
            if is_buf != *is_ptr {
                bail!(
                    "{}: argument {} of {} is {} {name:?}, but the parameter `{}` is {}",
                    at(l.args_line),
                    i + 1,
                    l.entry,
                    if is_buf { "the buffer" } else { "the scalar" },
                    e.params[i],
                    if *is_ptr { "a pointer" } else { "a value" }
                );
            }
        }
    }
    Ok(())
}

/// Evaluates everything that depends on the shape for each planned (dtype, shape), and the
/// launches of every kept candidate (a sample of 4096 where the space is larger). Returns how
/// many candidates were checked.
pub fn check_plan(desc: &Description, sweep: &Sweep, plan: &[(DType, Shape)], limits: &DeviceLimits) -> Result<usize> {
    let mut checked = 0;
    for (dt, shape) in plan {
        let env = desc.env(shape, *dt, limits, None);
        for (i, b) in desc.buffers.iter().enumerate() {
            if !b.uses_tunables() {
                env.buffer_bytes(i, *dt)?;
            }
        }
        match &desc.reference {
            Reference::Template(p) => {
                eval::ready(&env, &p.launches, limits).context("the reference")?;
            }
            Reference::Gemm { m, n, k, .. } => {
                for (e, w) in [(m, "m"), (n, "n"), (k, "k")] {
                    let v = env.eval(e, &format!("gemm {w}"))?;
                    if !(1..=i32::MAX as i64).contains(&v) {
                        bail!(
                            "{}:{}: gemm {w} = `{}` is {v} ({}); cuBLAS needs 1 to 2^31-1",
                            desc.path.display(),
                            e.line,
                            e.text,
                            env.label
                        );
                    }
                }
            }
        }
        if let Some((name, p)) = &desc.peer {
            eval::ready(&env, &p.launches, limits).with_context(|| format!("the peer {name}"))?;
        }
        let senv = sweep.env(&shape.dims, dt.bytes() as i64, limits)?;
        let cands = crate::tune::strategy::choose(sweep, &senv, Strategy::Grid, 4096, 0)?.chosen;
        for c in cands {
            let v = sweep.variant(&c.variant).context("candidate of this sweep")?;
            let t = Tunables::from_template(&v.name, &v.source, *dt, &c.params);
            let cenv = desc.env(shape, *dt, limits, Some((&v.name, t.values())));
            for (i, b) in desc.buffers.iter().enumerate() {
                if b.uses_tunables() {
                    cenv.buffer_bytes(i, *dt)?;
                }
            }
            eval::ready(&cenv, &desc.launches, limits)?;
            checked += 1;
        }
    }
    Ok(checked)
}

/// Compiles the reference and peer templates for `arch` (the variants are compiled by the
/// dry run itself) and checks that NVRTC's module has every entry point.
pub fn compile_helpers(desc: &Description, dt: DType, arch: &str, cache: &ModuleCache) -> Result<()> {
    let mut programs = vec![];
    if let Reference::Template(p) = &desc.reference {
        programs.push(("reference", p));
    }
    if let Some((_, p)) = &desc.peer {
        programs.push(("peer", p));
    }
    for (what, p) in programs {
        let req = CompileRequest {
            name: p.file.display().to_string(),
            source: p.source.clone(),
            defines: dt.defines(),
            arch: arch.into(),
        };
        let m = cache.get_or_compile(&req).with_context(|| {
            format!("{}:{}: compiling the {what} {}", desc.path.display(), p.line, p.file.display())
        })?;
        for l in &p.launches {
            if !m.resources.is_empty() && !m.resources.contains_key(&l.entry) {
                bail!(
                    "{}:{}: the compiled {what} module has no entry point {:?}",
                    desc.path.display(),
                    l.line,
                    l.entry
                );
            }
        }
    }
    Ok(())
}
