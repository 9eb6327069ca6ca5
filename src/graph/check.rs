//! One entry for checking source text, shared by the library and the CLI: parse, then lower.

use super::lower::{lower, Lowered};

/// Parses and checks `source`: the graph when there are no errors, and every diagnostic (a
/// syntax error stops at the parse, as the parser reports one).
pub fn check_text(source: &str) -> Lowered {
    match crate::syntax::parse(source) {
        Ok(file) => lower(&file),
        Err(d) => Lowered { dag: None, diagnostics: vec![d] },
    }
}
