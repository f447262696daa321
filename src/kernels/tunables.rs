//! One variant's tunables: the template's own defaults (`#ifndef NAME` / `#define NAME value`),
//! read by the one parser here, overlaid with the values a sweep, the tuned database or a
//! caller chose. Launch geometry reads them through [`Tunables::get`], which fails naming the
//! variant when it lacks a tunable, so a launch can never disagree silently with the defines
//! the kernel was compiled with.

use super::DType;
use crate::gpu::device::Kernel;
use crate::kernels::Params;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;

/// The tunables of one variant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunables {
    variant: String,
    values: BTreeMap<String, i64>,
}

impl Tunables {
    /// `values` as they are (already complete: e.g. a candidate whose every define is set,
    /// or a map built by [`Tunables::with_defaults`] earlier).
    pub fn new(variant: &str, values: BTreeMap<String, i64>) -> Tunables {
        Tunables { variant: variant.to_string(), values }
    }

    /// `overrides` over `defaults` (the template's, from [`template_defaults`]).
    pub fn with_defaults(variant: &str, defaults: &Params, overrides: &Params) -> Tunables {
        let mut values = defaults.clone();
        values.extend(overrides.iter().map(|(k, v)| (k.clone(), *v)));
        Tunables::new(variant, values)
    }

    /// `overrides` over the defaults of `source` (the template text as compiled, shared
    /// headers expanded) for element type `dt`.
    pub fn from_template(variant: &str, source: &str, dt: DType, overrides: &Params) -> Tunables {
        Tunables::with_defaults(variant, &template_defaults(source, dt), overrides)
    }

    pub fn variant(&self) -> &str {
        &self.variant
    }

    /// An error unless these are the tunables of `variant`, the one variant of `family`'s
    /// launcher.
    pub fn expect_variant(&self, family: &str, variant: &str) -> Result<()> {
        if self.variant != variant {
            bail!("the {family} family has no variant {:?}", self.variant);
        }
        Ok(())
    }

    /// A tunable's value; an error naming the variant when it has none.
    pub fn get(&self, name: &str) -> Result<i64> {
        match self.values.get(name) {
            Some(v) => Ok(*v),
            None => bail!(
                "variant {} has no tunable {name} (neither the sweep nor its template's defaults set it)",
                self.variant
            ),
        }
    }

    /// A tunable the template may not define at all, as a diagnostic switch (`DIAG`): `None`
    /// when absent.
    pub fn optional(&self, name: &str) -> Option<i64> {
        self.values.get(name).copied()
    }

    pub fn set(&mut self, name: &str, value: i64) {
        self.values.insert(name.to_string(), value);
    }

    pub fn values(&self) -> &Params {
        &self.values
    }

    pub fn into_values(self) -> BTreeMap<String, i64> {
        self.values
    }
}

/// The launcher of the last candidate a problem ran, built again only when the variant or
/// its tunables change: timed runs launch back to back and do no parsing between launches.
pub struct LauncherCache<L> {
    last: Option<(String, BTreeMap<String, i64>, L)>,
}

impl<L> Default for LauncherCache<L> {
    fn default() -> Self {
        LauncherCache { last: None }
    }
}

impl<L> LauncherCache<L> {
    /// The launcher of (`variant`, `params`), built by `build(variant, params)` on a change.
    pub fn get(
        &mut self,
        variant: &str,
        params: &Params,
        build: impl FnOnce(&str, &Params) -> Result<L>,
    ) -> Result<&L> {
        let hit = matches!(&self.last, Some((v, p, _)) if v == variant && p == params);
        if !hit {
            self.last = None;
            let l = build(variant, params)?;
            self.last = Some((variant.to_string(), params.clone(), l));
        }
        Ok(&self.last.as_ref().expect("set above").2)
    }

    /// [`LauncherCache::get`] for a family's own template: `params` over the defaults of
    /// `source` at `dt`, handed to the family's launcher constructor `new`.
    pub fn from_template(
        &mut self,
        variant: &str,
        params: &Params,
        source: &str,
        dt: DType,
        new: impl FnOnce(&Tunables) -> Result<L>,
    ) -> Result<&L> {
        self.get(variant, params, |v, p| new(&Tunables::from_template(v, source, dt, p)))
    }

    /// [`LauncherCache::from_template`] for a family whose variant is named after the one
    /// entry point of its module (rmsnorm_rows, swiglu, rope_llama3), with that entry of the
    /// candidate's `kernels`.
    #[allow(clippy::too_many_arguments)]
    pub fn single_entry<'k>(
        &mut self,
        variant: &str,
        params: &Params,
        kernels: &'k BTreeMap<String, Kernel>,
        source: &str,
        dt: DType,
        new: impl FnOnce(&Tunables) -> Result<L>,
    ) -> Result<(L, &'k Kernel)>
    where
        L: Copy,
    {
        let l = *self.from_template(variant, params, source, dt, new)?;
        let k = kernels.get(variant).with_context(|| format!("module lacks {variant}"))?;
        Ok((l, k))
    }
}

/// The integer defaults of a template: every `#define NAME value` inside an `#ifndef NAME`
/// block that holds for element type `dt` (an `#if defined(KL_FP32)` / `#else` inside the
/// block, as elementwise.cuh's VEC has, is decided by `dt`'s defines). The dtype selectors
/// KL_FP16 / KL_FP32 are not tunables and are left out; a block whose conditions this reader
/// cannot decide gives no default (the launch then fails naming the tunable).
pub fn template_defaults(source: &str, dt: DType) -> BTreeMap<String, i64> {
    let defined = dt.defines();
    let mut out = BTreeMap::new();
    let lines: Vec<&str> = source.lines().map(str::trim).collect();
    let mut i = 0;
    while i < lines.len() {
        let Some(name) = directive(lines[i], "ifndef").map(first_word) else {
            i += 1;
            continue;
        };
        // Conditions nested inside this #ifndef: Some(holds) when decidable, None otherwise.
        let mut stack: Vec<Option<bool>> = vec![];
        let mut j = i + 1;
        while j < lines.len() {
            let l = lines[j];
            if let Some(expr) = directive(l, "if") {
                stack.push(condition(expr, &defined));
            } else if let Some(n) = directive(l, "ifdef") {
                stack.push(Some(defined.contains_key(first_word(n))));
            } else if let Some(n) = directive(l, "ifndef") {
                stack.push(Some(!defined.contains_key(first_word(n))));
            } else if l.starts_with("#else") {
                match stack.last_mut() {
                    Some(top) => *top = top.map(|b| !b),
                    None => break, // an #else of the #ifndef itself: not a default
                }
            } else if l.starts_with("#endif") {
                if stack.pop().is_none() {
                    break;
                }
            } else if let Some(def) = directive(l, "define") {
                let mut it = def.split_whitespace();
                if let (Some(n), Some(v)) = (it.next(), it.next()) {
                    let holds = stack.iter().all(|c| *c == Some(true));
                    if n == name && holds {
                        if let Ok(v) = v.parse::<i64>() {
                            out.insert(name.to_string(), v);
                        }
                    }
                }
            }
            j += 1;
        }
        i = j + 1;
    }
    out.remove("KL_FP16");
    out.remove("KL_FP32");
    out
}

/// The rest of a `#<word> rest` line.
fn directive<'a>(line: &'a str, word: &str) -> Option<&'a str> {
    let rest = line.strip_prefix('#')?.trim_start().strip_prefix(word)?;
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    Some(rest.trim())
}

fn first_word(s: &str) -> &str {
    s.split_whitespace().next().unwrap_or("")
}

/// Whether `#if defined(X)` holds; None for any other expression.
fn condition(expr: &str, defined: &BTreeMap<String, String>) -> Option<bool> {
    let inner = expr.strip_prefix("defined(")?.split(')').next()?.trim();
    let after = expr.split_once(')')?.1.trim();
    if !after.is_empty() && !after.starts_with("//") {
        return None;
    }
    Some(defined.contains_key(inner))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "#ifndef BM\n#define BM 128\n#endif\n#ifndef KL_FP16\n#define KL_FP16 0\n#endif\n  \
                       #ifndef X\n  #define X 3 // c\n#endif\n#ifndef VEC\n#if defined(KL_FP32)\n#define VEC 4\n\
                       #else\n#define VEC 8\n#endif\n#endif\n#ifndef Y\n#if N > 2\n#define Y 1\n#endif\n#endif\n\
                       #ifndef S\n#define S SOMETHING\n#endif\n#define Z 5\n";

    #[test]
    fn defaults_are_read_from_the_template() {
        let d = template_defaults(SRC, DType::BF16);
        assert_eq!(d.get("BM"), Some(&128));
        assert_eq!(d.get("X"), Some(&3));
        assert_eq!(d.get("VEC"), Some(&8), "bf16 takes the #else branch");
        assert_eq!(template_defaults(SRC, DType::F32).get("VEC"), Some(&4));
        assert_eq!(template_defaults(SRC, DType::F16).get("VEC"), Some(&8));
        // Not tunables, undecidable, not integers, not guarded.
        for absent in ["KL_FP16", "Y", "S", "Z"] {
            assert!(!d.contains_key(absent), "{absent}");
        }
    }

    #[test]
    fn overrides_win_and_a_missing_tunable_names_the_variant() {
        let over: BTreeMap<String, i64> = [("BM".to_string(), 64), ("NEW".to_string(), 2)].into_iter().collect();
        let t = Tunables::from_template("mma_multistage", SRC, DType::BF16, &over);
        assert_eq!((t.get("BM").unwrap(), t.get("X").unwrap(), t.get("NEW").unwrap()), (64, 3, 2));
        let e = t.get("BK").unwrap_err().to_string();
        assert!(e.contains("variant mma_multistage has no tunable BK"), "{e}");
        assert_eq!(t.optional("DIAG"), None);
        assert_eq!(t.variant(), "mma_multistage");
    }

    #[test]
    fn the_launcher_is_rebuilt_only_on_a_change() {
        let mut c = LauncherCache::default();
        let mut builds = 0;
        let p: BTreeMap<String, i64> = [("A".to_string(), 1)].into_iter().collect();
        for (v, a) in [("x", 1), ("x", 1), ("y", 1), ("y", 2), ("y", 2)] {
            let q: BTreeMap<String, i64> = [("A".to_string(), a)].into_iter().collect();
            let got = c
                .get(v, &q, |v, q| {
                    builds += 1;
                    Ok((v.to_string(), q["A"]))
                })
                .unwrap()
                .clone();
            assert_eq!(got, (v.to_string(), a));
        }
        assert_eq!(builds, 3);
        assert!(c.get("z", &p, |_, _| anyhow::bail!("bad")).is_err());
        assert_eq!(c.get("z", &p, |_, _| Ok(("ok".to_string(), 0))).unwrap().0, "ok", "a failed build is not kept");
    }

    #[test]
    fn real_templates_give_their_defaults() {
        let root = crate::paths::project_root();
        let load = |f: &str| crate::gpu::nvrtc::load_source(&root.join(f)).unwrap();
        let d = template_defaults(&load("kernels/attention/decode_splitkv.cu"), DType::BF16);
        let want = [("HEAD_DIM", 128), ("BLOCK_N", 64), ("NUM_WARPS", 4), ("STAGES", 3), ("SPLITS", 0)];
        for (k, v) in want.into_iter().chain([("BLOCKS_PER_SM", 1), ("FUSED_COMBINE", 1)]) {
            assert_eq!(d.get(k), Some(&v), "decode {k}");
        }
        // VEC comes from elementwise.cuh, expanded into the template as the sweep loads it.
        let d = template_defaults(&load("kernels/rmsnorm/rmsnorm_rows.cu"), DType::BF16);
        assert_eq!(d.get("VEC"), Some(&8));
        assert!(d.contains_key("ROWS_PER_BLOCK") && d.contains_key("CHUNKS"));
    }
}
