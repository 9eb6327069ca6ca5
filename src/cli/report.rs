//! Renders diagnostics for people (miette, with source lines and carets) and for scripts
//! (JSON). The only place that knows about miette.
//!
//! Rendering one diagnostic costs about the same however big the file is. miette is not given
//! the whole text, which it scans from the start for every label (quadratic over a file with
//! many errors) and prints line by line in full (a caret at column 70 000 made it panic on a
//! width beyond `u16`). It gets an [`Excerpt`] instead: only the lines the labels stand on,
//! with one line of context, each line longer than [`LONG_LINE`] bytes cut to a window around
//! its carets, and control, bidirectional-override and zero-width characters shown as `�`, so
//! a file can neither drive the terminal nor hide text. Line and column numbers stay those of
//! the real file.

use std::fmt;
use std::path::Path;

use miette::{GraphicalReportHandler, GraphicalTheme, LabeledSpan, MietteDiagnostic, MietteError, MietteSpanContents, SourceCode, SourceSpan, SpanContents};
use serde::Serialize;

use loopc::syntax::{Diagnostic, LineIndex, Severity, Span};

/// Lines of context shown around each label.
const CONTEXT_LINES: usize = 1;
/// A label spanning more lines than this is drawn on its first line only.
const MAX_SPAN_LINES: usize = 8;
/// Lines longer than this many bytes are cut to a window around their carets.
pub const LONG_LINE: usize = 240;
/// The window kept of a long line: this many bytes before its first caret...
const WINDOW_BEFORE: usize = 60;
/// ...and this many bytes in all.
const WINDOW: usize = 180;
/// Secondary locations drawn at most; the rest are counted in a help line.
const MAX_RELATED: usize = 16;

/// Renders the diagnostics of one file; indexes the file once for all of them.
pub struct Renderer<'a> {
    path: &'a Path,
    source: &'a str,
    index: LineIndex,
    handler: GraphicalReportHandler,
}

impl<'a> Renderer<'a> {
    /// A renderer for diagnostics about `source`, read from `path`.
    pub fn new(path: &'a Path, source: &'a str, color: bool) -> Self {
        let theme = if color { GraphicalTheme::unicode() } else { GraphicalTheme::unicode_nocolor() };
        let handler = GraphicalReportHandler::new_themed(theme).with_width(100).with_links(false).with_context_lines(CONTEXT_LINES);
        Renderer { path, source, index: LineIndex::new(source), handler }
    }

    /// Renders one diagnostic as text with the file:line:col, the source lines and carets.
    pub fn render(&self, diag: &Diagnostic) -> String {
        let mut spans = vec![(self.clamp(diag.span), diag.label.clone(), true)];
        spans.extend(diag.related.iter().take(MAX_RELATED).map(|(span, note)| (self.clamp(*span), Some(clean(note)), false)));
        let excerpt = Excerpt::new(printable(&self.path.display().to_string()), self.source, &self.index, spans.iter().map(|(s, _, _)| *s));
        let labels = spans.into_iter().enumerate().map(|(i, (_, text, primary))| {
            let (start, end) = excerpt.label_spans[i];
            let span = SourceSpan::from((start, end - start));
            let text = text.map(|t| clean(&t));
            if primary {
                LabeledSpan::new_primary_with_span(text, span)
            } else {
                LabeledSpan::new_with_span(text, span)
            }
        });
        let mut md = MietteDiagnostic::new(clean(&diag.message))
            .with_code(format!("loopc::{}", diag.code))
            .with_severity(match diag.severity {
                Severity::Error => miette::Severity::Error,
                Severity::Warning => miette::Severity::Warning,
            })
            .with_labels(labels);
        let mut hints: Vec<String> = diag.hints.iter().map(|h| clean(h)).collect();
        if diag.related.len() > MAX_RELATED {
            hints.push(format!("{} more related locations are not shown", diag.related.len() - MAX_RELATED));
        }
        if !hints.is_empty() {
            md = md.with_help(hints.join("\n"));
        }
        let shown = Shown { diag: md, excerpt: &excerpt };
        let mut out = String::new();
        if self.handler.render_report(&mut out, &shown).is_err() {
            // The excerpt answers every label it was built for, so this is not expected; still,
            // a diagnostic must reach the user.
            let at = self.index.line_col(self.source, diag.span.start);
            out = format!("{}:{}:{}: {}: {}\n", printable(&self.path.display().to_string()), at.line, at.col, diag.code, clean(&diag.message));
        }
        out
    }

    /// The span within the text, on character boundaries, and cut to its first line when it
    /// covers many.
    fn clamp(&self, span: Span) -> (usize, usize) {
        let start = floor_boundary(self.source, span.start);
        let end = floor_boundary(self.source, span.end).max(start);
        let (first, last) = (self.index.line_of(start), self.index.line_of(end));
        if last - first > MAX_SPAN_LINES {
            return (start, self.index.line_range(self.source, first).end.max(start));
        }
        (start, end)
    }
}

/// Renders one diagnostic against its source (see [`Renderer`] for many).
pub fn render(diag: &Diagnostic, path: &Path, source: &str, color: bool) -> String {
    Renderer::new(path, source, color).render(diag)
}

/// A name or value quoted in backticks longer than this many characters is shortened in
/// rendered messages (JSON output keeps it whole).
const MAX_QUOTED_CHARS: usize = 80;

/// `text` as shown: characters that would act on the terminal written as escapes, and each
/// `quoted` part longer than [`MAX_QUOTED_CHARS`] cut to its ends (a 100 000-character name
/// would otherwise fill the screen, once per diagnostic that names it).
fn clean(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(4 * MAX_QUOTED_CHARS));
    for (i, part) in text.split('`').enumerate() {
        if i > 0 {
            out.push('`');
        }
        let quoted = i % 2 == 1;
        let count = part.chars().count();
        if quoted && count > MAX_QUOTED_CHARS {
            let head: String = part.chars().take(MAX_QUOTED_CHARS / 2).collect();
            let tail: String = part.chars().skip(count - MAX_QUOTED_CHARS / 4).collect();
            push_escaped(&mut out, &head);
            out.push_str(&format!("…({} characters)…", count - head.chars().count() - tail.chars().count()));
            push_escaped(&mut out, &tail);
        } else {
            push_escaped(&mut out, part);
        }
    }
    out
}

/// `text` with the characters that would act on a terminal written as escapes: for file
/// names and other text loopc prints that did not come from loopc.
pub fn printable(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    push_escaped(&mut out, text);
    out
}

fn push_escaped(out: &mut String, text: &str) {
    for c in text.chars() {
        if is_hostile(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
}

/// Characters that act on a terminal instead of showing, or show as nothing: controls (but
/// newlines and tabs), bidirectional overrides and isolates ("Trojan Source"), zero-width
/// characters and byte-order marks.
fn is_hostile(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{061C}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}')
}

fn floor_boundary(text: &str, i: usize) -> usize {
    let mut i = i.min(text.len());
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

/// A miette diagnostic with its excerpt as source code.
struct Shown<'a> {
    diag: MietteDiagnostic,
    excerpt: &'a Excerpt,
}

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.diag, f)
    }
}

impl fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.diag, f)
    }
}

impl std::error::Error for Shown<'_> {}

impl miette::Diagnostic for Shown<'_> {
    fn code<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.code()
    }

    fn severity(&self) -> Option<miette::Severity> {
        self.diag.severity()
    }

    fn help<'b>(&'b self) -> Option<Box<dyn fmt::Display + 'b>> {
        self.diag.help()
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        self.diag.labels()
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        Some(self.excerpt)
    }
}

/// The lines of one file that one diagnostic shows, in its own offset space: runs of
/// consecutive lines ([`Segment`]s) one after another, each line possibly clipped. miette reads
/// spans from it as from a file; a span across two segments cannot be read, so miette draws
/// distant labels in separate snippets instead of printing everything between them.
struct Excerpt {
    name: String,
    segments: Vec<Segment>,
    /// Each label's (start, end) in the excerpt's offsets, in the order given.
    label_spans: Vec<(usize, usize)>,
}

/// Consecutive lines of the file, as shown.
struct Segment {
    /// The excerpt offset of `text`'s first byte.
    start: usize,
    /// The lines as shown, each ending in a newline.
    text: String,
    lines: Vec<ShownLine>,
}

/// One line as shown.
struct ShownLine {
    /// The excerpt offset of the line's first byte.
    start: usize,
    /// The 0-based line number in the file.
    number: usize,
    /// Added to a character count from the line's shown start to give the file's 0-based
    /// column: the characters cut from the front, less the `…` put there.
    col_shift: isize,
}

impl Excerpt {
    /// An excerpt holding `spans` (byte ranges of `source`, on character boundaries).
    fn new(name: String, source: &str, index: &LineIndex, spans: impl Iterator<Item = (usize, usize)>) -> Excerpt {
        let spans: Vec<(usize, usize)> = spans.collect();
        // The empty "line" after a final newline is shown only when a label stands on it.
        let last_context = index.line_count() - if source.ends_with('\n') { 2 } else { 1 };
        // Which lines to show: each label's lines with context, runs merged.
        let mut runs: Vec<(usize, usize)> = spans
            .iter()
            .map(|&(start, end)| {
                let (first, last) = (index.line_of(start), index.line_of(if end > start { end - 1 } else { end }));
                (first.saturating_sub(CONTEXT_LINES), (last + CONTEXT_LINES).min(last_context).max(last))
            })
            .collect();
        runs.sort_unstable();
        let mut merged: Vec<(usize, usize)> = Vec::new();
        for (a, b) in runs {
            match merged.last_mut() {
                Some(m) if a <= m.1 + 1 => m.1 = m.1.max(b),
                _ => merged.push((a, b)),
            }
        }
        // Every label point by line, to choose each long line's window and map the points.
        let points: Vec<usize> = spans.iter().flat_map(|&(s, e)| [s, e]).collect();
        let mut by_line: Vec<(usize, usize)> = points.iter().enumerate().map(|(i, &p)| (index.line_of(p), i)).collect();
        by_line.sort_unstable();
        let mut mapped = vec![0usize; points.len()];
        let mut segments = Vec::with_capacity(merged.len());
        let mut offset = 0;
        for (a, b) in merged {
            let mut seg = Segment { start: offset, text: String::new(), lines: Vec::with_capacity(b - a + 1) };
            for number in a..=b {
                let lo = by_line.partition_point(|&(l, _)| l < number);
                let hi = by_line.partition_point(|&(l, _)| l <= number);
                let on_line: Vec<usize> = by_line[lo..hi].iter().map(|&(_, i)| i).collect();
                let line_start = offset + seg.text.len();
                let mut range = index.line_range(source, number);
                if source[range.clone()].ends_with('\r') {
                    range.end -= 1;
                }
                let (ws, we) = window(source, range.clone(), on_line.iter().map(|&i| points[i]));
                let prefix = if ws > range.start { "…" } else { "" };
                seg.text.push_str(prefix);
                let shown_start = line_start + prefix.len();
                for &i in &on_line {
                    let p = points[i].clamp(ws, we);
                    mapped[i] = shown_start + source[ws..p].chars().map(shown_len).sum::<usize>();
                }
                seg.text.extend(source[ws..we].chars().map(|c| if is_hostile(c) && c != '\t' { '\u{FFFD}' } else { c }));
                if we < range.end {
                    seg.text.push('…');
                }
                seg.text.push('\n');
                let cut = index.chars_before(source, ws) - index.chars_before(source, range.start);
                seg.lines.push(ShownLine { start: line_start, number, col_shift: cut as isize - prefix.chars().count() as isize });
            }
            offset += seg.text.len();
            segments.push(seg);
        }
        let label_spans = (0..spans.len()).map(|i| (mapped[2 * i], mapped[2 * i + 1].max(mapped[2 * i]))).collect();
        Excerpt { name, segments, label_spans }
    }
}

/// The bytes of `source` shown for the line `range`: all of it when short, else a window around
/// the label points on it (or its start, when none).
fn window(source: &str, range: std::ops::Range<usize>, points: impl Iterator<Item = usize>) -> (usize, usize) {
    if range.len() <= LONG_LINE {
        return (range.start, range.end);
    }
    let first = points.min().unwrap_or(range.start).clamp(range.start, range.end);
    let ws = floor_boundary(source, first.saturating_sub(WINDOW_BEFORE).max(range.start));
    let we = floor_boundary(source, (ws + WINDOW).min(range.end)).max(first);
    (ws, we)
}

/// The bytes a character takes as shown.
fn shown_len(c: char) -> usize {
    if is_hostile(c) && c != '\t' {
        '\u{FFFD}'.len_utf8()
    } else {
        c.len_utf8()
    }
}

impl SourceCode for Excerpt {
    fn read_span<'a>(&'a self, span: &SourceSpan, before: usize, after: usize) -> Result<Box<dyn SpanContents<'a> + 'a>, MietteError> {
        let (start, end) = (span.offset(), span.offset() + span.len());
        let seg_index = self.segments.partition_point(|s| s.start <= start).checked_sub(1).ok_or(MietteError::OutOfBounds)?;
        let seg = &self.segments[seg_index];
        if end > seg.start + seg.text.len() {
            return Err(MietteError::OutOfBounds);
        }
        let line_at = |offset: usize| seg.lines.partition_point(|l| l.start <= offset).saturating_sub(1);
        let first = line_at(start);
        let last = line_at(if end > start { end - 1 } else { end });
        let (from, to) = (first.saturating_sub(before), (last + after).min(seg.lines.len() - 1));
        let data_end = seg.lines.get(to + 1).map_or(seg.start + seg.text.len(), |l| l.start);
        let (data_start, column) = if before == 0 {
            let line = &seg.lines[first];
            let chars = seg.text[line.start - seg.start..start - seg.start].chars().count() as isize;
            (start, (chars + line.col_shift).max(0) as usize)
        } else {
            (seg.lines[from].start, 0)
        };
        let data = &seg.text.as_bytes()[data_start - seg.start..data_end - seg.start];
        let line = if before == 0 { seg.lines[first].number } else { seg.lines[from].number };
        Ok(Box::new(MietteSpanContents::new_named(self.name.clone(), data, SourceSpan::from((data_start, data_end - data_start)), line, column, to - from + 1)))
    }
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

/// Prints what loading a program found worth telling (to stderr, one `warning:` line each).
pub fn print_load_warnings(program: &loopc::runtime::Program) {
    for w in program.warnings() {
        eprintln!("warning: {w}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render_plain(source: &str, diag: &Diagnostic) -> String {
        Renderer::new(Path::new("f.loop"), source, false).render(diag)
    }

    #[test]
    fn an_error_at_column_seventy_thousand_renders_a_window_with_the_true_column() {
        let source = format!("program p {}@ rest\n", "é".repeat(70_000));
        let at = source.find('@').unwrap();
        let out = render_plain(&source, &Diagnostic::error("syntax", Span::new(at, at + 1), "found `@`").with_label("here"));
        assert!(out.contains("[f.loop:1:70011]"), "{out}");
        assert!(out.contains("…éééé") && out.contains("@ rest"), "{out}");
        assert!(out.len() < 2_000, "{} bytes", out.len());
    }

    #[test]
    fn labels_far_apart_render_as_separate_snippets_without_the_lines_between() {
        let source: String = (0..10_000).map(|i| format!("line {i}\n")).collect();
        let span_of = |i: usize| {
            let at = source.find(&format!("line {i}\n")).unwrap();
            Span::new(at, at + 4)
        };
        let diag = Diagnostic::error("cycle", span_of(10), "first").with_related(span_of(9_000), "far");
        let out = render_plain(&source, &diag);
        assert!(out.contains("line 10") && out.contains("line 9000") && out.contains("line 8999"), "{out}");
        assert!(!out.contains("line 500\n"), "{out}");
        assert!(out.lines().count() < 30, "{out}");
    }

    #[test]
    fn terminal_controls_in_source_and_messages_are_neutralised() {
        let source = "program p \"\u{1b}[2J\u{202e}\" x\n";
        let at = source.find(" x").unwrap() + 1;
        let diag = Diagnostic::error("syntax", Span::new(at, at + 1), "found `\u{1b}`").with_hint("see `\u{202e}`");
        let out = render_plain(source, &diag);
        assert!(!out.contains('\u{1b}') && !out.contains('\u{202e}'), "{out:?}");
        assert!(out.contains("\\u{1b}") && out.contains("\\u{202e}") && out.contains('\u{FFFD}'), "{out}");
    }

    #[test]
    fn long_quoted_names_are_shortened_in_messages() {
        let name = "n".repeat(1_000);
        let shown = clean(&format!("unknown step `{name}` here"));
        assert!(shown.starts_with("unknown step `nnnn") && shown.ends_with("nnnn` here"), "{shown}");
        assert!(shown.contains("…(940 characters)…") && shown.len() < 200, "{shown}");
    }

    #[test]
    fn spans_at_the_end_and_past_the_end_of_the_text_render() {
        for source in ["", "program", "program p\n", "a\r\nb\r\n"] {
            for (start, end) in [(0, 0), (source.len(), source.len()), (source.len() + 5, source.len() + 9), (0, usize::MAX)] {
                let out = render_plain(source, &Diagnostic::error("syntax", Span::new(start, end), "m").with_related(Span::new(end, start), "r"));
                assert!(out.contains("f.loop:"), "{source:?} {start}..{end}: {out}");
            }
        }
    }
}
