//! The SVG plots of latency: HdrHistogram's percentile plot of distributions (latency
//! against percentile, the percentile axis stretched as `1/(1−q)` so the tail is
//! visible, both axes logarithmic; [`svg`], [`distributions`]) and a timeline (latency
//! against time, with marked instants and a panel of counts per time bin; [`timeline`]),
//! used by `rtpm latency` and `rtpm demo`.
//!
//! Written by hand rather than with `plotters`: a few polylines, grid lines and labels
//! are ~150 lines of plain text, while plotters (even SVG-only) would add a dependency
//! tree for one figure, and the hand-written file stays small and diffable.

use std::fmt::Write as _;

use hdrhistogram::Histogram;

/// One distribution to draw.
pub struct Series<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Stroke colour.
    pub colour: &'a str,
    /// The latencies, in nanoseconds.
    pub hist: &'a Histogram<u64>,
}

const W: f64 = 820.0;
const H: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;
/// The x axis ends at 99.999 %.
const X_DECADES: f64 = 5.0;

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Draws `series` (in µs on the y axis) with `title`; the y axis is the wake-up latency.
pub fn svg(title: &str, series: &[Series<'_>]) -> String {
    distributions(title, "wake-up latency", series)
}

/// Draws `series` (in µs on the y axis, labelled `y_label`) with `title`.
pub fn distributions(title: &str, y_label: &str, series: &[Series<'_>]) -> String {
    let pw = W - LEFT - RIGHT;
    let ph = H - TOP - BOTTOM;
    // y range: decades of microseconds covering every series.
    let lo_us = series
        .iter()
        .filter(|s| !s.hist.is_empty())
        .map(|s| (s.hist.min().max(1) as f64 / 1000.0).max(0.1))
        .fold(f64::INFINITY, f64::min);
    let hi_us = series
        .iter()
        .filter(|s| !s.hist.is_empty())
        .map(|s| s.hist.max() as f64 / 1000.0)
        .fold(0.0, f64::max);
    let (y0, y1) = if lo_us.is_finite() && hi_us > 0.0 {
        (
            lo_us.log10().floor(),
            hi_us.log10().ceil().max(lo_us.log10().floor() + 1.0),
        )
    } else {
        (0.0, 3.0)
    };
    let x_of = |q: f64| {
        let t = (1.0 / (1.0 - q.min(0.999_999_9))).log10().min(X_DECADES);
        LEFT + pw * t / X_DECADES
    };
    let y_of = |us: f64| TOP + ph * (1.0 - (us.max(1e-3).log10() - y0) / (y1 - y0));
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(out, r#"<rect width="{W}" height="{H}" fill="white"/>"#);
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        W / 2.0,
        esc(title)
    );
    // Grid: percentiles on x, decades on y.
    for (d, label) in [
        (0.0, "0%"),
        (1.0, "90%"),
        (2.0, "99%"),
        (3.0, "99.9%"),
        (4.0, "99.99%"),
        (5.0, "99.999%"),
    ] {
        let x = LEFT + pw * d / X_DECADES;
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#ddd"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{label}</text>"##,
            TOP + ph,
            TOP + ph + 18.0
        );
    }
    let mut e = y0;
    while e <= y1 + 1e-9 {
        for m in [1.0, 2.0, 5.0] {
            let us = m * 10f64.powf(e);
            if us.log10() > y1 + 1e-9 {
                continue;
            }
            let y = y_of(us);
            let stroke = if m == 1.0 { "#bbb" } else { "#eee" };
            let _ = writeln!(
                out,
                r#"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{stroke}"/>"#,
                LEFT + pw
            );
            let label = if us >= 1000.0 {
                format!("{} ms", us / 1000.0)
            } else {
                format!("{us} µs")
            };
            let _ = writeln!(
                out,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
                LEFT - 6.0,
                y + 4.0
            );
        }
        e += 1.0;
    }
    let _ = writeln!(
        out,
        r#"<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="black"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">percentile</text>"#,
        LEFT + pw / 2.0,
        H - 15.0
    );
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
        TOP + ph / 2.0,
        esc(y_label)
    );
    for (i, s) in series.iter().enumerate() {
        if s.hist.is_empty() {
            continue;
        }
        let mut points = String::new();
        for v in s.hist.iter_quantiles(8) {
            let q = v.quantile_iterated_to();
            let us = v.value_iterated_to() as f64 / 1000.0;
            let _ = write!(points, "{:.1},{:.1} ", x_of(q), y_of(us));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="2" points="{}"/>"#,
            s.colour,
            points.trim_end()
        );
        let ly = TOP + 18.0 + 18.0 * i as f64;
        let p99 = s.hist.value_at_quantile(0.99) as f64 / 1000.0;
        let p999 = s.hist.value_at_quantile(0.999) as f64 / 1000.0;
        let _ = writeln!(
            out,
            r#"<line x1="{:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{}" stroke-width="3"/><text x="{:.1}" y="{:.1}">{} (p99 {p99:.1} µs, p99.9 {p999:.1} µs)</text>"#,
            LEFT + 12.0,
            LEFT + 36.0,
            s.colour,
            LEFT + 42.0,
            ly + 4.0,
            esc(s.label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// One track of a timeline: points (seconds, µs), drawn as a line or as dots.
pub struct Track<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Colour.
    pub colour: &'a str,
    /// (time in s, latency in µs), in time order.
    pub points: &'a [(f64, f64)],
    /// Dots instead of a line (sparse events such as RPC round trips).
    pub dots: bool,
}

/// An instant marked on a timeline (a vertical line across both panels).
pub struct Mark<'a> {
    /// Text beside the line.
    pub label: &'a str,
    /// Colour.
    pub colour: &'a str,
    /// When, in s.
    pub at: f64,
}

/// Counts per time bin, drawn as steps in the timeline's lower panel.
pub struct Counts<'a> {
    /// Legend text.
    pub label: &'a str,
    /// Colour.
    pub colour: &'a str,
    /// The first bin's start, in s.
    pub start: f64,
    /// Bin width, in s (> 0).
    pub bin: f64,
    /// The count in each bin.
    pub counts: &'a [u64],
}

const TL_W: f64 = 1040.0;
/// Room for the legend right of the panels.
const TL_LEGEND: f64 = 230.0;
const TL_H: f64 = 640.0;
/// The upper (latency) panel's height.
const TL_TOP_H: f64 = 330.0;
/// The gap between the panels.
const TL_GAP: f64 = 50.0;

/// A timeline over `x_range` seconds: `tracks` on a logarithmic latency axis (µs) in the
/// upper panel, `counts` on a linear axis in the lower one, `marks` across both.
pub fn timeline(
    title: &str,
    x_range: (f64, f64),
    tracks: &[Track<'_>],
    marks: &[Mark<'_>],
    counts: &[Counts<'_>],
) -> String {
    let (x0, x1) = if x_range.1 > x_range.0 {
        x_range
    } else {
        (x_range.0, x_range.0 + 1.0)
    };
    let pw = TL_W - LEFT - RIGHT - TL_LEGEND;
    let top = TOP + 20.0;
    let low_top = top + TL_TOP_H + TL_GAP;
    let low_h = TL_H - low_top - BOTTOM;
    let x_of = |t: f64| LEFT + pw * ((t - x0) / (x1 - x0)).clamp(0.0, 1.0);
    let visible = |t: f64| t >= x0 && t <= x1;
    // upper y range: decades of µs covering every visible point
    let (lo, hi) = tracks
        .iter()
        .flat_map(|t| t.points.iter())
        .filter(|p| visible(p.0) && p.1 > 0.0)
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), p| {
            (lo.min(p.1), hi.max(p.1))
        });
    let (y0, y1) = if lo.is_finite() && hi > 0.0 {
        let a = lo.max(0.1).log10().floor();
        (a, hi.log10().ceil().max(a + 1.0))
    } else {
        (0.0, 3.0)
    };
    let y_of = |us: f64| top + TL_TOP_H * (1.0 - (us.max(1e-3).log10() - y0) / (y1 - y0));
    let c_max = counts
        .iter()
        .flat_map(|c| c.counts.iter())
        .copied()
        .max()
        .unwrap_or(0)
        .max(1) as f64;
    let c_of = |n: f64| low_top + low_h * (1.0 - n / c_max);
    let mut out = String::new();
    let _ = writeln!(
        out,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{TL_W}" height="{TL_H}" viewBox="0 0 {TL_W} {TL_H}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(
        out,
        r#"<rect width="{TL_W}" height="{TL_H}" fill="white"/>"#
    );
    let _ = writeln!(
        out,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="15">{}</text>"#,
        TL_W / 2.0,
        esc(title)
    );
    // x grid: about ten steps of 1, 2 or 5 s (or tenths)
    let span = x1 - x0;
    let step = [0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 20.0, 60.0]
        .into_iter()
        .find(|s| span / s <= 12.0)
        .unwrap_or(120.0);
    let mut t = (x0 / step).ceil() * step;
    while t <= x1 + 1e-9 {
        let x = x_of(t);
        let _ = writeln!(
            out,
            r##"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><line x1="{x:.1}" y1="{low_top:.1}" x2="{x:.1}" y2="{:.1}" stroke="#eee"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
            top + TL_TOP_H,
            low_top + low_h,
            low_top + low_h + 18.0,
            trim_float(t)
        );
        t += step;
    }
    let mut e = y0;
    while e <= y1 + 1e-9 {
        let us = 10f64.powf(e);
        let y = y_of(us);
        let label = if us >= 1000.0 {
            format!("{} ms", trim_float(us / 1000.0))
        } else {
            format!("{} µs", trim_float(us))
        };
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0
        );
        e += 1.0;
    }
    for frac in [0.0, 0.5, 1.0] {
        let n = c_max * frac;
        let y = c_of(n);
        let _ = writeln!(
            out,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#ccc"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + pw,
            LEFT - 6.0,
            y + 4.0,
            trim_float(n)
        );
    }
    for (y, h) in [(top, TL_TOP_H), (low_top, low_h)] {
        let _ = writeln!(
            out,
            r#"<rect x="{LEFT}" y="{y:.1}" width="{pw:.1}" height="{h:.1}" fill="none" stroke="black"/>"#
        );
    }
    let _ = writeln!(
        out,
        r#"<text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">latency</text><text transform="translate(18 {:.1}) rotate(-90)" text-anchor="middle">per bin</text><text x="{:.1}" y="{:.1}" text-anchor="middle">time (s)</text>"#,
        top + TL_TOP_H / 2.0,
        low_top + low_h / 2.0,
        LEFT + pw / 2.0,
        TL_H - 15.0
    );
    for tr in tracks {
        let pts: Vec<&(f64, f64)> = tr.points.iter().filter(|p| visible(p.0)).collect();
        if tr.dots {
            for p in pts {
                let _ = writeln!(
                    out,
                    r#"<circle cx="{:.1}" cy="{:.1}" r="2" fill="{}"/>"#,
                    x_of(p.0),
                    y_of(p.1),
                    tr.colour
                );
            }
        } else if !pts.is_empty() {
            let mut line = String::new();
            for p in pts {
                let _ = write!(line, "{:.1},{:.1} ", x_of(p.0), y_of(p.1));
            }
            let _ = writeln!(
                out,
                r#"<polyline fill="none" stroke="{}" stroke-width="1.2" points="{}"/>"#,
                tr.colour,
                line.trim_end()
            );
        }
    }
    for c in counts {
        if c.bin <= 0.0 || c.counts.is_empty() {
            continue;
        }
        let mut line = String::new();
        for (i, n) in c.counts.iter().enumerate() {
            let a = c.start + c.bin * i as f64;
            if a + c.bin < x0 || a > x1 {
                continue;
            }
            let y = c_of(*n as f64);
            let _ = write!(line, "{:.1},{y:.1} {:.1},{y:.1} ", x_of(a), x_of(a + c.bin));
        }
        let _ = writeln!(
            out,
            r#"<polyline fill="none" stroke="{}" stroke-width="1.5" points="{}"/>"#,
            c.colour,
            line.trim_end()
        );
    }
    for (i, m) in marks.iter().enumerate() {
        if !visible(m.at) {
            continue;
        }
        let x = x_of(m.at);
        let _ = writeln!(
            out,
            r#"<line x1="{x:.1}" y1="{top:.1}" x2="{x:.1}" y2="{:.1}" stroke="{}" stroke-width="1.5" stroke-dasharray="5 3"/><text x="{:.1}" y="{:.1}" fill="{}">{}</text>"#,
            low_top + low_h,
            m.colour,
            x + 4.0,
            top + 14.0 + 14.0 * i as f64,
            m.colour,
            esc(m.label)
        );
    }
    // legend, right of the panels
    let lx = LEFT + pw + 12.0;
    let legend = tracks
        .iter()
        .map(|t| (t.label, t.colour))
        .chain(counts.iter().map(|c| (c.label, c.colour)));
    for (i, (label, colour)) in legend.enumerate() {
        let ly = top + 10.0 + 18.0 * i as f64;
        let _ = writeln!(
            out,
            r#"<line x1="{lx:.1}" y1="{ly:.1}" x2="{:.1}" y2="{ly:.1}" stroke="{colour}" stroke-width="3"/><text x="{:.1}" y="{:.1}" font-size="11">{}</text>"#,
            lx + 16.0,
            lx + 20.0,
            ly + 4.0,
            esc(label)
        );
    }
    out.push_str("</svg>\n");
    out
}

/// `2`, `0.5`, `-1.5`: no trailing zeros.
fn trim_float(v: f64) -> String {
    let s = format!("{v:.1}");
    s.strip_suffix(".0").map_or(s.clone(), str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_each_series_with_its_legend() {
        let mut a = Histogram::<u64>::new_with_bounds(1, 1 << 36, 2).unwrap();
        let mut b = a.clone();
        for v in 1..2000u64 {
            a.record(20_000 + v * 10).unwrap();
            b.record(25_000 + v * 10).unwrap();
        }
        let text = svg(
            "t <1>",
            &[
                Series {
                    label: "executor",
                    colour: "#d62728",
                    hist: &a,
                },
                Series {
                    label: "baseline",
                    colour: "#1f77b4",
                    hist: &b,
                },
            ],
        );
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        assert_eq!(text.matches("<polyline").count(), 2);
        assert!(text.contains("executor (p99"));
        assert!(text.contains("t &lt;1&gt;"));
        assert!(text.contains("99.9%"));
        assert!(text.contains("wake-up latency"));
    }

    #[test]
    fn timeline_draws_tracks_marks_and_counts_inside_its_range() {
        let pts = [(-1.0, 50.0), (0.5, 800.0), (9.0, 40.0)];
        let text = timeline(
            "around the kill",
            (-2.0, 5.0),
            &[Track {
                label: "vehicle 1",
                colour: "#1f77b4",
                points: &pts,
                dots: false,
            }],
            &[
                Mark {
                    label: "kill",
                    colour: "#d62728",
                    at: 0.0,
                },
                Mark {
                    label: "outside",
                    colour: "#000",
                    at: 7.0,
                },
            ],
            &[Counts {
                label: "samples",
                colour: "#2ca02c",
                start: -2.0,
                bin: 1.0,
                counts: &[10, 12, 3, 11],
            }],
        );
        assert!(text.starts_with("<svg"));
        assert!(text.trim_end().ends_with("</svg>"));
        // the point at 9 s is outside the range: two points on the line
        let line = text
            .lines()
            .find(|l| l.contains("<polyline") && l.contains("#1f77b4"))
            .unwrap();
        assert_eq!(line.matches(',').count(), 2);
        assert!(text.contains(">kill<"));
        assert!(!text.contains(">outside<"));
        assert!(text.contains(">samples<"));
        // the latency axis covers 40 µs .. 800 µs in whole decades
        assert!(text.contains(">10 µs<") && text.contains(">1 ms<"));
    }
}
