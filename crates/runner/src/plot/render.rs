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

use crate::error::RunnerError;
use crate::plot::axis::Axis;
use crate::plot::figure::{Figure, LegendEntry, Look, Panel, Rgb, Series, Stroke};

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
    let mut chart = ChartBuilder::on(&body)
        .margin(12)
        .x_label_area_size(52)
        .y_label_area_size(30 + 9 * longest_tick as u32)
        .build_cartesian_2d(panel.x.clone(), panel.y.clone())?;
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
    for series in &panel.series {
        draw_series(&mut chart, panel, series)?;
    }
    Ok(())
}

fn draw_series<DB: DrawingBackend>(
    chart: &mut ChartContext<DB, Cartesian2d<Axis, Axis>>,
    panel: &Panel,
    series: &Series,
) -> Drawn<DB> {
    let shift = series.dodge * (panel.x.range.end - panel.x.range.start);
    let at = |x: f64, y: f64| (panel.x.at(x) + shift, panel.y.at(y));
    let line: Vec<(f64, f64)> = series.points.iter().map(|p| at(p.x, p.y)).collect();
    let color = rgb(series.color);
    match series.look {
        Look::Band => {
            let mut outline: Vec<(f64, f64)> =
                series.points.iter().map(|p| at(p.x, p.high)).collect();
            outline.extend(series.points.iter().rev().map(|p| at(p.x, p.low)));
            chart.draw_series([Polygon::new(outline, color.mix(0.18).filled())])?;
            chart.draw_series([stroke(line, Stroke::Solid, color.stroke_width(2))])?;
        }
        Look::Thin => {
            chart.draw_series([stroke(line, Stroke::Solid, color.stroke_width(1))])?;
        }
        Look::Marks {
            stroke: line_stroke,
            joined,
        } => {
            if joined {
                chart.draw_series([stroke(line.clone(), line_stroke, color.stroke_width(2))])?;
            }
            let bars = series.points.iter().filter(|p| p.high > p.low);
            chart.draw_series(bars.clone().map(|p| {
                PathElement::new(vec![at(p.x, p.low), at(p.x, p.high)], color.stroke_width(2))
            }))?;
            let ends = bars.flat_map(|p| [at(p.x, p.low), at(p.x, p.high)]);
            chart.draw_series(ends.map(|end| {
                EmptyElement::at(end)
                    + PathElement::new(vec![(-6, 0), (6, 0)], color.stroke_width(2))
            }))?;
            match line_stroke {
                Stroke::Dotted => {
                    let square = |p| EmptyElement::at(p) + Rectangle::new(SQUARE, color.filled());
                    chart.draw_series(line.into_iter().map(square))?;
                }
                _ => {
                    chart.draw_series(line.into_iter().map(|p| marker(p, line_stroke, color)))?;
                }
            }
        }
        Look::Failed => {
            let span = panel.y.range.end - panel.y.range.start;
            let top = panel.y.range.end - 0.05 * span;
            let crosses = series.points.iter().map(|p| (panel.x.at(p.x) + shift, top));
            chart.draw_series(crosses.map(|point| cross(point, color)))?;
        }
    }
    Ok(())
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

/// A filled circle for the main measure of a norm, a triangle for the dashed one (the dotted
/// one has [`SQUARE`]s).
fn marker<DB: DrawingBackend, C: Clone + 'static>(
    at: C,
    stroke: Stroke,
    color: RGBColor,
) -> DynElement<'static, DB, C> {
    match stroke {
        Stroke::Dashed => TriangleMarker::new(at, 7, color.filled()).into_dyn(),
        _ => Circle::new(at, 5, color.filled()).into_dyn(),
    }
}

/// The square marker of a dotted measure, in pixels around its point.
const SQUARE: [(i32, i32); 2] = [(-5, -5), (5, 5)];

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
            area.draw(&stroke(line, Stroke::Solid, color.stroke_width(2)))
        }
        Look::Thin => area.draw(&stroke(line, Stroke::Solid, color.stroke_width(1))),
        Look::Marks {
            stroke: line_stroke,
            ..
        } => {
            area.draw(&stroke(line, line_stroke, color.stroke_width(2)))?;
            match line_stroke {
                Stroke::Dotted => area.draw(
                    &(EmptyElement::at((middle, y)) + Rectangle::new(SQUARE, color.filled())),
                ),
                _ => area.draw(&marker((middle, y), line_stroke, color)),
            }
        }
        Look::Failed => area.draw(&cross((middle, y), color)),
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
