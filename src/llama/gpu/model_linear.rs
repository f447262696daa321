//! The four linears of a layer as the GPU model stores them (q/k/v and gate/up stacked), and
//! how a user names one: `3.down`, `0.qkv`. Mixed precision (`--int4-keep-bf16`) picks
//! linears by these names.

use anyhow::{bail, Context, Result};
use std::fmt;

/// One stored linear of a layer, in forward order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelLinear {
    Qkv,
    O,
    GateUp,
    Down,
}

impl ModelLinear {
    pub const ALL: [ModelLinear; 4] = [ModelLinear::Qkv, ModelLinear::O, ModelLinear::GateUp, ModelLinear::Down];

    pub fn name(self) -> &'static str {
        match self {
            ModelLinear::Qkv => "qkv",
            ModelLinear::O => "o",
            ModelLinear::GateUp => "gate_up",
            ModelLinear::Down => "down",
        }
    }

    /// The stored linear a checkpoint's (or the quality table's) projection is part of:
    /// q, k and v are stacked into qkv, gate and up into gate_up.
    pub fn of_projection(p: &str) -> Option<ModelLinear> {
        Some(match p {
            "q" | "k" | "v" | "qkv" => ModelLinear::Qkv,
            "o" => ModelLinear::O,
            "gate" | "up" | "gate_up" => ModelLinear::GateUp,
            "down" => ModelLinear::Down,
            _ => return None,
        })
    }
}

/// A linear of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LinearRef {
    pub layer: usize,
    pub linear: ModelLinear,
}

impl fmt::Display for LinearRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.layer, self.linear.name())
    }
}

/// A parsed list of linears (a flag's value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinearList(pub Vec<LinearRef>);

/// Parses `LAYER.LINEAR[,LAYER.LINEAR...]`, e.g. `0.down,3.qkv,29.gate`: LINEAR is qkv, o,
/// gate_up or down, or one of the projections stacked into them (q, k, v, gate, up), which
/// stands for its whole stack. Duplicates are dropped; the order is the model's.
pub fn parse_linear_list(text: &str) -> Result<Vec<LinearRef>> {
    let mut out = Vec::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (layer, proj) =
            item.split_once('.').with_context(|| format!("{item:?}: expected LAYER.LINEAR such as 0.down or 3.qkv"))?;
        let layer: usize =
            layer.parse().with_context(|| format!("{item:?}: the layer {layer:?} is not a whole number"))?;
        let Some(linear) = ModelLinear::of_projection(proj) else {
            bail!("{item:?}: {proj:?} is not a linear: use qkv, o, gate_up or down (or q, k, v, gate, up)");
        };
        out.push(LinearRef { layer, linear });
    }
    if out.is_empty() {
        bail!("an empty list of linears: give LAYER.LINEAR[,LAYER.LINEAR...], e.g. 0.down,3.qkv");
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks that every linear of `list` exists in a model of `n_layers` layers.
pub fn check_layers(list: &[LinearRef], n_layers: usize) -> Result<()> {
    if let Some(r) = list.iter().find(|r| r.layer >= n_layers) {
        bail!("{r}: the model has {n_layers} layers (0..{})", n_layers - 1);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_parse_stack_and_dedup() {
        let l = parse_linear_list("3.q, 0.down,3.v,29.gate_up").unwrap();
        let names: Vec<String> = l.iter().map(|r| r.to_string()).collect();
        assert_eq!(names, ["0.down", "3.qkv", "29.gate_up"]);
        check_layers(&l, 30).unwrap();
        assert!(check_layers(&l, 29).unwrap_err().to_string().contains("29.gate_up"));
    }

    #[test]
    fn bad_lists_say_what_to_write() {
        for (bad, want) in [("", "empty"), ("down", "LAYER.LINEAR"), ("x.down", "whole number"), ("1.mlp", "qkv, o")] {
            let e = parse_linear_list(bad).unwrap_err().to_string();
            assert!(e.contains(want), "{bad:?}: {e}");
        }
    }
}
