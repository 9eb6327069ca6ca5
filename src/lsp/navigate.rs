//! Go to definition, find references and rename, on the [`Index`](super::index::Index).
//! Rename refuses what would change the program's meaning or break it: a name that is not
//! a name, a reserved one, or one another declaration of the same kind already has.

use super::analysis::Analysis;
use super::index::SymbolKind;
use super::lexer::is_keyword;
use crate::syntax::{is_ident, Span};

/// Where the name at `offset` is declared.
pub fn definition(a: &Analysis, offset: usize) -> Option<Span> {
    let (id, _) = a.index.at(offset)?;
    Some(a.index.symbols[id].def)
}

/// Every place the name at `offset` is written (its declaration first when asked for).
pub fn references(a: &Analysis, offset: usize, include_declaration: bool) -> Vec<Span> {
    let Some((id, _)) = a.index.at(offset) else { return Vec::new() };
    let mut spans = a.index.occurrences(id);
    if !include_declaration {
        spans.remove(0);
    }
    spans
}

/// Why a rename is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RenameError {
    /// Occurs when nothing renameable stands at the position.
    #[error("there is no step, signature, tool, model, metric, input, output, field, parameter, feedback or example here to rename")]
    NothingHere,
    /// Occurs when the new name is not a name.
    #[error("`{0}` is not a name: use letters, digits and `_`, starting with a letter or `_`")]
    NotAName(String),
    /// Occurs when the new name is a keyword or a reserved name.
    #[error("`{0}` is reserved in `.loop` files")]
    Reserved(String),
    /// Occurs when another declaration already has the name.
    #[error("there is already a {kind} named `{name}`")]
    Collision {
        /// The kind of the declaration that has the name.
        kind: &'static str,
        /// The name.
        name: String,
    },
}

/// The name at `offset` that a rename would change, and its span.
pub fn prepare_rename(a: &Analysis, offset: usize) -> Result<Span, RenameError> {
    a.index.at(offset).map(|(_, span)| span).ok_or(RenameError::NothingHere)
}

/// The spans to rewrite to `new_name` to rename the name at `offset`.
pub fn rename(a: &Analysis, offset: usize, new_name: &str) -> Result<Vec<Span>, RenameError> {
    let (id, _) = a.index.at(offset).ok_or(RenameError::NothingHere)?;
    if !is_ident(new_name) {
        return Err(RenameError::NotAName(new_name.to_string()));
    }
    let symbol = &a.index.symbols[id];
    let reserved = is_keyword(new_name) || (symbol.kind == SymbolKind::Step && ["input", "output", "example"].contains(&new_name));
    if reserved {
        return Err(RenameError::Reserved(new_name.to_string()));
    }
    if let Some(other) = a.index.collision(id, new_name) {
        return Err(RenameError::Collision { kind: a.index.symbols[other].kind.noun(), name: new_name.to_string() });
    }
    Ok(a.index.occurrences(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC: &str = "program p\ninput ticket: text\noutput answer: text\n\
        signature S { in ticket: text out answer: text }\n\
        step first = predict S { ticket: input.ticket }\n\
        step second = predict S { ticket: first.answer }\n\
        return { answer: second.answer }\n";

    fn renamed(at: &str, to: &str) -> Result<String, RenameError> {
        let a = Analysis::new(SRC.into());
        let spans = rename(&a, SRC.find(at).unwrap() + 1, to)?;
        let mut text = SRC.to_string();
        let mut spans = spans;
        spans.sort_by_key(|s| std::cmp::Reverse(s.start));
        for s in spans {
            text.replace_range(s.range(), to);
        }
        Ok(text)
    }

    #[test]
    fn renaming_a_step_rewrites_every_use_and_the_program_still_checks() {
        let text = renamed("first =", "draft").unwrap();
        assert!(text.contains("step draft = ") && text.contains("ticket: draft.answer"), "{text}");
        assert!(crate::graph::check_text(&text).dag.is_some());
    }

    #[test]
    fn renaming_an_input_rewrites_its_references() {
        let text = renamed("ticket: text\noutput", "message").unwrap();
        assert!(text.contains("input message: text") && text.contains("input.message"), "{text}");
        assert!(text.contains("in ticket: text"), "the signature's field is another name: {text}");
        assert!(crate::graph::check_text(&text).dag.is_some());
    }

    #[test]
    fn a_rename_that_collides_or_is_no_name_is_refused() {
        assert_eq!(renamed("first =", "second"), Err(RenameError::Collision { kind: "step", name: "second".into() }));
        assert_eq!(renamed("ticket: text\noutput", "answer"), Err(RenameError::Collision { kind: "output", name: "answer".into() }));
        assert_eq!(renamed("first =", "input"), Err(RenameError::Reserved("input".into())));
        assert_eq!(renamed("first =", "two words"), Err(RenameError::NotAName("two words".into())));
        assert_eq!(renamed("program", "x"), Err(RenameError::NothingHere));
    }

    #[test]
    fn definition_and_references_meet_at_the_declaration() {
        let a = Analysis::new(SRC.into());
        let use_at = SRC.find("first.answer").unwrap() + 2;
        let def = definition(&a, use_at).unwrap();
        assert_eq!(def.range(), SRC.find("first =").map(|s| s..s + 5).unwrap());
        assert_eq!(references(&a, use_at, true).len(), 2);
        assert_eq!(references(&a, use_at, false).len(), 1);
    }
}
