//! The only file that speaks plotters: draws a [`Figure`] into a PNG with the embedded font.

use std::ops::Range;
use std::path::Path;
use std::sync::OnceLock;

use plotters::coord::Shift;
use plotters::coord::ranged1d::{DefaultFormatting, KeyPointHint};
use plotters::coord::types::RangedCoordf64;
use plotters::element::DashedPathElement;
use plotters::prelude::*;
use plotters::style::register_font;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::analysis::fmt_number;
use crate::error::RunnerError;
use crate::plot::axis::Axis;
use crate::plot::figure::{Figure, LegendEntry, Look, Panel, Reference, Rgb, Series, Stroke};

/// The axis as plotters' coordinate: linear in drawing coordinates, with grid lines and labels
/// exactly at the ticks.
impl Ranged for Axis {
    type FormatOption = DefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        RangedCoordf64::from(self.range.clone()).map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, hint: Hint) -> Vec<f64> {
        // Light grid lines between the ticks would only add clutter.
        match hint.weight().allow_light_points() {
            true => Vec::new(),
            false => self.ticks.iter().map(|(position, _)| *position).collect(),
        }
    }

    fn range(&self) -> Range<f64> {
        self.range.clone()
    }
}

const FONT: &str = "sans-serif";
/// Figure widths: one panel, and a grid of panels.
const NARROW: u32 = 1000;
const WIDE: u32 = 1400;
const TITLE_HEIGHT: u32 = 50;
const LEGEND_WIDTH: u32 = 260;
/// Characters per legend line before wrapping (15 px text is about 8 px per character).
const LEGEND_CHARS: usize = 24;
/// Pixels per character of a panel title, to wrap it to the panel's width.
const PANEL_TITLE_CHAR_WIDTH: usize = 9;
const PANEL_TITLE_LINE: u32 = 20;

type Drawn<DB> = Result<(), DrawingAreaErrorKind<<DB as DrawingBackend>::ErrorType>>;

impl Figure {
    fn rows(&self) -> usize {
        self.panels.len().div_ceil(self.columns.max(1))
    }

    /// The picture's size in pixels: one panel is 1000 wide, a grid 1400, plus rows of panels
    /// about 4:3 below the title.
    fn size(&self) -> (u32, u32) {
        let columns = self.columns.max(1) as u32;
        let width = if columns == 1 { NARROW } else { WIDE };
        let panel_width = (width - LEGEND_WIDTH) / columns;
        let panel_height = match columns {
            1 => 560,
            _ => (panel_width * 3 / 4).clamp(300, 460),
        };
        (width, TITLE_HEIGHT + self.rows() as u32 * panel_height)
    }
}

/// Makes the embedded font the one plotters calls `sans-serif`, once: the machine's fonts are
/// never consulted, so plots look the same everywhere.
fn load_font() -> Result<(), RunnerError> {
    static LOADED: OnceLock<bool> = OnceLock::new();
    let loaded = *LOADED.get_or_init(|| {
        register_font(
            FONT,
            FontStyle::Normal,
            include_bytes!("../../assets/DejaVuSans.ttf"),
        )
        .is_ok()
    });
    match loaded {
        true => Ok(()),
        false => Err(RunnerError::Plot {
            path: "assets/DejaVuSans.ttf".into(),
            message: "the embedded font is not usable".into(),
        }),
    }
}

pub(crate) fn render(figure: &Figure, path: &Path) -> Result<(), RunnerError> {
    load_font()?;
    let root = BitMapBackend::new(path, figure.size()).into_drawing_area();
    let failed = |e: &dyn std::fmt::Display| RunnerError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    draw_figure(figure, &root).map_err(|e| failed(&e))?;
    root.present().map_err(|e| failed(&e))
}

fn draw_figure<DB: DrawingBackend>(figure: &Figure, root: &DrawingArea<DB, Shift>) -> Drawn<DB> {
    root.fill(&WHITE)?;
    let (width, _) = root.dim_in_pixel();
    let (title, body) = root.split_vertically(TITLE_HEIGHT);
    let style = TextStyle::from((FONT, 26).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
    title.draw_text(
        &figure.title,
        &style,
        (width as i32 / 2, TITLE_HEIGHT as i32 / 2),
    )?;
    let (grid, legend) = body.split_horizontally(width - LEGEND_WIDTH);
    let cells = grid.split_evenly((figure.rows(), figure.columns.max(1)));
    // Every panel reserves room for the longest wrapped title, so that the plots line up.
    let title_chars =
        (width - LEGEND_WIDTH) as usize / figure.columns.max(1) / PANEL_TITLE_CHAR_WIDTH;
    let title_lines = figure
        .panels
        .iter()
        .map(|panel| panel_title(panel, title_chars).len())
        .max()
        .unwrap_or(0);
    for (panel, cell) in figure.panels.iter().zip(&cells) {
        draw_panel(panel, cell, title_chars, title_lines)?;
    }
    draw_legend(&figure.legend, &legend)
}

/// A panel's title in lines of at most `chars` characters; none for an untitled panel.
fn panel_title(panel: &Panel, chars: usize) -> Vec<String> {
    match panel.title.is_empty() {
        true => Vec::new(),
        false => wrap(&panel.title, chars),
    }
}

/// Draws `panel` into `area` below room for `title_lines` lines of its title.
fn draw_panel<DB: DrawingBackend>(
    panel: &Panel,
    area: &DrawingArea<DB, Shift>,
    title_chars: usize,
    title_lines: usize,
) -> Drawn<DB> {
    // The title is drawn by hand, wrapped: plotters' captions do not wrap, and the narrow
    // panels of a wide grid would run their titles into each other.
    let (width, _) = area.dim_in_pixel();
    let lines = panel_title(panel, title_chars);
    let (head, body) = area.split_vertically(10 + PANEL_TITLE_LINE * title_lines as u32);
    let style = TextStyle::from((FONT, 16).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
    for (i, line) in lines.iter().enumerate() {
        let y = 8 + (PANEL_TITLE_LINE as usize * i) as i32;
        head.draw_text(line, &style, (width as i32 / 2, y))?;
    }
    // Room for the longest tick label and the rotated axis description.
    let longest_tick = panel
        .y
        .ticks
        .iter()
        .map(|(_, t)| t.chars().count())
        .max()
        .unwrap_or(1);
    // Runs without a result get a strip of their own above the values, so that their crosses
    // never read as a value.
    let strip =
        (panel.series.iter().any(|s| s.look == Look::Failed)).then(|| strip_range(&panel.y));
    let mut y = panel.y.clone();
    if let Some(strip) = &strip {
        y.range = y.range.start..strip.end;
    }
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(30 + 9 * longest_tick as u32)
        .build_cartesian_2d(panel.x.clone(), y)?;
    chart
        .configure_mesh()
        .x_desc(panel.x.label.as_str())
        .y_desc(panel.y.label.as_str())
        .x_label_formatter(&|v| panel.x.tick_text(*v))
        .y_label_formatter(&|v| panel.y.tick_text(*v))
        .label_style((FONT, 14))
        .axis_desc_style((FONT, 16))
        .bold_line_style(BLACK.mix(0.1))
        .draw()?;
    if let Some(strip) = &strip {
        let (left, right) = (panel.x.range.start, panel.x.range.end);
        let band = [(left, strip.start), (right, strip.end)];
        chart.draw_series([Rectangle::new(band, BLACK.mix(0.06).filled())])?;
        let style = TextStyle::from((FONT, 13).into_font()).pos(Pos::new(HPos::Left, VPos::Top));
        let corner = (left + 0.01 * (right - left), strip.end);
        chart.draw_series([Text::new("no result", corner, style)])?;
    }
    if let Some(reference) = &panel.reference {
        draw_reference(&mut chart, panel, reference)?;
    }
    for series in &panel.series {
        draw_series(&mut chart, panel, series, strip.as_ref())?;
    }
    Ok(())
}

/// The strip above `y`'s values where crosses for runs without a result go.
fn strip_range(y: &Axis) -> Range<f64> {
    let top = y.range.end;
    top..top + 0.14 * (y.range.end - y.range.start)
}

/// A dashed grey line across the panel at the reference's value, labelled at its right end;
/// nothing when the value lies off the panel's values.
fn draw_reference<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    panel: &Panel,
    reference: &Reference,
) -> Drawn<DB> {
    let y = panel.y.at(reference.value);
    if !panel.y.range.contains(&y) {
        return Ok(());
    }
    let (left, right) = (panel.x.range.start, panel.x.range.end);
    let grey = RGBColor(120, 120, 120);
    let line = DashedPathElement::new(vec![(left, y), (right, y)], 8, 6, grey.stroke_width(1));
    chart.draw_series([line])?;
    let style = TextStyle::from((FONT, 13).into_font())
        .color(&grey)
        .pos(Pos::new(HPos::Right, VPos::Bottom));
    chart.draw_series([Text::new(reference.label.clone(), (right, y), style)])?;
    Ok(())
}

fn draw_series<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    panel: &Panel,
    series: &Series,
    strip: Option<&Range<f64>>,
) -> Drawn<DB> {
    let shift = series.dodge * (panel.x.range.end - panel.x.range.start);
    // A value beyond the axis (an outlier the axis was not stretched for) sits at its edge.
    let (bottom, top) = (panel.y.range.start, panel.y.range.end);
    let clamp = |y: f64| panel.y.at(y).clamp(bottom, top);
    let at = |x: f64, y: f64| (panel.x.at(x) + shift, clamp(y));
    let outside = |y: f64| y.is_finite() && !panel.y.range.contains(&panel.y.at(y));
    let color = rgb(series.color);
    let dash = Stroke::of_variant(series.variant);
    match series.look {
        Look::Band => {
            let line: Vec<(f64, f64)> = series.points.iter().map(|p| at(p.x, p.y)).collect();
            let mut outline: Vec<(f64, f64)> =
                series.points.iter().map(|p| at(p.x, p.high)).collect();
            outline.extend(series.points.iter().rev().map(|p| at(p.x, p.low)));
            chart.draw_series([Polygon::new(outline, color.mix(0.18).filled())])?;
            chart.draw_series([stroke(line, dash, color.stroke_width(2))])?;
        }
        Look::Thin => {
            let line: Vec<(f64, f64)> = series.points.iter().map(|p| at(p.x, p.y)).collect();
            chart.draw_series([stroke(line, Stroke::Solid, color.stroke_width(1))])?;
        }
        Look::Marks {
            stroke: line_stroke,
            joined,
        } => {
            // Each run's own value, small and faint; a split setting shows these alone.
            let dots = series.runs.iter().map(|(x, y)| at(*x, *y));
            chart.draw_series(dots.map(|p| Circle::new(p, 2, color.mix(0.6).filled())))?;
            let shown: Vec<_> = series.points.iter().filter(|p| !p.split).collect();
            if joined {
                let line = shown.iter().map(|p| at(p.x, p.y)).collect();
                chart.draw_series([stroke(line, line_stroke, color.stroke_width(2))])?;
            }
            let bars = shown.iter().filter(|p| p.high > p.low);
            chart.draw_series(bars.clone().map(|p| {
                PathElement::new(vec![at(p.x, p.low), at(p.x, p.high)], color.stroke_width(2))
            }))?;
            let ends = bars.flat_map(|p| [at(p.x, p.low), at(p.x, p.high)]);
            chart.draw_series(ends.map(|end| {
                EmptyElement::at(end)
                    + PathElement::new(vec![(-6, 0), (6, 0)], color.stroke_width(2))
            }))?;
            let filled = line_stroke == Stroke::Solid;
            let marks = shown.iter().map(|p| at(p.x, p.y)).collect();
            draw_markers(chart, marks, series.variant, filled, color)?;
            // What an edge stands for: the value drawn there.
            let beyond = series.points.iter().flat_map(|p| {
                let values = [(p.y, !p.split), (p.low, !p.split), (p.high, !p.split)];
                let runs = series.runs.iter().filter(move |(x, _)| *x == p.x);
                let runs = runs.map(|(_, y)| (*y, p.split));
                values
                    .into_iter()
                    .chain(runs)
                    .filter(|(v, shown)| *shown && outside(*v))
                    .map(move |(v, _)| (p.x, v))
            });
            let style = TextStyle::from((FONT, 12).into_font()).color(&color);
            let labels = beyond.map(|(x, v)| {
                Text::new(
                    fmt_number(v),
                    at(x, v),
                    style.clone().pos(edge_pos(v, &panel.y)),
                )
            });
            chart.draw_series(labels)?;
        }
        Look::Failed => {
            let Some(strip) = strip else { return Ok(()) };
            let middle = (strip.start + strip.end) / 2.0;
            let crosses = series
                .points
                .iter()
                .map(|p| (panel.x.at(p.x) + shift, middle));
            chart.draw_series(crosses.map(|point| cross(point, color)))?;
        }
        Look::Note => {}
    }
    Ok(())
}

/// Where an edge label goes: below the top edge, above the bottom one.
fn edge_pos(value: f64, y: &Axis) -> Pos {
    match y.at(value) > y.range.end {
        true => Pos::new(HPos::Left, VPos::Top),
        false => Pos::new(HPos::Left, VPos::Bottom),
    }
}

/// A solid, dashed or dotted line through `points`.
fn stroke<DB: DrawingBackend, C: Clone + 'static>(
    points: Vec<C>,
    stroke: Stroke,
    style: ShapeStyle,
) -> DynElement<'static, DB, C> {
    match stroke {
        Stroke::Solid => PathElement::new(points, style).into_dyn(),
        Stroke::Dashed => DashedPathElement::new(points, 10, 6, style).into_dyn(),
        Stroke::Dotted => DashedPathElement::new(points, 3, 5, style).into_dyn(),
    }
}

/// Draws the markers of the `variant`-th series at `points`: circles, triangles, squares or
/// diamonds, filled for a plot's main measure and hollow for the others.
fn draw_markers<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    points: Vec<(f64, f64)>,
    variant: usize,
    filled: bool,
    color: RGBColor,
) -> Drawn<DB> {
    let style = marker_style(filled, color);
    let points = points.into_iter();
    match (variant % 4, filled) {
        (0, _) => chart.draw_series(points.map(|p| Circle::new(p, 5, style)))?,
        (1, _) => chart.draw_series(points.map(|p| TriangleMarker::new(p, 7, style)))?,
        (2, _) => chart.draw_series(points.map(|p| EmptyElement::at(p) + square(style)))?,
        (_, true) => {
            chart.draw_series(points.map(|p| EmptyElement::at(p) + Polygon::new(DIAMOND, style)))?
        }
        (_, false) => chart
            .draw_series(points.map(|p| EmptyElement::at(p) + PathElement::new(DIAMOND, style)))?,
    };
    Ok(())
}

/// The same marker in the legend, at pixel `at`.
fn draw_marker_sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    at: (i32, i32),
    variant: usize,
    filled: bool,
    color: RGBColor,
) -> Drawn<DB> {
    let style = marker_style(filled, color);
    match (variant % 4, filled) {
        (0, _) => area.draw(&Circle::new(at, 5, style)),
        (1, _) => area.draw(&TriangleMarker::new(at, 7, style)),
        (2, _) => area.draw(&(EmptyElement::at(at) + square(style))),
        (_, true) => area.draw(&(EmptyElement::at(at) + Polygon::new(DIAMOND, style))),
        (_, false) => area.draw(&(EmptyElement::at(at) + PathElement::new(DIAMOND, style))),
    }
}

/// Filled for a plot's main measure, hollow for the others.
fn marker_style(filled: bool, color: RGBColor) -> ShapeStyle {
    match filled {
        true => color.filled(),
        false => color.stroke_width(2),
    }
}

/// A square marker around its point, in pixels.
fn square(style: ShapeStyle) -> Rectangle<(i32, i32)> {
    Rectangle::new([(-5, -5), (5, 5)], style)
}

/// A diamond marker around its point, in pixels, closed.
const DIAMOND: [(i32, i32); 5] = [(0, -7), (7, 0), (0, 7), (-7, 0), (0, -7)];

fn cross<DB: DrawingBackend, C: Clone + 'static>(
    at: C,
    color: RGBColor,
) -> DynElement<'static, DB, C> {
    Cross::new(at, 7, color.stroke_width(3)).into_dyn()
}

/// The legend column: a sample of each entry's look and its label, wrapped.
fn draw_legend<DB: DrawingBackend>(
    entries: &[LegendEntry],
    area: &DrawingArea<DB, Shift>,
) -> Drawn<DB> {
    let text = TextStyle::from((FONT, 15).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let mut y = 40;
    for entry in entries {
        draw_sample(area, entry, y)?;
        for line in wrap(&entry.label, LEGEND_CHARS) {
            area.draw_text(&line, &text, (52, y))?;
            y += 20;
        }
        y += 10;
    }
    Ok(())
}

/// What an entry's series looks like, centred at height `y` of the legend column.
fn draw_sample<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    entry: &LegendEntry,
    y: i32,
) -> Drawn<DB> {
    let (left, middle, right) = (10, 27, 44);
    let color = rgb(entry.color);
    let line = vec![(left, y), (right, y)];
    match entry.look {
        Look::Band => {
            area.draw(&Rectangle::new(
                [(left, y - 7), (right, y + 7)],
                color.mix(0.18).filled(),
            ))?;
            let dash = Stroke::of_variant(entry.variant);
            area.draw(&stroke(line, dash, color.stroke_width(2)))
        }
        Look::Thin => area.draw(&stroke(line, Stroke::Solid, color.stroke_width(1))),
        Look::Marks {
            stroke: line_stroke,
            ..
        } => {
            area.draw(&stroke(line, line_stroke, color.stroke_width(2)))?;
            let filled = line_stroke == Stroke::Solid;
            draw_marker_sample(area, (middle, y), entry.variant, filled, color)
        }
        Look::Failed => area.draw(&cross((middle, y), color)),
        Look::Note => Ok(()),
    }
}

/// `text` in lines of at most `width` characters, broken at spaces where possible, and a word
/// longer than a line after its commas and opening brackets (a norm label between its options).
pub(crate) fn wrap(text: &str, width: usize) -> Vec<String> {
    let mut lines: Vec<String> = Vec::new();
    for word in text.split(' ') {
        for (k, piece) in pieces(word, width).into_iter().enumerate() {
            let glue = if k == 0 { " " } else { "" };
            match lines.last_mut() {
                Some(line)
                    if line.chars().count() + glue.len() + piece.chars().count() <= width =>
                {
                    line.push_str(glue);
                    line.push_str(&piece);
                }
                _ => lines.push(piece),
            }
        }
    }
    lines
}

/// `word` whole if it fits in `width`, else cut after each comma, opening bracket and `=`, and
/// wherever a piece would outgrow `width`.
fn pieces(word: &str, width: usize) -> Vec<String> {
    if word.chars().count() <= width {
        return vec![word.to_string()];
    }
    let mut pieces = Vec::new();
    let mut current = String::new();
    for c in word.chars() {
        current.push(c);
        if matches!(c, ',' | '(' | '=') || current.chars().count() == width {
            pieces.push(std::mem::take(&mut current));
        }
    }
    if !current.is_empty() {
        pieces.push(current);
    }
    pieces
}

/// The colour as plotters draws it.
fn rgb(color: Rgb) -> RGBColor {
    RGBColor(color.0, color.1, color.2)
}
