//! Renders diagnostics for people (miette, with source lines and carets) and for scripts
//! (JSON). The only place that knows about miette.

use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, NamedSource, Report};
use serde::Serialize;

use loopc::syntax::{Diagnostic, LineIndex, Severity};

/// Renders one diagnostic against its source, as text with the file:line:col, the source
/// line and a caret under the span.
pub fn render(diag: &Diagnostic, path: &Path, source: &str, color: bool) -> String {
    let clamp = |s: loopc::syntax::Span| {
        let start = s.start.min(source.len());
        (start, s.end.min(source.len()).saturating_sub(start))
    };
    let mut labels = vec![LabeledSpan::new_primary_with_span(diag.label.clone(), clamp(diag.span))];
    for (span, note) in &diag.related {
        labels.push(LabeledSpan::new_with_span(Some(note.clone()), clamp(*span)));
    }
    let mut md = MietteDiagnostic::new(diag.message.clone())
        .with_code(format!("loopc::{}", diag.code))
        .with_severity(match diag.severity {
            Severity::Error => miette::Severity::Error,
            Severity::Warning => miette::Severity::Warning,
        })
        .with_labels(labels);
    if !diag.hints.is_empty() {
        md = md.with_help(diag.hints.join("\n"));
    }
    let report = Report::new(md).with_source_code(NamedSource::new(path.display().to_string(), source.to_string()));
    let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
    let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false);
    let mut out = String::new();
    if handler.render_report(&mut out, report.as_ref()).is_err() {
        // Rendering into a String cannot fail in practice; fall back to the plain line.
        out = format!("{}: {}: {}\n", path.display(), diag.code, diag.message);
    }
    out
}

/// A diagnostic as scripts read it.
#[derive(Debug, Serialize)]
pub struct JsonDiagnostic {
    /// The file.
    pub file: String,
    /// `error` or `warning`.
    pub severity: &'static str,
    /// The stable problem name.
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
    /// 1-based line of the span's start.
    pub line: usize,
    /// 1-based column (in characters) of the span's start.
    pub column: usize,
    /// 1-based line of the span's end.
    pub end_line: usize,
    /// 1-based column of the span's end.
    pub end_column: usize,
    /// Byte offsets of the span.
    pub start_byte: usize,
    /// Byte offset one past the span.
    pub end_byte: usize,
    /// The caret label.
    pub label: Option<String>,
    /// Help lines.
    pub hints: Vec<String>,
    /// Other locations with notes.
    pub related: Vec<JsonRelated>,
}

/// A secondary location in a [`JsonDiagnostic`].
#[derive(Debug, Serialize)]
pub struct JsonRelated {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What it shows.
    pub note: String,
}

/// Converts a diagnostic for JSON output.
pub fn to_json(diag: &Diagnostic, path: &Path, source: &str, index: &LineIndex) -> JsonDiagnostic {
    let start = index.line_col(source, diag.span.start);
    let end = index.line_col(source, diag.span.end);
    JsonDiagnostic {
        file: path.display().to_string(),
        severity: match diag.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        },
        code: diag.code,
        message: diag.message.clone(),
        line: start.line,
        column: start.col,
        end_line: end.line,
        end_column: end.col,
        start_byte: diag.span.start,
        end_byte: diag.span.end,
        label: diag.label.clone(),
        hints: diag.hints.clone(),
        related: diag
            .related
            .iter()
            .map(|(span, note)| {
                let lc = index.line_col(source, span.start);
                JsonRelated { line: lc.line, column: lc.col, note: note.clone() }
            })
            .collect(),
    }
}

/// Whether to colour output written to stderr.
pub fn use_color(choice: super::args::ColorChoice) -> bool {
    use std::io::IsTerminal;
    match choice {
        super::args::ColorChoice::Always => true,
        super::args::ColorChoice::Never => false,
        super::args::ColorChoice::Auto => std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal(),
    }
}
