//! The setup every chart repeats: axis titles, tick text and grid greys on the mesh, and
//! the legend box, in the house look of [`style`](super::style).

use super::style::{draw_err, text, GRID_BOLD, GRID_LIGHT, WINNER_COLOR};
use anyhow::Result;
use plotters::chart::{ChartContext, MeshStyle, SeriesAnno, SeriesLabelPosition};
use plotters::coord::ranged1d::Ranged;
use plotters::coord::CoordTranslate;
use plotters::prelude::*;

/// Text sizes of a mesh: axis titles and tick labels.
#[derive(Debug, Clone, Copy)]
pub struct MeshText {
    pub desc: f64,
    pub tick: f64,
}

/// Axis titles (an empty one is left out), text sizes and the grid colours on `mesh`;
/// the caller adds its own tick formatters and counts, then draws.
pub fn house_mesh<'m, 'a, 'b, X: Ranged, Y: Ranged, DB: DrawingBackend>(
    mesh: &'m mut MeshStyle<'a, 'b, X, Y, DB>,
    x_desc: &str,
    y_desc: &str,
    sizes: MeshText,
) -> &'m mut MeshStyle<'a, 'b, X, Y, DB> {
    for (desc, set) in [(x_desc, true), (y_desc, false)] {
        if !desc.is_empty() {
            if set {
                mesh.x_desc(desc);
            } else {
                mesh.y_desc(desc);
            }
        }
    }
    mesh.axis_desc_style(text(sizes.desc))
        .label_style(text(sizes.tick))
        .bold_line_style(GRID_BOLD)
        .light_line_style(GRID_LIGHT)
}

/// The tick label of a category axis (categories drawn at 0, 1, 2, ...): the name of the
/// category at `v`, and none between categories, where plotters also asks for ticks.
pub fn category_label(names: &[String], v: f64) -> String {
    let i = v.round();
    if (v - i).abs() < 1e-6 && i >= 0.0 {
        names.get(i as usize).cloned().unwrap_or_default()
    } else {
        String::new()
    }
}

/// The legend of every labelled series, in a white box with a grey border.
pub fn draw_legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
    font_size: f64,
    margin: u32,
) -> Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .margin(margin)
        .label_font(text(font_size))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(draw_err)
}

/// How every chart marks a winner (the row the table names): a point in its family's
/// colour inside a red ring. The heat map outlines the winner's cell in the same red.
pub fn draw_winners<'c, 'a, DB, X, Y>(
    chart: &'c mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    points: impl IntoIterator<Item = (X::ValueType, Y::ValueType)>,
    fill: RGBColor,
    radius: i32,
) -> Result<&'c mut SeriesAnno<'a, DB>>
where
    DB: DrawingBackend + 'a,
    X: Ranged,
    Y: Ranged,
    X::ValueType: Clone + 'static,
    Y::ValueType: Clone + 'static,
{
    chart
        .draw_series(points.into_iter().map(|p| {
            EmptyElement::at(p)
                + Circle::new((0, 0), radius, fill.filled())
                + Circle::new((0, 0), radius + 1, WINNER_COLOR.stroke_width(3))
        }))
        .map_err(draw_err)
}
