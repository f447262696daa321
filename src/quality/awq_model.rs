//! AWQ on a Llama model: where each searched scale's inverse goes.
//!
//! - q/k/v share attn_norm(x): one scale vector for the three, searched on their summed
//!   output error, 1/s folded into the attn_norm weight.
//! - gate/up share ffn_norm(x): likewise, folded into the ffn_norm weight.
//! - down reads silu(gate)·up: 1/s folded into the rows of w_up (an exact rescaling of the
//!   product), so up is scaled by s_gateup on its columns and 1/s_down on its rows.
//! - wo reads the attention output, whose channel j is a V channel; with grouped-query
//!   attention several query heads read one V head, so a per-channel 1/s cannot be folded
//!   into wv unless the scales agree across the group. wo gets plain RTN (AutoAWQ likewise
//!   skips o_proj when the shapes differ).
//!
//! The result is a model in f32 with the same function as the input; quantizing its linears
//! with RTN is AWQ. Every folded weight stays in 16/32 bits, so the int4 formats the kernels
//! run are unchanged.

use anyhow::Result;

use super::calib::Calibration;
use crate::llama::cpu_ref::LinearInput;
use crate::llama::{Mat, Weights};
use crate::quant::awq_search::{scale_columns, search_awq_scales, LinearRef};
use crate::quant::RtnConfig;

/// AWQ search settings.
#[derive(Debug, Clone, Copy)]
pub struct AwqOptions {
    /// α grid steps over [0, 1] (AutoAWQ: 20).
    pub grid: usize,
    /// Calibration rows the search measures the output error on.
    pub sample_rows: usize,
}

fn scale_rows(m: &mut Mat, s: &[f32]) {
    for (r, &sr) in s.iter().enumerate() {
        m.data[r * m.cols..(r + 1) * m.cols].iter_mut().for_each(|v| *v /= sr);
    }
}

/// The rescaled model (same function, AWQ-scaled linears), and the mean α chosen.
pub fn awq_rescale(w: &Weights, calib: &Calibration, rtn: &RtnConfig, opt: &AwqOptions) -> Result<(Weights, f32)> {
    let mut out = w.clone();
    let mut alphas = vec![];
    for (l, lw) in out.layers.iter_mut().enumerate() {
        let search = |mats: &[&Mat], site: LinearInput| -> Result<(Vec<f32>, f32)> {
            let (x, m) = calib.sample(l, site, opt.sample_rows);
            let k = mats[0].cols;
            let refs: Vec<LinearRef<'_>> = mats.iter().map(|mt| LinearRef { w: &mt.data, n: mt.rows }).collect();
            let r = search_awq_scales(&refs, k, &x, m, &calib.mean_abs(l, site), rtn, opt.grid)?;
            Ok((r.scales, r.alpha))
        };
        let (s, a) = search(&[&lw.wq, &lw.wk, &lw.wv], LinearInput::Qkv)?;
        for mt in [&mut lw.wq, &mut lw.wk, &mut lw.wv] {
            mt.data = scale_columns(&mt.data, mt.cols, &s);
        }
        lw.attn_norm.iter_mut().zip(&s).for_each(|(g, si)| *g /= si);
        alphas.push(a);

        let (s, a) = search(&[&lw.w_gate, &lw.w_up], LinearInput::GateUp)?;
        for mt in [&mut lw.w_gate, &mut lw.w_up] {
            mt.data = scale_columns(&mt.data, mt.cols, &s);
        }
        lw.ffn_norm.iter_mut().zip(&s).for_each(|(g, si)| *g /= si);
        alphas.push(a);

        let (s, a) = search(&[&lw.w_down], LinearInput::Down)?;
        lw.w_down.data = scale_columns(&lw.w_down.data, lw.w_down.cols, &s);
        scale_rows(&mut lw.w_up, &s);
        alphas.push(a);
    }
    let mean = alphas.iter().sum::<f32>() / alphas.len().max(1) as f32;
    Ok((out, mean))
}
