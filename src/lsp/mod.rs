//! **Editing:** the language server behind `loopc lsp`. Editors send it the text of `.loop`
//! files as people type; it answers with what the earlier stages know: diagnostics from the
//! checker, hover, definitions, references and renames from an index of the names, completion,
//! formatting (the same as `loopc fmt`), outlines, semantic tokens, quick fixes for the
//! checker's "did you mean" hints, and a code lens that runs an example on the real engine.
//!
//! A stage on top, like the CLI: it reads `syntax`, `graph`, `runtime` and `compile`, and
//! nothing reads it. It speaks JSON-RPC through the [`lsp_server::Connection`] it is given
//! and never prints: the CLI hands it standard input and output, tests an in-memory pair.

mod actions;
mod analysis;
mod catalog;
mod completion;
mod hover;
mod index;
mod lexer;
mod navigate;
mod position;
mod runner;
mod server;
mod symbols;
mod tokens;

#[cfg(test)]
mod tests;

pub use self::analysis::Analysis;
pub use self::runner::RUN_EXAMPLE;
pub use self::server::{serve, ServerError};

/// What the server's semantic tokens say each token of `text` is, by byte span, in order:
/// the language's own view of its text, which other highlighters (the VS Code grammar) are
/// tested against.
pub fn highlight(text: &str) -> Vec<(crate::syntax::Span, Highlight)> {
    tokens::classify(&Analysis::new(text.to_string())).into_iter().map(|(span, class, _)| (span, class)).collect()
}

pub use self::tokens::Class as Highlight;
