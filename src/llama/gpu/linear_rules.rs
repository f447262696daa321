//! Which configuration of a tuned linear may run a shape: the variants each family's model
//! path launches, the M each is meant for, and how a winner measured at one M (or in one
//! int4 format) is adapted to another. Pure functions, no GPU: `linear` plans with them.

use crate::kernels::gemm_int4::tiled::reads_tiled;
use crate::kernels::gemm_int4::{Int4Format, ZeroMode};
use crate::kernels::gemm_int8;
use crate::kernels::Params;
use crate::kernels::{ceil_div, DType};
use crate::quant::HalfDtype;
use std::collections::BTreeMap;
/// Variants `gemm::launch_linear` can run (a database may hold winners of newer variants
/// this build does not know; those are skipped, not launched).
pub const LAUNCHABLE: &[&str] = &["mma_multistage", "gemv_splitk", "mma_skinny", "wgmma_tma"];

/// Largest M each launchable variant is meant for (the `when` of sweeps/gemm.toml).
pub fn max_m(variant: &str) -> Option<i64> {
    match variant {
        "gemv_splitk" => Some(16),
        "mma_skinny" => Some(64),
        "mma_multistage" | "wgmma_tma" => Some(i64::MAX),
        _ => None,
    }
}

/// Whether a database winner of `variant` may run a linear with `m` rows.
pub fn usable_at(variant: &str, m: i64) -> bool {
    LAUNCHABLE.contains(&variant) && max_m(variant).map(|x| m <= x).unwrap_or(false)
}

/// The defaults of a template as the model compiles it (bf16), by the one parser
/// ([`crate::kernels::tunables::template_defaults`]).
pub fn template_defaults(source: &str) -> BTreeMap<String, i64> {
    crate::kernels::tunables::template_defaults(source, DType::BF16)
}

/// Smallest of 1, 2, 4, 8, 16 that is at least `m` (gemv_splitk's MMAX values).
pub fn mmax_for(m: i64) -> i64 {
    [1, 2, 4, 8, 16].into_iter().find(|&v| v >= m).unwrap_or(16)
}

/// A tunable as the kernel is compiled: the configuration's value, else the template's
/// default (a winner lists only what its sweep searched). `None` when neither sets it: the
/// configuration cannot be adapted, so it is not used.
fn compiled_value(params: &Params, defaults: &Params, name: &str) -> Option<i64> {
    params.get(name).or_else(|| defaults.get(name)).copied()
}

/// Makes a configuration usable at `m`: gemv_splitk keeps MMAX accumulators per row, so a
/// winner measured at a smaller M is widened; beyond M = 16 it cannot run at all.
/// `defaults` are the variant's template defaults ([`template_defaults`]).
pub fn adapt_params(variant: &str, params: &Params, defaults: &Params, m: i64) -> Option<BTreeMap<String, i64>> {
    let mut p = params.clone();
    if variant == "gemv_splitk" {
        if m > 16 {
            return None;
        }
        let mm = compiled_value(&p, defaults, "MMAX")?;
        if mm < m {
            p.insert("MMAX".into(), mmax_for(m));
        }
    }
    Some(p)
}

/// The variant used when nothing was tuned: the memory-bound kernel for decode-sized M, the
/// tensor-core kernel otherwise.
pub fn default_variant(m: i64) -> &'static str {
    if m <= 16 {
        "gemv_splitk"
    } else {
        "mma_multistage"
    }
}

/// Whether a gemm_int4 database winner of `variant` may run a linear with `m` rows.
pub fn int4_usable_at(variant: &str, m: i64) -> bool {
    match variant {
        "int4_gemv" | "int4_gemv_tc" | "int4_gemv_bulk" => m <= 16,
        "int4_mma" => true,
        // sm_90a only: a database for this GPU only holds it where it compiled and ran.
        "int4_mma_wgmma" => m >= 64,
        // sm_90a only, any M (tokens are its wgmma n; the tile size BT is adapted to M).
        "int4_wgmma_rs" => true,
        _ => false,
    }
}

/// Makes a gemm_int4 configuration usable at `m` in the model's weight format: the decode
/// kernels size their accumulators by M at compile time, so a winner measured at a smaller M
/// is widened; the format tunables are pinned to the quantizer's.
pub fn int4_adapt_params(
    variant: &str,
    params: &Params,
    defaults: &Params,
    m: i64,
    group: i64,
) -> Option<BTreeMap<String, i64>> {
    let format = Int4Format { group, ..Int4Format::default_for(DType::BF16) };
    int4_adapt_params_for(variant, params, defaults, m, &format)
}

/// [`int4_adapt_params`] for weights in `format`: its group, zero points and scale dtype
/// are pinned. The tiled-layout kernel (int4_gemv_bulk) is left out for any format but
/// symmetric bf16, the only one the model's repacker writes. `defaults` are the variant's
/// template defaults.
pub fn int4_adapt_params_for(
    variant: &str,
    params: &Params,
    defaults: &Params,
    m: i64,
    format: &Int4Format,
) -> Option<BTreeMap<String, i64>> {
    if !int4_usable_at(variant, m) {
        return None;
    }
    let plain = format.zeros == ZeroMode::Symmetric && format.scale_dtype == HalfDtype::Bf16;
    if reads_tiled(variant) && !plain {
        return None;
    }
    let mut p = params.clone();
    p.insert("GROUP".into(), format.group);
    p.insert("ZERO_MODE".into(), format.zeros as i64);
    match format.scale_dtype {
        HalfDtype::Bf16 => p.remove("KL_SCALE_FP16"),
        HalfDtype::F16 => p.insert("KL_SCALE_FP16".into(), 1),
    };
    match variant {
        "int4_gemv" => {
            if compiled_value(&p, defaults, "M_MAX")? < m {
                p.insert("M_MAX".into(), mmax_for(m));
            }
        }
        "int4_gemv_bulk" => {
            if 8 * compiled_value(&p, defaults, "M_TILES")? < m {
                p.insert("M_TILES".into(), ceil_div(m, 8));
            }
        }
        "int4_gemv_tc" => {
            if 8 * compiled_value(&p, defaults, "M_TILES")? < m {
                p.insert("M_TILES".into(), ceil_div(m, 8));
            }
            // The row-contiguous mode reads one X row: a batch takes the 16-row tiles.
            if m > 1 {
                p.remove("DIAG");
            }
        }
        _ => {}
    }
    Some(p)
}

/// Makes a gemm_int8 configuration usable at `m` (decode sizes: int8_gemv keeps M_MAX
/// accumulators per row, so a winner measured at a smaller M is widened).
pub fn int8_adapt_params(variant: &str, params: &Params, defaults: &Params, m: i64) -> Option<BTreeMap<String, i64>> {
    if variant != "int8_gemv" {
        return None;
    }
    let need = gemm_int8::m_max_for(m)?;
    let mut p = params.clone();
    if compiled_value(&p, defaults, "M_MAX")? < m {
        p.insert("M_MAX".into(), need);
    }
    Some(p)
}

/// The int4 variants used when nothing was tuned, in order of preference: the tensor-core
/// GEMV needs K in 128-column steps, so a model such as SmolLM2 (K = 576) takes the plain
/// GEMV, which steps by its group.
pub fn int4_default_variants(m: i64) -> &'static [&'static str] {
    if m <= 16 {
        &["int4_gemv_tc", "int4_gemv", "int4_mma"]
    } else {
        &["int4_mma"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::gemm_int4::linear as int4_linear;

    #[test]
    fn gemv_winner_is_widened_or_refused() {
        let none = Params::new();
        let p: BTreeMap<String, i64> = [("MMAX".to_string(), 1), ("SPLITK".to_string(), 4)].into_iter().collect();
        assert_eq!(adapt_params("gemv_splitk", &p, &none, 1).unwrap()["MMAX"], 1);
        assert_eq!(adapt_params("gemv_splitk", &p, &none, 5).unwrap()["MMAX"], 8);
        assert!(adapt_params("gemv_splitk", &p, &none, 17).is_none());
        assert_eq!(adapt_params("mma_multistage", &p, &none, 4096).unwrap(), p);
        assert_eq!(default_variant(8), "gemv_splitk");
        assert!(usable_at("mma_skinny", 64) && !usable_at("mma_skinny", 128) && !usable_at("gemv_splitk", 1024));
        assert!(usable_at("mma_multistage", 1) && usable_at("wgmma_tma", 4096) && !usable_at("nosuch", 1));
        assert_eq!(default_variant(128), "mma_multistage");
    }

    #[test]
    fn int4_winners_are_widened_pinned_to_the_format_or_refused() {
        let p: BTreeMap<String, i64> = [("M_TILES", 1), ("SPLITK", 4), ("GROUP", 64), ("ZERO_MODE", 1)]
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect();
        let none = Params::new();
        let a = int4_adapt_params("int4_gemv_tc", &p, &none, 1, 128).unwrap();
        assert_eq!((a["M_TILES"], a["GROUP"], a["ZERO_MODE"], a["SPLITK"]), (1, 128, 0, 4));
        assert_eq!(int4_adapt_params("int4_gemv_tc", &p, &none, 9, 128).unwrap()["M_TILES"], 2);
        assert!(int4_adapt_params("int4_gemv_tc", &p, &none, 17, 128).is_none());
        let mut d = p.clone();
        d.insert("DIAG".into(), 1);
        assert_eq!(int4_adapt_params("int4_gemv_tc", &d, &none, 1, 128).unwrap()["DIAG"], 1);
        assert!(!int4_adapt_params("int4_gemv_tc", &d, &none, 2, 128).unwrap().contains_key("DIAG"));
        let g: BTreeMap<String, i64> = [("M_MAX".to_string(), 2)].into_iter().collect();
        assert_eq!(int4_adapt_params("int4_gemv", &g, &none, 3, 128).unwrap()["M_MAX"], 4);
        assert!(int4_adapt_params("int4_mma", &g, &none, 4096, 128).is_some());
        assert!(int4_adapt_params("nosuch", &g, &none, 1, 128).is_none());
        assert_eq!((int4_default_variants(16)[0], int4_default_variants(17)[0]), ("int4_gemv_tc", "int4_mma"));
    }

    /// A winner lists only what its sweep searched: a tunable it lacks is read from the
    /// template's defaults, and a configuration neither sets is not used (never guessed).
    #[test]
    fn unswept_tunables_come_from_the_template_defaults() {
        let map = |kv: &[(&str, i64)]| -> Params { kv.iter().map(|(k, v)| (k.to_string(), *v)).collect() };
        let (winner, none) = (map(&[("SPLITK", 4)]), Params::new());
        let narrow = map(&[("M_TILES", 1)]);
        assert_eq!(int4_adapt_params("int4_gemv_tc", &winner, &narrow, 9, 128).unwrap()["M_TILES"], 2);
        let wide = map(&[("M_TILES", 2)]);
        assert!(!int4_adapt_params("int4_gemv_tc", &winner, &wide, 9, 128).unwrap().contains_key("M_TILES"));
        assert!(int4_adapt_params("int4_gemv_tc", &winner, &none, 9, 128).is_none());
        assert_eq!(adapt_params("gemv_splitk", &winner, &map(&[("MMAX", 1)]), 3).unwrap()["MMAX"], 4);
        assert!(adapt_params("gemv_splitk", &winner, &none, 3).is_none());
        assert!(int8_adapt_params("int8_gemv", &winner, &map(&[("M_MAX", 16)]), 8).unwrap().get("M_MAX").is_none());
        assert!(int8_adapt_params("int8_gemv", &winner, &none, 8).is_none());
    }

    /// SmolLM2's K = 576 (g64) is not in int4_gemv_tc's 128-column steps: the first default
    /// is refused before anything compiles and the next one, int4_gemv, runs it; at Llama's
    /// K = 4096 the first default stays.
    #[test]
    fn int4_defaults_fall_back_where_a_shape_breaks_the_launch_contract() {
        let root = crate::paths::project_root();
        let defaults = |file: &str, m: i64, group: i64, variant: &str| {
            let src = crate::gpu::nvrtc::load_source(&root.join(file)).unwrap();
            int4_adapt_params(variant, &template_defaults(&src), &Params::new(), m, group).unwrap()
        };
        let tc = defaults("kernels/gemm_int4/int4_gemv_tc.cu", 1, 64, "int4_gemv_tc");
        let err = int4_linear::check_shape("int4_gemv_tc", &tc, 1, 960, 576, DType::BF16).unwrap_err();
        assert!(format!("{err:#}").contains("128-column step"), "{err:#}");
        let tc128 = defaults("kernels/gemm_int4/int4_gemv_tc.cu", 1, 128, "int4_gemv_tc");
        int4_linear::check_shape("int4_gemv_tc", &tc128, 1, 6144, 4096, DType::BF16).unwrap();
        assert_eq!(int4_default_variants(1)[1], "int4_gemv");
        let gemv = defaults("kernels/gemm_int4/int4_gemv.cu", 1, 64, "int4_gemv");
        int4_linear::check_shape("int4_gemv", &gemv, 1, 960, 576, DType::BF16).unwrap();
    }

    #[test]
    fn real_templates_have_launchable_defaults() {
        let root = crate::paths::project_root();
        for (file, need) in [
            ("kernels/gemm/mma_multistage.cu", &["BM", "BN", "BK", "WM", "WN", "STAGES"][..]),
            ("kernels/gemm/gemv_splitk.cu", &["NUM_WARPS", "ROWS_PER_WARP", "SPLITK", "MMAX"][..]),
            (
                "kernels/gemm_int4/int4_gemv_tc.cu",
                &["M_TILES", "N_TILES", "NUM_WARPS", "UNROLL", "SPLITK", "GROUP"][..],
            ),
            ("kernels/gemm_int4/int4_mma.cu", &["BM", "BN", "BK", "WM", "WN", "STAGES", "GROUP"][..]),
        ] {
            // As the sweep loads it: shared headers expanded.
            let src = crate::gpu::nvrtc::load_source(&root.join(file)).unwrap();
            let d = template_defaults(&src);
            for n in need {
                assert!(d.contains_key(*n), "{file}: no default for {n}");
            }
        }
    }
}
