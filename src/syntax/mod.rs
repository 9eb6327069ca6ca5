//! **Parsing:** turns `.loop` source text into a syntax tree ([`ast::File`]), and a tree back
//! into canonical text ([`format_source`]).
//!
//! This stage knows nothing about names, types or models: it reports only what is wrong
//! with the *text*. Every node carries a [`Span`], and every problem is a [`Diagnostic`].

pub mod ast;
mod comments;
mod diagnostic;
mod format;
mod format_example;
mod nesting;
mod parser;
mod span;
mod strings;

#[cfg(test)]
pub(crate) mod tests;

pub use self::comments::{comments, Comment};
pub use self::diagnostic::{has_errors, Diagnostic, Severity};
pub use self::format::{format, is_ident, ty as format_type, value as format_value};
pub use self::format_example::label_literal;
pub use self::nesting::MAX_NESTING;
pub use self::parser::parse;
pub use self::span::{LineCol, LineIndex, Span};
pub use self::strings::{quote, quote_regex};

/// Parses `source` and writes it back in canonical layout, keeping comments.
#[allow(clippy::result_large_err)] // one diagnostic, at most once per call
pub fn format_source(source: &str) -> Result<String, Diagnostic> {
    let file = parse(source)?;
    Ok(format(&file, &comments(source), source))
}
