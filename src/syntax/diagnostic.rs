//! The one diagnostic type every stage reports problems with.
//!
//! Stages collect diagnostics instead of stopping at the first problem; the CLI renders them
//! (with source lines and carets) and decides the exit code. Nothing here formats for a terminal.

use super::Span;

/// How bad a diagnostic is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// The program is still valid; something looks unintended.
    Warning,
    /// The program cannot be run.
    Error,
}

/// A problem found in a source text, with where it is and what may help.
#[derive(Clone, Debug, PartialEq)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// A stable kebab-case name of the problem (`unknown-name`, `cycle`, ...).
    pub code: &'static str,
    /// What is wrong: lowercase, names in backticks, no trailing period.
    pub message: String,
    /// The primary location.
    pub span: Span,
    /// Text printed under the caret of the primary location, if any.
    pub label: Option<String>,
    /// Further locations that explain the problem (e.g. "first defined here").
    pub related: Vec<(Span, String)>,
    /// Suggestions such as "did you mean `classify`?".
    pub hints: Vec<String>,
}

impl Diagnostic {
    /// An error with code `code` at `span`.
    pub fn error(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Error, code, message: message.into(), span, label: None, related: Vec::new(), hints: Vec::new() }
    }

    /// A warning with code `code` at `span`.
    pub fn warning(code: &'static str, span: Span, message: impl Into<String>) -> Self {
        Diagnostic { severity: Severity::Warning, ..Diagnostic::error(code, span, message) }
    }

    /// Adds the text shown under the primary caret.
    pub fn with_label(mut self, label: impl Into<String>) -> Self {
        self.label = Some(label.into());
        self
    }

    /// Adds a secondary location.
    pub fn with_related(mut self, span: Span, note: impl Into<String>) -> Self {
        self.related.push((span, note.into()));
        self
    }

    /// Adds a help line.
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hints.push(hint.into());
        self
    }

    /// Adds a help line when there is one.
    pub fn with_hint_opt(self, hint: Option<String>) -> Self {
        match hint {
            Some(h) => self.with_hint(h),
            None => self,
        }
    }

    /// Whether this diagnostic makes the program invalid.
    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

/// Whether any of `diagnostics` is an error.
pub fn has_errors(diagnostics: &[Diagnostic]) -> bool {
    diagnostics.iter().any(Diagnostic::is_error)
}
