//! Everything the server knows about one version of a document: its text, tokens, syntax
//! tree (when it parses), diagnostics and name index. Made anew on every change; making one
//! for a file of 500 lines is the re-check whose latency `loopc bench lsp` measures.

use super::index::Index;
use super::lexer::{lex, Token, TokenKind};
use crate::syntax::ast::{File, Header, Ident, Item};
use crate::syntax::{Diagnostic, LineIndex, Span};

/// One analysed version of a document.
#[derive(Debug)]
pub struct Analysis {
    /// The text.
    pub text: String,
    /// Its line starts.
    pub lines: LineIndex,
    /// Its tokens (comments and strings included).
    pub tokens: Vec<Token>,
    /// The syntax tree, when the text parses.
    pub file: Option<File>,
    /// The syntax error, or every problem the checker found.
    pub diagnostics: Vec<Diagnostic>,
    /// The names of the syntax tree (empty when the text does not parse).
    pub index: Index,
}

impl Analysis {
    /// Parses, checks and indexes `text`.
    pub fn new(text: String) -> Analysis {
        let lines = LineIndex::new(&text);
        let tokens = lex(&text);
        let (file, diagnostics) = match crate::syntax::parse(&text) {
            Ok(file) => {
                let diagnostics = crate::graph::lower(&file).diagnostics;
                (Some(file), diagnostics)
            }
            Err(d) => (None, vec![d]),
        };
        let index = file.as_ref().map(Index::new).unwrap_or_default();
        Analysis { text, lines, tokens, file, diagnostics, index }
    }

    /// The index of the token that covers byte `offset`, or ends right at it (where a cursor
    /// stands after typing a word).
    pub fn token_at(&self, offset: usize) -> Option<usize> {
        let i = self.tokens.partition_point(|t| t.span.end < offset);
        (i < self.tokens.len() && self.tokens[i].span.start <= offset).then_some(i)
    }

    /// The word (name or keyword) under the cursor at `offset`, with its token index.
    pub fn word_at(&self, offset: usize) -> Option<(usize, &str)> {
        let i = self.token_at(offset)?;
        let t = self.tokens[i];
        (t.kind == TokenKind::Word).then(|| (i, t.text(&self.text)))
    }

    /// The item of the syntax tree that contains byte `offset`.
    pub fn item_at(&self, offset: usize) -> Option<(usize, &Item)> {
        self.file.as_ref()?.items.iter().enumerate().find(|(_, item)| {
            let s = item.span();
            s.start <= offset && offset <= s.end
        })
    }
}

/// `item` written alone in canonical layout, for hovers.
pub fn item_source(item: &Item) -> String {
    let header = Header { name: Ident { name: "x".into(), span: Span::default() }, description: None, span: Span::default() };
    let file = File { header, items: vec![item.clone()] };
    let text = crate::syntax::format(&file, &[], "");
    text.split_once("\n\n").map_or(text.clone(), |(_, rest)| rest.trim_end().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_item_is_written_alone_without_the_header() {
        let a = Analysis::new("program p\ninput   t : text\n".into());
        let item = &a.file.as_ref().unwrap().items[0];
        assert_eq!(item_source(item), "input t: text");
    }

    #[test]
    fn a_file_that_does_not_parse_has_its_syntax_error_and_no_index() {
        let a = Analysis::new("program p\ninput t text\n".into());
        assert!(a.file.is_none());
        assert_eq!(a.diagnostics.len(), 1);
        assert!(a.index.symbols.is_empty());
        assert_eq!(a.word_at(12).map(|(_, w)| w), Some("input"));
    }
}
