//! Figures in data terms: panels of series of points, and a legend. The charts build these;
//! the renderer draws them.

use crate::analysis::Spread;
use crate::plot::axis::Axis;

/// A colour as red, green and blue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Rgb(pub u8, pub u8, pub u8);

/// How a series of marks is drawn: one look per measure of the same norm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stroke {
    /// A solid line and circles: the plot's main measure.
    Solid,
    /// A dashed line and triangles.
    Dashed,
    /// A dotted line and squares.
    Dotted,
}

/// Marks that belong to no norm (legend samples of shapes).
pub(crate) const NEUTRAL: Rgb = Rgb(60, 60, 60);

/// Panels in a grid, row by row, with one legend for all of them.
pub(crate) struct Figure {
    pub(crate) title: String,
    pub(crate) columns: usize,
    pub(crate) panels: Vec<Panel>,
    pub(crate) legend: Vec<LegendEntry>,
}

pub(crate) struct Panel {
    /// Empty for a figure of one panel: the figure's title says it all.
    pub(crate) title: String,
    pub(crate) x: Axis,
    pub(crate) y: Axis,
    pub(crate) series: Vec<Series>,
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) color: Rgb,
    pub(crate) look: Look,
    /// Horizontal offset as a share of the panel's x range, so that error bars of several
    /// series at the same x stay apart.
    pub(crate) dodge: f64,
    pub(crate) points: Vec<Point>,
}

/// A value with its spread, in data coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
}

impl Point {
    /// The mean and min..max of `spread` at `x`.
    pub(crate) fn spread(x: f64, spread: Spread) -> Self {
        Self {
            x,
            y: spread.mean,
            low: spread.min,
            high: spread.max,
        }
    }

    /// A mark with no value: drawn at the top of the panel.
    pub(crate) fn at_top(x: f64) -> Self {
        Self {
            x,
            y: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Look {
    /// A line through `y` over a shaded band from `low` to `high`.
    Band,
    /// A thin line through `y`.
    Thin,
    /// Markers at `y` with error bars from `low` to `high`, joined by a line if `joined`;
    /// each stroke has its own marker, to tell measures of the same norm apart.
    Marks { stroke: Stroke, joined: bool },
    /// Crosses at the top of the panel: runs without a result.
    Failed,
}

pub(crate) struct LegendEntry {
    pub(crate) label: String,
    pub(crate) color: Rgb,
    pub(crate) look: Look,
}

impl Figure {
    /// Panels of the given titles and series sharing the axes `x` and `y`.
    pub(crate) fn grid(
        title: String,
        panels: Vec<(String, Vec<Series>)>,
        x: Axis,
        y: Axis,
    ) -> Self {
        let count = panels.len();
        Self {
            title,
            columns: match count {
                0 | 1 => 1,
                2 | 4 => 2,
                _ => 3,
            },
            panels: panels
                .into_iter()
                .map(|(title, series)| Panel {
                    title,
                    x: x.clone(),
                    y: y.clone(),
                    series,
                })
                .collect(),
            legend: Vec::new(),
        }
    }
}

/// The smallest and largest finite coordinate `pick` yields over the series' points, skipping
/// crosses, which have no value.
pub(crate) fn extent<'a>(
    series: impl IntoIterator<Item = &'a Series>,
    pick: impl Fn(&Point) -> [f64; 2],
) -> Option<(f64, f64)> {
    let values: Vec<f64> = series
        .into_iter()
        .filter(|s| s.look != Look::Failed)
        .flat_map(|s| s.points.iter().flat_map(&pick))
        .filter(|v| v.is_finite())
        .collect();
    let min = values.iter().copied().fold(f64::INFINITY, f64::min);
    let max = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (!values.is_empty()).then_some((min, max))
}

pub(crate) fn x_of(point: &Point) -> [f64; 2] {
    [point.x, point.x]
}

pub(crate) fn band_of(point: &Point) -> [f64; 2] {
    [point.low, point.high]
}
