//! Greedy text placement: try a few anchor positions per label and take the first whose
//! box overlaps nothing placed before, so point labels stay readable on crowded charts.

use super::style::draw_err;
use anyhow::Result;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

/// Pixel rectangle: left, top, right, bottom.
type Rect = (i32, i32, i32, i32);

#[derive(Default)]
pub struct LabelPlacer {
    taken: Vec<Rect>,
}

/// One candidate anchor: pixel position and how the text hangs off it.
pub type Anchor = (i32, i32, HPos, VPos);

fn overlaps(a: &Rect, b: &Rect) -> bool {
    a.0 < b.2 && b.0 < a.2 && a.1 < b.3 && b.1 < a.3
}

fn rect_of((x, y, h, v): Anchor, (w, ht): (i32, i32)) -> Rect {
    let left = match h {
        HPos::Left => x,
        HPos::Right => x - w,
        HPos::Center => x - w / 2,
    };
    let top = match v {
        VPos::Top => y,
        VPos::Bottom => y - ht,
        VPos::Center => y - ht / 2,
    };
    // A little air around each label.
    (left - 2, top - 2, left + w + 2, top + ht + 2)
}

/// What [`LabelPlacer::place`] does with a label when every anchor is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfTaken {
    /// Draw nothing.
    Skip,
    /// Draw it at the first anchor anyway (for labels a chart cannot do without).
    UseFirst,
}

impl LabelPlacer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Marks an area (a marker, say) that labels must not cover.
    pub fn reserve(&mut self, center: (i32, i32), radius: i32) {
        self.taken.push((center.0 - radius, center.1 - radius, center.0 + radius, center.1 + radius));
    }

    /// Draws `label` at the first free anchor (one that collides with no label or reserved
    /// area and stays on the canvas); `if_taken` says what happens when there is none.
    /// Returns whether the label was drawn.
    pub fn place<DB: DrawingBackend>(
        &mut self,
        area: &DrawingArea<DB, Shift>,
        label: &str,
        style: TextStyle,
        anchors: &[Anchor],
        if_taken: IfTaken,
    ) -> Result<bool> {
        if label.is_empty() || anchors.is_empty() {
            return Ok(false);
        }
        let (w, h) = area.estimate_text_size(label, &style).map_err(draw_err)?;
        let size = (w as i32, h as i32);
        let (cw, ch) = area.dim_in_pixel();
        let inside = |r: &Rect| r.0 >= 0 && r.1 >= 0 && r.2 <= cw as i32 && r.3 <= ch as i32;
        let free = anchors.iter().copied().find(|a| {
            let r = rect_of(*a, size);
            inside(&r) && !self.taken.iter().any(|t| overlaps(t, &r))
        });
        let chosen = match (free, if_taken) {
            (Some(a), _) => a,
            (None, IfTaken::UseFirst) => anchors[0],
            (None, IfTaken::Skip) => return Ok(false),
        };
        self.taken.push(rect_of(chosen, size));
        let (x, y, hp, vp) = chosen;
        area.draw(&Text::new(label.to_string(), (x, y), style.pos(Pos::new(hp, vp)))).map_err(draw_err)?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_label_never_lands_on_a_taken_spot() {
        super::super::style::ensure_font().unwrap();
        let mut buf = vec![0u8; 400 * 200 * 3];
        let area = BitMapBackend::with_buffer(&mut buf, (400, 200)).into_drawing_area();
        let style = super::super::style::text(14.0);
        let mut placer = LabelPlacer::new();
        let spot = [(100, 100, HPos::Left, VPos::Center)];
        assert!(placer.place(&area, "first", style.clone(), &spot, IfTaken::Skip).unwrap());
        // The same spot is taken now; a second anchor further away is free.
        assert!(!placer.place(&area, "second", style.clone(), &spot, IfTaken::Skip).unwrap());
        let two = [spot[0], (100, 160, HPos::Left, VPos::Center)];
        assert!(placer.place(&area, "second", style.clone(), &two, IfTaken::Skip).unwrap());
        // A reserved marker blocks a label as a placed label does.
        placer.reserve((300, 40), 10);
        assert!(!placer.place(&area, "x", style, &[(300, 40, HPos::Center, VPos::Center)], IfTaken::Skip).unwrap());
    }
}
