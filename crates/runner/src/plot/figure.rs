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

impl Stroke {
    /// The line of the `variant`-th series of a plot that tells series apart by their lines.
    pub(crate) fn of_variant(variant: usize) -> Self {
        [Self::Solid, Self::Dashed, Self::Dotted][variant % 3]
    }
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
    /// A horizontal line across the panel at a value, named: chance level.
    pub(crate) reference: Option<Reference>,
}

/// A horizontal line at `value`, labelled.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reference {
    pub(crate) value: f64,
    pub(crate) label: String,
}

#[derive(Debug, Clone)]
pub(crate) struct Series {
    pub(crate) color: Rgb,
    pub(crate) look: Look,
    /// Horizontal offset as a share of the panel's x range, so that error bars of several
    /// series at the same x stay apart.
    pub(crate) dodge: f64,
    pub(crate) points: Vec<Point>,
    /// The series' place among the plot's norms: its dash pattern (lines, bands) and its
    /// marker (marks) follow it, so that series that coincide stay visible.
    pub(crate) variant: usize,
    /// Each run's own value `(x, y)`, drawn as a small dot beside the mean.
    pub(crate) runs: Vec<(f64, f64)>,
}

impl Series {
    /// A series of `points` in `color` and `look`, the plot's `variant`-th, not dodged.
    pub(crate) fn new(color: Rgb, look: Look, variant: usize, points: Vec<Point>) -> Self {
        Self {
            color,
            look,
            dodge: 0.0,
            points,
            variant,
            runs: Vec::new(),
        }
    }
}

/// A value with its spread, in data coordinates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Point {
    pub(crate) x: f64,
    pub(crate) y: f64,
    pub(crate) low: f64,
    pub(crate) high: f64,
    /// The runs behind the point split into two groups far apart (some seeds train, some
    /// stall): their mean describes none of them, so only the runs' own dots are drawn.
    pub(crate) split: bool,
}

impl Point {
    /// The mean and min..max of `spread` at `x`.
    pub(crate) fn spread(x: f64, spread: Spread) -> Self {
        Self {
            x,
            y: spread.mean,
            low: spread.min,
            high: spread.max,
            split: false,
        }
    }

    /// A mark with no value: drawn in the strip of runs without a result.
    pub(crate) fn without_value(x: f64) -> Self {
        Self {
            x,
            y: f64::NAN,
            low: f64::NAN,
            high: f64::NAN,
            split: false,
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
    /// Crosses in a strip above the panel's values: runs without a result.
    Failed,
    /// The legend's note on what lines, bands and dots stand for; drawn nowhere else.
    Note,
}

pub(crate) struct LegendEntry {
    pub(crate) label: String,
    pub(crate) color: Rgb,
    pub(crate) look: Look,
    /// The series' place among the norms (see [`Series::variant`]).
    pub(crate) variant: usize,
}

impl LegendEntry {
    /// A line of text that says what the plot's marks stand for.
    pub(crate) fn note(text: &str) -> Self {
        Self {
            label: text.to_string(),
            color: NEUTRAL,
            look: Look::Note,
            variant: 0,
        }
    }
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
                    reference: None,
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

/// The extent of `values` that an outlier does not stretch: the smallest and largest value
/// within three interquartile ranges of the middle half. Values beyond are drawn at the edge,
/// labelled with what they are.
pub(crate) fn robust_extent(values: impl IntoIterator<Item = f64>) -> Option<(f64, f64)> {
    let mut values: Vec<f64> = values.into_iter().filter(|v| v.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let quartile = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    let (first, third) = (quartile(0.25), quartile(0.75));
    // A middle half of one value gets a tenth of its size as room.
    let range = (third - first).max(first.abs().max(third.abs()) * 0.1);
    let (low_fence, high_fence) = (first - 3.0 * range, third + 3.0 * range);
    let inside = values
        .iter()
        .filter(|v| (low_fence..=high_fence).contains(*v));
    let low = inside.clone().copied().fold(f64::INFINITY, f64::min);
    let high = inside.copied().fold(f64::NEG_INFINITY, f64::max);
    (low <= high).then_some((low, high))
}
