//! Charts as inline SVG, drawn on the server: stacked bars (feedback per day), lines over days
//! (agreement), points per version (holdout scores) and a heat map (label confusion). Each
//! chart is a `viewBox` that scales to its column, so it fits a phone as well as a desktop.
//! Text is escaped like any HTML; colours come from the stylesheet through classes where a
//! series is fixed, and from a small palette otherwise.

use std::fmt::Write as _;

use super::pages::esc;

/// Series colours, in order (colour-blind safe, after Okabe and Ito).
pub const PALETTE: [&str; 6] = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00"];

const W: f64 = 640.0;
const H: f64 = 220.0;
const LEFT: f64 = 44.0;
const BOTTOM: f64 = 28.0;
const TOP: f64 = 12.0;

fn open(label: &str, height: f64) -> String {
    format!("<svg class=\"chart\" viewBox=\"0 0 {W} {height}\" role=\"img\" aria-label=\"{}\" xmlns=\"http://www.w3.org/2000/svg\">", esc(label))
}

/// A y axis from 0 to `max` with three grid lines, labelled with `fmt`.
fn y_axis(svg: &mut String, max: f64, fmt: impl Fn(f64) -> String) {
    for i in 0..=2 {
        let v = max * f64::from(i) / 2.0;
        let y = TOP + (H - TOP - BOTTOM) * (1.0 - v / max);
        let _ = write!(
            svg,
            "<line x1=\"{LEFT}\" x2=\"{W}\" y1=\"{y:.1}\" y2=\"{y:.1}\" class=\"grid\"/><text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            LEFT - 4.0,
            y + 4.0,
            esc(&fmt(v))
        );
    }
}

/// The x labels: the first, the middle and the last of `labels`, at the centres of slots.
fn x_labels(svg: &mut String, labels: &[String]) {
    let n = labels.len();
    if n == 0 {
        return;
    }
    let slot = (W - LEFT) / n as f64;
    let mut shown = vec![0, n / 2, n - 1];
    shown.dedup();
    for i in shown {
        let x = LEFT + slot * (i as f64 + 0.5);
        // The outer labels hang inwards, so they stay inside the chart at its edges.
        let anchor = match i {
            0 if n > 1 => "start",
            i if i + 1 == n && n > 1 => "end",
            _ => "middle",
        };
        let x = match anchor {
            "start" => x - slot / 2.0,
            "end" => x + slot / 2.0,
            _ => x,
        };
        let _ = write!(svg, "<text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"{anchor}\">{}</text>", H - 8.0, esc(&labels[i]));
    }
}

/// A legend line for `series` with the palette's colours.
pub fn legend(series: &[String]) -> String {
    let mut html = String::from("<ul class=\"legend\">");
    for (i, s) in series.iter().enumerate() {
        let _ = write!(
            html,
            "<li><svg viewBox=\"0 0 10 10\" width=\"10\" height=\"10\" aria-hidden=\"true\"><rect width=\"10\" height=\"10\" fill=\"{}\"/></svg> {}</li>",
            PALETTE[i % PALETTE.len()],
            esc(s)
        );
    }
    html.push_str("</ul>");
    html
}

/// Stacked bars: one bar per slot (`labels`), `values[slot][series]` stacked in series order.
pub fn stacked_bars(title: &str, labels: &[String], values: &[Vec<u64>]) -> String {
    let mut svg = open(title, H);
    let max = values.iter().map(|v| v.iter().sum::<u64>()).max().unwrap_or(0).max(1) as f64;
    y_axis(&mut svg, max, |v| format!("{v:.0}"));
    let slot = (W - LEFT) / labels.len().max(1) as f64;
    let scale = (H - TOP - BOTTOM) / max;
    for (i, stack) in values.iter().enumerate() {
        let mut base = H - BOTTOM;
        for (s, v) in stack.iter().enumerate().filter(|(_, v)| **v > 0) {
            let h = *v as f64 * scale;
            base -= h;
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{base:.1}\" width=\"{:.1}\" height=\"{h:.1}\" fill=\"{}\"><title>{}: {v}</title></rect>",
                LEFT + slot * i as f64 + slot * 0.1,
                slot * 0.8,
                PALETTE[s % PALETTE.len()],
                esc(labels.get(i).map_or("", String::as_str))
            );
        }
    }
    x_labels(&mut svg, labels);
    svg.push_str("</svg>");
    svg
}

/// Lines of shares (0 to 1) over slots; a missing value (`None`) breaks the line.
pub fn share_lines(title: &str, labels: &[String], series: &[Vec<Option<f64>>]) -> String {
    let mut svg = open(title, H);
    y_axis(&mut svg, 1.0, |v| format!("{:.0}%", v * 100.0));
    let slot = (W - LEFT) / labels.len().max(1) as f64;
    for (s, values) in series.iter().enumerate() {
        let colour = PALETTE[s % PALETTE.len()];
        let mut path = String::new();
        let mut pen_down = false;
        for (i, v) in values.iter().enumerate() {
            let Some(v) = v else {
                pen_down = false;
                continue;
            };
            let x = LEFT + slot * (i as f64 + 0.5);
            let y = TOP + (H - TOP - BOTTOM) * (1.0 - v.clamp(0.0, 1.0));
            let _ = write!(path, "{}{x:.1},{y:.1} ", if pen_down { "L" } else { "M" });
            pen_down = true;
            let _ = write!(svg, "<circle cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"3\" fill=\"{colour}\"><title>{}: {:.0}%</title></circle>", esc(&labels[i]), v * 100.0);
        }
        if !path.is_empty() {
            let _ = write!(svg, "<path d=\"{}\" fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\"/>", path.trim_end());
        }
    }
    x_labels(&mut svg, labels);
    svg.push_str("</svg>");
    svg
}

/// One version of a program on the holdout chart.
pub struct VersionPoint {
    /// Its short name.
    pub label: String,
    /// The score of the version it was compared with.
    pub current: Option<f64>,
    /// Its own score.
    pub candidate: Option<f64>,
    /// Whether it was promoted.
    pub promoted: bool,
}

/// Holdout scores per version: the candidate's as a dot (filled when promoted, hollow when
/// rejected), joined to the score of the version it was compared with.
pub fn versions(title: &str, points: &[VersionPoint]) -> String {
    let mut svg = open(title, H);
    y_axis(&mut svg, 1.0, |v| format!("{v:.1}"));
    let slot = (W - LEFT) / points.len().max(1) as f64;
    let y = |v: f64| TOP + (H - TOP - BOTTOM) * (1.0 - v.clamp(0.0, 1.0));
    for (i, p) in points.iter().enumerate() {
        let x = LEFT + slot * (i as f64 + 0.5);
        if let (Some(c), Some(d)) = (p.current, p.candidate) {
            let _ = write!(svg, "<line x1=\"{x:.1}\" x2=\"{x:.1}\" y1=\"{:.1}\" y2=\"{:.1}\" class=\"link\"/>", y(c), y(d));
        }
        if let Some(c) = p.current {
            let _ = write!(
                svg,
                "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"12\" height=\"2\" class=\"baseline\"><title>compared with: {c:.3}</title></rect>",
                x - 6.0,
                y(c) - 1.0
            );
        }
        if let Some(d) = p.candidate {
            let (class, what) = if p.promoted { ("promoted", "promoted") } else { ("rejected", "rejected") };
            let _ = write!(svg, "<circle cx=\"{x:.1}\" cy=\"{:.1}\" r=\"5\" class=\"{class}\"><title>{}: {d:.3}, {what}</title></circle>", y(d), esc(&p.label));
        }
    }
    x_labels(&mut svg, &points.iter().map(|p| p.label.clone()).collect::<Vec<_>>());
    svg.push_str("</svg>");
    svg
}

/// A confusion heat map: rows are what the program answered, columns what reviewers said.
pub fn confusion(title: &str, labels: &[String], counts: &[Vec<u64>]) -> String {
    let n = labels.len().max(1);
    let cell = ((W - 120.0) / n as f64).min(56.0);
    let height = 40.0 + cell * n as f64 + 8.0;
    let mut svg = open(title, height);
    let max = counts.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    let x0 = 120.0;
    let y0 = 40.0;
    for (j, l) in labels.iter().enumerate() {
        let x = x0 + cell * (j as f64 + 0.5);
        let _ = write!(svg, "<text x=\"{x:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"middle\">{}</text>", y0 - 8.0, esc(&super::pages::clip(l, 8)));
    }
    for (i, row) in counts.iter().enumerate() {
        let y = y0 + cell * i as f64;
        let _ = write!(
            svg,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"tick\" text-anchor=\"end\">{}</text>",
            x0 - 6.0,
            y + cell / 2.0 + 4.0,
            esc(&super::pages::clip(labels.get(i).map_or("", String::as_str), 14))
        );
        for (j, c) in row.iter().enumerate() {
            let x = x0 + cell * j as f64;
            let strength = *c as f64 / max;
            let class = if i == j { "agree" } else { "disagree" };
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{w:.1}\" height=\"{w:.1}\" class=\"cell {class}\" fill-opacity=\"{:.2}\"><title>answered {}, corrected to {}: {c}</title></rect>\
                 <text x=\"{:.1}\" y=\"{:.1}\" class=\"count\" text-anchor=\"middle\">{c}</text>",
                0.08 + 0.92 * strength,
                esc(labels.get(i).map_or("", String::as_str)),
                esc(labels.get(j).map_or("", String::as_str)),
                x + cell / 2.0,
                y + cell / 2.0 + 4.0,
                w = cell - 2.0,
            );
        }
    }
    svg.push_str("</svg>");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn charts_are_svg_with_escaped_text_and_one_mark_per_value() {
        let labels = vec!["06-01".to_string(), "<06-02>".to_string()];
        let bars = stacked_bars("feedback", &labels, &[vec![2, 1], vec![0, 3]]);
        assert!(bars.starts_with("<svg") && bars.ends_with("</svg>"));
        assert_eq!(bars.matches("<rect").count(), 3, "zero values draw nothing: {bars}");
        assert!(bars.contains("&lt;06-02&gt;") && !bars.contains("<06-02>"));
        let lines = share_lines("agreement", &labels, &[vec![Some(0.5), None]]);
        assert_eq!(lines.matches("<circle").count(), 1);
        let m = confusion("confusion", &["a".into(), "b".into()], &[vec![3, 1], vec![0, 2]]);
        assert_eq!(m.matches("class=\"cell agree\"").count(), 2);
        assert_eq!(m.matches("class=\"cell disagree\"").count(), 2);
        let v = versions("holdout", &[VersionPoint { label: "abc".into(), current: Some(0.5), candidate: Some(0.6), promoted: true }]);
        assert!(v.contains("class=\"promoted\""));
    }
}
