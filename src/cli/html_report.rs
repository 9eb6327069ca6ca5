//! `compile --report`: one self-contained HTML page with the candidates' scores over trials
//! (an inline SVG chart) and the winning prompts.
//!
//! The chart is drawn by hand: plotters needs a system font library (or a bundled font) to
//! place text, which a single static binary should not depend on for a few lines and dots.

use std::fmt::Write;

use loopc::runtime::artifact::Artifact;

/// Escapes text for HTML (and SVG) content and attributes.
fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The scores chart: one dot per candidate, the best-so-far line, and the baseline.
fn chart(artifact: &Artifact) -> String {
    let (w, h, left, right, top, bottom) = (720.0, 300.0, 48.0, 16.0, 16.0, 36.0);
    let cands = &artifact.provenance.candidates;
    let n = cands.len().max(2) - 1;
    let x = |i: usize| left + (w - left - right) * i as f64 / n as f64;
    let y = |s: f64| top + (h - top - bottom) * (1.0 - s.clamp(0.0, 1.0));
    let mut svg =
        format!(r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {w} {h}" width="{w}" height="{h}" role="img" aria-label="candidate scores by trial">"#);
    for tick in 0..=4 {
        let s = tick as f64 / 4.0;
        let _ = write!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y}" y2="{y}" stroke="#ddd"/><text x="{}" y="{}" font-size="11" text-anchor="end">{s:.2}</text>"##,
            w - right,
            left - 6.0,
            y(s) + 4.0,
            y = y(s)
        );
    }
    let _ = write!(svg, r##"<text x="{}" y="{}" font-size="11" text-anchor="middle">trial</text>"##, (left + w - right) / 2.0, h - 6.0);
    let base = y(artifact.provenance.baseline_score);
    let _ = write!(
        svg,
        r##"<line x1="{left}" x2="{}" y1="{base}" y2="{base}" stroke="#999" stroke-dasharray="4 3"/><text x="{}" y="{}" font-size="11" text-anchor="end" fill="#666">baseline</text>"##,
        w - right,
        w - right,
        base - 4.0
    );
    let mut best = f64::MIN;
    let mut path = String::new();
    for (i, c) in cands.iter().enumerate() {
        best = best.max(c.score);
        let _ = write!(path, "{}{:.1},{:.1}", if i == 0 { "M" } else { " L" }, x(i), y(best));
    }
    let _ = write!(svg, r##"<path d="{path}" fill="none" stroke="#2a7" stroke-width="2"/>"##);
    for (i, c) in cands.iter().enumerate() {
        let partial = c.evaluated_on < artifact.provenance.dev.examples;
        let _ = write!(
            svg,
            r##"<circle cx="{:.1}" cy="{:.1}" r="4" fill="{}"><title>trial {}: {:.3} on {} examples — {}</title></circle>"##,
            x(i),
            y(c.score),
            if partial { "#bbb" } else { "#36c" },
            c.trial,
            c.score,
            c.evaluated_on,
            esc(&c.description)
        );
        if n <= 30 || i % (n / 15).max(1) == 0 {
            let _ = write!(svg, r##"<text x="{:.1}" y="{}" font-size="10" text-anchor="middle">{}</text>"##, x(i), h - bottom + 14.0, c.trial);
        }
    }
    svg.push_str("</svg>");
    svg
}

/// The report page.
pub fn render(artifact: &Artifact) -> String {
    let p = &artifact.provenance;
    let mut html = String::from("<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">");
    let _ = write!(html, "<title>loopc compile report: {}</title>", esc(&artifact.program.name));
    html.push_str("<style>body{font:14px/1.45 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em}pre{background:#f6f6f6;padding:.8em;white-space:pre-wrap}table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #eee;text-align:left}td.n{text-align:right}</style></head><body>");
    let _ = write!(
        html,
        "<h1>{}</h1><p>{} with <b>{}</b> (seed {}), metric <b>{}</b>: <b>{:.3} → {:.3}</b> on {} dev examples; {} candidates, {} model calls, {:.1} s.</p>",
        esc(&artifact.program.name),
        esc(&artifact.program.source_file),
        esc(&p.optimizer),
        p.seed,
        esc(&p.metric),
        p.baseline_score,
        p.final_score,
        p.dev.examples,
        p.candidates.len(),
        p.model_calls,
        p.timing.wall_seconds
    );
    if let Some(why) = &p.stopped_early {
        let _ = write!(html, "<p><b>The search stopped early:</b> {}</p>", esc(why));
    }
    html.push_str("<h2>Candidate scores</h2><p>Blue: scored on the whole dev set; grey: on a minibatch. Green: best so far.</p>");
    html.push_str(&chart(artifact));
    html.push_str("<table><tr><th>trial</th><th>score</th><th>examples</th><th>calls</th><th>candidate</th></tr>");
    for c in &p.candidates {
        let _ = write!(
            html,
            "<tr><td class=n>{}</td><td class=n>{:.3}</td><td class=n>{}</td><td class=n>{}</td><td>{}</td></tr>",
            c.trial,
            c.score,
            c.evaluated_on,
            c.model_calls,
            esc(&c.description)
        );
    }
    html.push_str("</table><h2>Winning prompts</h2>");
    for (name, s) in &artifact.steps {
        let _ = write!(
            html,
            "<h3>step <code>{}</code> ({}, template {})</h3><p><b>Instruction:</b> {}</p>",
            esc(name),
            esc(&s.signature),
            esc(s.template.name()),
            esc(&s.instruction)
        );
        for (i, d) in s.demos.iter().enumerate() {
            let _ = write!(
                html,
                "<p>demo {}</p><pre>{}\n→ {}</pre>",
                i + 1,
                esc(&serde_json::Value::Object(d.inputs.clone()).to_string()),
                esc(&serde_json::Value::Object(d.outputs.clone()).to_string())
            );
        }
    }
    html.push_str("</body></html>\n");
    html
}

#[cfg(test)]
mod tests {
    #[test]
    fn escaping_keeps_markup_out_of_the_page() {
        assert_eq!(super::esc("<b>\"a\" & b</b>"), "&lt;b&gt;&quot;a&quot; &amp; b&lt;/b&gt;");
    }
}
