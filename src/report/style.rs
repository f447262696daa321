//! Shared look of every chart: the bundled font, colours, text sizes, number formats.
//!
//! Text is drawn with plotters' `ab_glyph` backend from a TTF compiled into the binary,
//! because CI machines and GPU boxes often have no system fonts at all.

use anyhow::{anyhow, Result};
use plotters::coord::combinators::{BindKeyPoints, LogCoord, WithKeyPoints};
use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};
use std::sync::OnceLock;

/// DejaVu Sans (Bitstream Vera license, see assets/fonts/DejaVuSans-LICENSE.txt).
static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

/// The family name every chart asks for; the bundled font is registered under it.
pub const FONT: &str = "sans-serif";

/// Registers the bundled font once per process. Every chart writer calls this first.
pub fn ensure_font() -> Result<()> {
    static REGISTERED: OnceLock<bool> = OnceLock::new();
    let ok = *REGISTERED.get_or_init(|| {
        // Register every style plotters may ask for; they all fall back to the one face.
        register_font(FONT, FontStyle::Normal, DEJAVU_SANS).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(anyhow!("the bundled chart font could not be parsed"))
    }
}

pub const TITLE_SIZE: f64 = 26.0;
pub const AXIS_DESC_SIZE: f64 = 20.0;
pub const TICK_SIZE: f64 = 17.0;
pub const LABEL_SIZE: f64 = 16.0;
pub const SMALL_SIZE: f64 = 14.0;

/// Tableau 10: distinct, colour-blind tolerable hues for families.
const PALETTE: [(u8, u8, u8); 10] = [
    (31, 119, 180),
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
];

pub fn series_color(i: usize) -> RGBColor {
    let (r, g, b) = PALETTE[i % PALETTE.len()];
    RGBColor(r, g, b)
}

/// The built-in families, each with its own palette slot, so gemm is the same blue in
/// every report whatever else the reports dir holds.
const FAMILY_SLOTS: [(&str, usize); 10] = [
    ("gemm", 0),
    ("rmsnorm", 1),
    ("softmax", 2),
    ("swiglu", 4),
    ("rope", 5),
    ("attention_prefill", 6),
    ("attention_decode", 9),
    ("gemm_int4", 8),
    ("attention_prefill_varlen", 7),
    ("attention_decode_varlen", 3),
];

/// A family's colour: a fixed slot for the built-in families, a stable hash of the name
/// (CRC-32, the same on every build and platform) into the palette for any other, so the
/// colour never depends on which families happen to be present.
pub fn family_color(family: &str) -> RGBColor {
    let slot = FAMILY_SLOTS
        .iter()
        .find(|(name, _)| *name == family)
        .map(|(_, slot)| *slot)
        .unwrap_or_else(|| crc32fast::hash(family.as_bytes()) as usize);
    series_color(slot)
}

pub const PEER_COLOR: RGBColor = RGBColor(90, 90, 90);
pub const WINNER_COLOR: RGBColor = RGBColor(214, 39, 40);
pub const CEILING_COLOR: RGBColor = RGBColor(20, 20, 20);
pub const GRID_BOLD: RGBColor = RGBColor(200, 200, 200);
pub const GRID_LIGHT: RGBColor = RGBColor(235, 235, 235);

pub fn text(size: f64) -> TextStyle<'static> {
    (FONT, size).into_font().color(&BLACK)
}

/// A number for a tick or a label with about three significant digits and no exponent
/// noise: 0.01, 0.5, 3.2, 42, 1500, 12k.
pub fn fmt_num(v: f64) -> String {
    if !v.is_finite() {
        return "–".to_string();
    }
    let a = v.abs();
    if a >= 100_000.0 {
        return format!("{:.0}k", v / 1000.0);
    }
    if a >= 10_000.0 {
        return format!("{:.1}k", v / 1000.0).replace(".0k", "k");
    }
    let s = if a >= 100.0 || a == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else if a >= 0.01 {
        format!("{v:.3}")
    } else {
        return format!("{v:.1e}");
    };
    trim_zeros(&s)
}

fn trim_zeros(s: &str) -> String {
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        s.to_string()
    }
}

/// A log axis over `lo..hi` with our own tick positions: plotters' automatic log ticks
/// start at the first power of ten inside the range, so a range like 20–110 µs got a
/// single label. Labelled (bold) ticks are 1-2-5 steps when the range spans a few decades,
/// powers of ten when it spans many, and finer steps when it spans less than one.
pub fn log_axis(lo: f64, hi: f64) -> WithKeyPoints<LogCoord<f64>> {
    let decades = (hi / lo).log10();
    let bold_mantissas: &[f64] = if decades < 1.0 {
        &[1.0, 1.5, 2.0, 3.0, 5.0, 7.0]
    } else if decades <= 3.5 {
        &[1.0, 2.0, 5.0]
    } else {
        &[1.0]
    };
    let light_mantissas: Vec<f64> = if decades <= 7.0 { (1..10).map(f64::from).collect() } else { vec![1.0] };
    (lo..hi).log_scale().with_key_points(ticks(lo, hi, bold_mantissas)).with_light_points(ticks(
        lo,
        hi,
        &light_mantissas,
    ))
}

/// Every m × 10^k (m in `mantissas`) within `lo..=hi`, ascending.
fn ticks(lo: f64, hi: f64, mantissas: &[f64]) -> Vec<f64> {
    let mut out = Vec::new();
    if !(lo > 0.0 && hi > lo && lo.is_finite() && hi.is_finite()) {
        return out;
    }
    for k in (lo.log10().floor() as i32)..=(hi.log10().ceil() as i32) {
        for m in mantissas {
            // Built from a decimal string so 0.1 × 3 prints as 0.3, not 0.30000000000000004.
            let v: f64 = format!("{m}e{k}").parse().unwrap_or(f64::NAN);
            if v >= lo * (1.0 - 1e-9) && v <= hi * (1.0 + 1e-9) {
                out.push(v);
            }
        }
    }
    out
}

/// Decade-aligned range covering `lo..hi` (both > 0), with `pad` as a factor of headroom.
pub fn log_range(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let lo = (lo / pad).max(f64::MIN_POSITIVE);
    let hi = (hi * pad).max(lo * 10.0);
    (10f64.powf(lo.log10().floor()), 10f64.powf(hi.log10().ceil()))
}

/// Tight log range for data spanning little (a strip chart of times): pads by `pad` but
/// keeps at least a factor 3 so ticks 1/2/5 land inside.
pub fn tight_log_range(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    let (mut lo, mut hi) = (lo / pad, hi * pad);
    if hi / lo < 3.0 {
        let mid = (lo * hi).sqrt();
        lo = mid / 3f64.sqrt();
        hi = mid * 3f64.sqrt();
    }
    (lo, hi)
}

/// Turns any label into a file-name piece: `[A-Za-z0-9._-]`, everything else `_`.
pub fn slug(s: &str) -> String {
    let out: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect();
    let out = out.trim_matches('.').to_string();
    if out.is_empty() {
        "_".to_string()
    } else {
        out
    }
}

/// Converts a plotters error (which borrows the backend) into an anyhow error.
pub fn draw_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing the chart failed: {e:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_num(0.5), "0.5");
        assert_eq!(fmt_num(3.456), "3.46");
        assert_eq!(fmt_num(42.0), "42");
        assert_eq!(fmt_num(1500.0), "1500");
        assert_eq!(fmt_num(12000.0), "12k");
        assert_eq!(ticks(0.1, 10.0, &[1.0, 2.0, 5.0]), vec![0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0]);
        assert_eq!(ticks(20.0, 110.0, &[1.0, 2.0, 5.0]), vec![20.0, 50.0, 100.0]);
        assert!(ticks(0.0, 1.0, &[1.0]).is_empty());
    }

    #[test]
    fn ranges_and_slugs() {
        assert_eq!(log_range(3.0, 70.0, 1.0), (1.0, 100.0));
        let (lo, hi) = tight_log_range(10.0, 11.0, 1.0);
        assert!(hi / lo >= 2.99 && lo < 10.0 && hi > 11.0);
        assert_eq!(slug("16x4096 / ../x"), "16x4096___.._x");
        assert_eq!(slug(""), "_");
    }

    #[test]
    fn family_colours_are_fixed_and_distinct() {
        let builtin: Vec<RGBColor> = FAMILY_SLOTS.iter().map(|(f, _)| family_color(f)).collect();
        for (i, a) in builtin.iter().enumerate() {
            assert!(builtin[i + 1..].iter().all(|b| b != a), "two built-in families share a colour");
        }
        assert_eq!(family_color("gemm"), RGBColor(31, 119, 180));
        // Any other name lands in the palette, the same way each call.
        assert_eq!(family_color("my_kernel"), family_color("my_kernel"));
        assert!(PALETTE.iter().any(|&(r, g, b)| RGBColor(r, g, b) == family_color("my_kernel")));
    }
}
