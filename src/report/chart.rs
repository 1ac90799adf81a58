//! Charts as data for inline SVG: scales (linear and log), readable ticks with units,
//! and the shapes a chart draws, in pixel coordinates. The HTML template turns a
//! [`Chart`] into `<svg>` (escaping every label); nothing here knows about drills.

use std::fmt::Write;

/// Colour-blind-safe palette (Okabe & Ito): blue, vermillion, orange, bluish green,
/// reddish purple, sky blue, yellow, black.
pub const PALETTE: [&str; 8] = [
    "#0072B2", "#D55E00", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#F0E442", "#000000",
];

/// Dash patterns that tell lines apart without colour.
pub const DASHES: [&str; 4] = ["", "6 3", "2 3", "8 3 2 3"];

/// Chart size and margins (px).
pub const WIDTH: f64 = 880.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 40.0;

/// A value axis: linear or log10, from a domain to pixels.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scale {
    pub log: bool,
    pub d0: f64,
    pub d1: f64,
    pub r0: f64,
    pub r1: f64,
}

impl Scale {
    pub fn linear(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
        let d1 = if d1 > d0 { d1 } else { d0 + 1.0 };
        Self {
            log: false,
            d0,
            d1,
            r0,
            r1,
        }
    }

    /// A log10 scale; the domain is widened to whole decades.
    pub fn log(d0: f64, d1: f64, r0: f64, r1: f64) -> Self {
        let lo = d0.max(1e-6).log10().floor();
        let hi = d1.max(d0.max(1e-6)).log10().ceil().max(lo + 1.0);
        Self {
            log: true,
            d0: 10f64.powf(lo),
            d1: 10f64.powf(hi),
            r0,
            r1,
        }
    }

    fn t(&self, v: f64) -> f64 {
        if self.log {
            let v = v.max(self.d0);
            (v.log10() - self.d0.log10()) / (self.d1.log10() - self.d0.log10())
        } else {
            (v - self.d0) / (self.d1 - self.d0)
        }
    }

    /// Pixel position of `v` (clamped to the range).
    pub fn px(&self, v: f64) -> f64 {
        let t = self.t(v).clamp(0.0, 1.0);
        round1(self.r0 + t * (self.r1 - self.r0))
    }

    /// Tick values: 1-2-5 steps on a linear scale (about `n` of them), decades (and 2,
    /// 5 within when there are few decades) on a log scale.
    pub fn ticks(&self, n: usize) -> Vec<f64> {
        if self.log {
            let lo = self.d0.log10().round() as i32;
            let hi = self.d1.log10().round() as i32;
            let few = hi - lo <= 2;
            let mut out = Vec::new();
            for e in lo..=hi {
                let b = 10f64.powi(e);
                out.push(b);
                if few && e < hi {
                    out.push(2.0 * b);
                    out.push(5.0 * b);
                }
            }
            return out;
        }
        let step = nice_step((self.d1 - self.d0) / n.max(1) as f64);
        let first = (self.d0 / step).ceil() as i64;
        let last = (self.d1 / step + 1e-9).floor() as i64;
        (first..=last)
            .map(|k| (k as f64 * step * 1e9).round() / 1e9)
            .collect()
    }
}

/// The 1-2-5 step nearest `raw`.
pub fn nice_step(raw: f64) -> f64 {
    if !(raw.is_finite() && raw > 0.0) {
        return 1.0;
    }
    let p = 10f64.powf(raw.log10().floor());
    let m = raw / p;
    // The nearest of 1, 2, 5, 10 on a log scale.
    let k = if m < 2f64.sqrt() {
        1.0
    } else if m < 10f64.sqrt() {
        2.0
    } else if m < 50f64.sqrt() {
        5.0
    } else {
        10.0
    };
    k * p
}

fn round1(v: f64) -> f64 {
    (v * 10.0).round() / 10.0
}

/// A number as a tick label: no trailing zeros, thousands as `k`.
pub fn number(v: f64) -> String {
    if v.abs() >= 10_000.0 {
        return format!("{}k", trim(v / 1000.0));
    }
    trim(v)
}

fn trim(v: f64) -> String {
    let s = format!("{:.3}", v);
    let s = s.trim_end_matches('0').trim_end_matches('.');
    if s == "-0" { "0".into() } else { s.into() }
}

/// Milliseconds as a tick label (`500 ms`, `2 s`).
pub fn millis(v: f64) -> String {
    if v >= 1000.0 {
        format!("{} s", number(v / 1000.0))
    } else {
        format!("{} ms", number(v))
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tick {
    pub pos: f64,
    pub label: String,
}

/// A shaded stretch of the x axis (a fault window).
#[derive(Debug, Clone, PartialEq)]
pub struct Band {
    pub x: f64,
    pub w: f64,
    pub label: String,
}

/// A line (or the outline of a filled area) with its legend entry.
#[derive(Debug, Clone, PartialEq)]
pub struct Line {
    /// `x,y x,y …` per unbroken segment (a missing value breaks the line).
    pub segments: Vec<String>,
    pub colour: &'static str,
    pub dash: &'static str,
    pub width: f64,
    pub label: String,
    /// A closed, filled polygon (stacked areas) instead of a line.
    pub fill: bool,
}

/// A labelled box (the timeline's phases and faults).
#[derive(Debug, Clone, PartialEq)]
pub struct Block {
    pub x: f64,
    pub y: f64,
    pub w: f64,
    pub h: f64,
    pub colour: &'static str,
    pub label: String,
    /// Shown as the box's tooltip (`<title>`).
    pub title: String,
    pub hatched: bool,
}

/// One chart, in pixels.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    pub id: String,
    pub title: String,
    /// One sentence saying what the chart shows (also the SVG's `<desc>`).
    pub caption: String,
    pub width: f64,
    pub height: f64,
    pub x0: f64,
    pub x1: f64,
    pub y0: f64,
    pub y1: f64,
    pub x_ticks: Vec<Tick>,
    pub y_ticks: Vec<Tick>,
    pub x_label: String,
    pub y_label: String,
    pub bands: Vec<Band>,
    pub lines: Vec<Line>,
    pub blocks: Vec<Block>,
    /// Data points drawn (lines' vertices and blocks): 0 means an empty chart.
    pub points: usize,
}

impl Chart {
    /// An empty chart with its plot area for a `height` px SVG.
    pub fn new(id: &str, title: &str, caption: &str, height: f64) -> Self {
        Self {
            id: id.into(),
            title: title.into(),
            caption: caption.into(),
            width: WIDTH,
            height,
            x0: LEFT,
            x1: WIDTH - RIGHT,
            y0: height - BOTTOM,
            y1: TOP,
            x_ticks: Vec::new(),
            y_ticks: Vec::new(),
            x_label: String::new(),
            y_label: String::new(),
            bands: Vec::new(),
            lines: Vec::new(),
            blocks: Vec::new(),
            points: 0,
        }
    }

    /// The x scale over `[d0, d1]` (linear or log).
    pub fn x_scale(&self, d0: f64, d1: f64, log: bool) -> Scale {
        if log {
            Scale::log(d0, d1, self.x0, self.x1)
        } else {
            Scale::linear(d0, d1, self.x0, self.x1)
        }
    }

    /// The y scale over `[d0, d1]` (pixels grow downwards).
    pub fn y_scale(&self, d0: f64, d1: f64, log: bool) -> Scale {
        if log {
            Scale::log(d0, d1, self.y0, self.y1)
        } else {
            Scale::linear(d0, d1, self.y0, self.y1)
        }
    }

    pub fn set_x_ticks(&mut self, s: &Scale, ticks: &[f64], label: impl Fn(f64) -> String) {
        self.x_ticks = ticks
            .iter()
            .map(|&v| Tick {
                pos: s.px(v),
                label: label(v),
            })
            .collect();
    }

    pub fn set_y_ticks(&mut self, s: &Scale, ticks: &[f64], label: impl Fn(f64) -> String) {
        self.y_ticks = ticks
            .iter()
            .map(|&v| Tick {
                pos: s.px(v),
                label: label(v),
            })
            .collect();
    }

    /// A log y axis in milliseconds over the positive `values` (1 ms–1 s without any),
    /// with its ticks and label.
    pub fn latency_axis(&mut self, values: impl IntoIterator<Item = f64>) -> Scale {
        let (lo, hi) = values
            .into_iter()
            .filter(|v| *v > 0.0 && v.is_finite())
            .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
        let ys = self.y_scale(if lo == f64::MAX { 1.0 } else { lo }, hi.max(1.0), true);
        let ticks = ys.ticks(5);
        self.set_y_ticks(&ys, &ticks, millis);
        self.y_label = "latency".into();
        ys
    }

    /// A linear y axis from 0 to a little above `hi`, for counts per second.
    pub fn count_axis(&mut self, hi: f64, label: &str) -> Scale {
        let ys = self.y_scale(0.0, hi * 1.1, false);
        let ticks = ys.ticks(4);
        self.set_y_ticks(&ys, &ticks, number);
        self.y_label = label.into();
        ys
    }

    /// Adds a line through `(x, y)` points; `None` breaks it.
    pub fn line(
        &mut self,
        (xs, ys): (&Scale, &Scale),
        points: impl IntoIterator<Item = (f64, Option<f64>)>,
        style: (&'static str, &'static str, f64),
        label: &str,
    ) {
        let mut segments = Vec::new();
        let mut cur = String::new();
        for (x, y) in points {
            match y.filter(|v| v.is_finite()) {
                Some(y) => {
                    if !cur.is_empty() {
                        cur.push(' ');
                    }
                    let _ = write!(cur, "{},{}", xs.px(x), ys.px(y));
                    self.points += 1;
                }
                None if !cur.is_empty() => segments.push(std::mem::take(&mut cur)),
                None => {}
            }
        }
        if !cur.is_empty() {
            segments.push(cur);
        }
        let (colour, dash, width) = style;
        self.lines.push(Line {
            segments,
            colour,
            dash,
            width,
            label: label.into(),
            fill: false,
        });
    }

    /// Adds a filled area between `lower` and `upper` (same xs), for stacking.
    pub fn area(
        &mut self,
        (xs, ys): (&Scale, &Scale),
        points: &[(f64, f64, f64)],
        colour: &'static str,
        label: &str,
    ) {
        if points.is_empty() {
            return;
        }
        let mut s = String::new();
        for (x, _, hi) in points {
            let _ = write!(s, "{},{} ", xs.px(*x), ys.px(*hi));
        }
        for (x, lo, _) in points.iter().rev() {
            let _ = write!(s, "{},{} ", xs.px(*x), ys.px(*lo));
        }
        self.points += points.len();
        self.lines.push(Line {
            segments: vec![s.trim_end().to_string()],
            colour,
            dash: "",
            width: 0.0,
            label: label.into(),
            fill: true,
        });
    }

    /// Shades `[from, to]` on the x axis.
    pub fn band(&mut self, xs: &Scale, from: f64, to: f64, label: &str) {
        let x = xs.px(from);
        let w = (xs.px(to) - x).max(1.0);
        self.bands.push(Band {
            x,
            w: round1(w),
            label: label.into(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linear_ticks_are_1_2_5_steps_inside_the_domain() {
        let s = Scale::linear(0.0, 37.0, 0.0, 100.0);
        assert_eq!(s.ticks(5), vec![0.0, 10.0, 20.0, 30.0]);
        let s = Scale::linear(0.0, 0.9, 0.0, 100.0);
        assert_eq!(s.ticks(4), vec![0.0, 0.2, 0.4, 0.6, 0.8]);
        assert_eq!(nice_step(0.0), 1.0);
        assert_eq!(nice_step(f64::NAN), 1.0);
        assert_eq!(nice_step(3.0), 2.0);
        assert_eq!(nice_step(4.0), 5.0);
        assert_eq!(nice_step(120.0), 100.0);
    }

    #[test]
    fn log_scales_cover_whole_decades_and_map_them_evenly() {
        let s = Scale::log(3.0, 1200.0, 0.0, 300.0);
        assert_eq!((s.d0, s.d1), (1.0, 10_000.0));
        assert_eq!(s.ticks(5), vec![1.0, 10.0, 100.0, 1000.0, 10_000.0]);
        assert_eq!(s.px(1.0), 0.0);
        assert_eq!(s.px(100.0), 150.0);
        // Below the domain (or 0 on a log axis) clamps to the edge, never NaN.
        assert_eq!(s.px(0.0), 0.0);
        let few = Scale::log(2.0, 50.0, 0.0, 100.0);
        assert_eq!(few.ticks(5), vec![1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0]);
    }

    #[test]
    fn a_missing_value_breaks_the_line_and_only_drawn_points_count() {
        let mut c = Chart::new("t", "t", "t", 200.0);
        let xs = c.x_scale(0.0, 3.0, false);
        let ys = c.y_scale(0.0, 10.0, false);
        c.line(
            (&xs, &ys),
            [
                (0.0, Some(1.0)),
                (1.0, None),
                (2.0, Some(2.0)),
                (3.0, Some(f64::NAN)),
            ],
            (PALETTE[0], "", 1.5),
            "p50",
        );
        assert_eq!(c.lines[0].segments.len(), 2);
        assert_eq!(c.points, 2);
    }

    #[test]
    fn tick_labels_have_units_and_no_trailing_zeros() {
        assert_eq!(millis(250.0), "250 ms");
        assert_eq!(millis(1500.0), "1.5 s");
        assert_eq!(number(20_000.0), "20k");
        assert_eq!(number(0.25), "0.25");
        assert_eq!(number(-0.0), "0");
    }
}
