//! Loss-free conversion from GPTQ checkpoints (GPTQ-for-LLaMa, AutoGPTQ, GPTQModel).
//!
//! Layout for W[N, K], group size g (g = K for per-channel, "group_size: -1"):
//! - `qweight` int32 [K/8, N]: word (i, n) holds rows k = 8i..8i+7 of column n, row 8i + j at
//!   bits 4j..4j+3 (sequential nibbles along K);
//! - `qzeros` int32 [K/g, N/8]: word (gr, j) holds the zeros of columns 8j..8j+7, column
//!   8j + c at bits 4c..4c+3 (sequential along N);
//! - `scales` [K/g, N];
//! - `g_idx` int32 [K] (optional): the group of each input column k.
//!
//! Zero-point convention (`GptqZeros`): GPTQ-for-LLaMa and AutoGPTQ's "v1" checkpoints store
//! z - 1, and their kernels compute (q - (stored + 1)) * s; GPTQModel's internal "v2" stores z
//! itself. Both are supported; v1 is what checkpoints on the Hub use. A v1 stored 15 means
//! z = 16 (the famous overflow of zero 0), which `Zeros::Int` holds exactly.
//!
//! Act-order (desc_act): g_idx is a permutation of the sequential group assignment, so a
//! group's columns are scattered along K. We reorder K so each group's columns are
//! contiguous (stable sort by g_idx) and return that permutation: Y = X·Wᵀ = X[:, perm]·W'ᵀ.
//! This is loss-free and keeps the kernel's fast path (one scale per contiguous run of K);
//! the alternative, a per-column group lookup in the kernel, costs a gather of scales per
//! element. The caller must feed the kernel activations gathered as X'[:, j] = X[:, perm[j]]
//! (or fold the permutation into the producer of X, e.g. the rows of the previous linear).

use super::error::{bad_shape, bad_value, Result};
use super::format::{HalfDtype, Int4Weight, Zeros};
use super::view::TensorView;

/// Which meaning the stored zero points have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GptqZeros {
    /// Stored value is z - 1 (GPTQ-for-LLaMa, AutoGPTQ checkpoint format v1).
    V1PlusOne,
    /// Stored value is z (GPTQModel "gptq_v2").
    V2,
}

pub struct GptqTensors<'a> {
    pub qweight: TensorView<'a, i32>,
    pub qzeros: TensorView<'a, i32>,
    pub scales: TensorView<'a, u16>,
    pub g_idx: Option<TensorView<'a, i32>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GptqConverted {
    pub weight: Int4Weight,
    /// Input-column permutation for act-order checkpoints: the kernel must be given
    /// X'[:, j] = X[:, k_perm[j]]. `None` when g_idx is absent or already sequential.
    pub k_perm: Option<Vec<u32>>,
}

/// Converts a GPTQ tensor set for W[n, k]. `scale_dtype` is the dtype of `scales`.
pub fn gptq_to_int4(
    t: &GptqTensors,
    n: usize,
    k: usize,
    group_size: usize,
    scale_dtype: HalfDtype,
    zero_convention: GptqZeros,
) -> Result<GptqConverted> {
    super::format::check_dims(n, k, group_size)?;
    if !n.is_multiple_of(8) {
        return Err(bad_shape(
            "qzeros",
            format!("N={n} is not a multiple of 8 (GPTQ packs 8 zero points of N per int32)"),
        ));
    }
    let groups = k / group_size;
    t.qweight.expect("qweight", &[k / 8, n])?;
    t.qzeros.expect("qzeros", &[groups, n / 8])?;
    t.scales.expect("scales", &[groups, n])?;

    let perm = match &t.g_idx {
        None => None,
        Some(g_idx) => {
            g_idx.expect("g_idx", &[k])?;
            group_permutation(g_idx.data, groups, group_size)?
        }
    };

    // Codes in original column order, then gathered by the permutation.
    let mut codes = vec![0u8; n * k];
    for i in 0..k / 8 {
        for col in 0..n {
            let word = t.qweight.data[i * n + col] as u32;
            for j in 0..8 {
                let src_k = 8 * i + j;
                codes[col * k + src_k] = ((word >> (4 * j)) & 0xF) as u8;
            }
        }
    }
    if let Some(p) = &perm {
        let mut row = vec![0u8; k];
        for col in 0..n {
            let r = &mut codes[col * k..][..k];
            for (j, &src) in p.iter().enumerate() {
                row[j] = r[src as usize];
            }
            r.copy_from_slice(&row);
        }
    }

    let offset = match zero_convention {
        GptqZeros::V1PlusOne => 1u8,
        GptqZeros::V2 => 0u8,
    };
    let mut zeros = vec![0u8; groups * n];
    for g in 0..groups {
        for col in 0..n {
            let word = t.qzeros.data[g * (n / 8) + col / 8] as u32;
            zeros[g * n + col] = ((word >> (4 * (col % 8))) & 0xF) as u8 + offset;
        }
    }
    let mut weight =
        Int4Weight::from_codes(n, k, group_size, scale_dtype, &codes, t.scales.data.to_vec(), Zeros::Int(zeros))?;
    weight.simplify_zeros();
    Ok(GptqConverted { weight, k_perm: perm })
}

/// The stable sort of columns by group, or None when g_idx is the sequential k / g already.
/// Every group must hold exactly `group_size` columns (true for GPTQ's act-order, whose g_idx
/// is a permutation of the sequential one); otherwise no uniform-group layout is loss-free.
fn group_permutation(g_idx: &[i32], groups: usize, group_size: usize) -> Result<Option<Vec<u32>>> {
    let mut count = vec![0usize; groups];
    for (kk, &g) in g_idx.iter().enumerate() {
        if g < 0 || g as usize >= groups {
            return Err(bad_value("g_idx", format!("entry {kk} is group {g}, outside 0..{groups}")));
        }
        count[g as usize] += 1;
    }
    if let Some(g) = count.iter().position(|&c| c != group_size) {
        return Err(bad_value(
            "g_idx",
            format!(
                "group {g} has {} columns, expected {group_size}; such a g_idx has no loss-free uniform-group layout",
                count[g]
            ),
        ));
    }
    if g_idx.iter().enumerate().all(|(kk, &g)| g as usize == kk / group_size) {
        return Ok(None);
    }
    let mut perm: Vec<u32> = (0..g_idx.len() as u32).collect();
    perm.sort_by_key(|&kk| g_idx[kk as usize]); // stable: keeps K order inside a group
    Ok(Some(perm))
}
