//! A forgiving tokenizer for the editor: words, numbers, strings, comments and punctuation,
//! with byte spans. Unlike the parser it never fails: half-typed text (an unclosed string, a
//! stray character) still gives tokens, so completion and highlighting work while the file
//! does not parse.

use crate::syntax::Span;

/// What a token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A name or keyword: letters, digits and `_`, not starting with a digit.
    Word,
    /// A number literal.
    Number,
    /// A `"..."` or `"""..."""` string, closed or not.
    Str,
    /// A `// ...` comment.
    Comment,
    /// `->`.
    Arrow,
    /// `..`.
    DotDot,
    /// Any other character that is not whitespace.
    Punct(char),
}

/// One token and where it stands.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Token {
    /// What it is.
    pub kind: TokenKind,
    /// Its bytes in the text.
    pub span: Span,
}

impl Token {
    /// The token's text.
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.span.range()).unwrap_or("")
    }

    /// Whether this is the punctuation `c`.
    pub fn is(&self, c: char) -> bool {
        self.kind == TokenKind::Punct(c)
    }
}

/// Every token of `text`, in order.
pub fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = if b.is_ascii_whitespace() {
            i += 1;
            continue;
        } else if bytes[i..].starts_with(b"//") {
            i = memchr(b'\n', &bytes[i..]).map_or(bytes.len(), |e| i + e);
            TokenKind::Comment
        } else if bytes[i..].starts_with(b"\"\"\"") {
            i = find(&bytes[i + 3..], b"\"\"\"").map_or(bytes.len(), |e| i + 3 + e + 3);
            TokenKind::Str
        } else if b == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' && i + 1 < bytes.len() && bytes[i + 1] != b'\n' { 2 } else { 1 };
            }
            if i < bytes.len() && bytes[i] == b'"' {
                i += 1;
            }
            TokenKind::Str
        } else if b.is_ascii_alphabetic() || b == b'_' {
            while i < bytes.len() && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_') {
                i += 1;
            }
            TokenKind::Word
        } else if b.is_ascii_digit() || (b == b'-' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit)) {
            i += 1;
            while i < bytes.len() && (bytes[i].is_ascii_digit() || (bytes[i] == b'.' && bytes.get(i + 1).is_some_and(u8::is_ascii_digit))) {
                i += 1;
            }
            if i < bytes.len() && (bytes[i] == b'e' || bytes[i] == b'E') {
                let mut j = i + 1;
                if j < bytes.len() && (bytes[j] == b'+' || bytes[j] == b'-') {
                    j += 1;
                }
                if j < bytes.len() && bytes[j].is_ascii_digit() {
                    i = j;
                    while i < bytes.len() && bytes[i].is_ascii_digit() {
                        i += 1;
                    }
                }
            }
            TokenKind::Number
        } else if bytes[i..].starts_with(b"->") {
            i += 2;
            TokenKind::Arrow
        } else if bytes[i..].starts_with(b"..") {
            i += 2;
            TokenKind::DotDot
        } else {
            // One character, however many bytes it takes.
            let c = text[i..].chars().next().unwrap_or('\u{FFFD}');
            i += c.len_utf8().max(1);
            if c.is_whitespace() {
                continue;
            }
            TokenKind::Punct(c)
        };
        out.push(Token { kind, span: Span::new(start, i) });
    }
    out
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// The keywords that start an item.
pub const ITEM_KEYWORDS: [&str; 13] =
    ["program", "input", "output", "model", "tool", "signature", "step", "return", "metric", "optimize", "feedback", "example", "memory"];

/// Every other keyword.
pub const OTHER_KEYWORDS: [&str; 10] = ["in", "out", "predict", "chain_of_thought", "call", "using", "http", "command", "held_out", "true"];

/// Whether `word` is a keyword somewhere in the language (`false` included).
pub fn is_keyword(word: &str) -> bool {
    ITEM_KEYWORDS.contains(&word) || OTHER_KEYWORDS.contains(&word) || word == "false"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(TokenKind, &str)> {
        lex(text).into_iter().map(|t| (t.kind, t.text(text))).collect()
    }

    #[test]
    fn tokens_cover_words_strings_comments_and_punctuation() {
        let text = "step s = predict S { t: input.t, n: -1.5e3 } // done\n\"a\\\"b\" \"\"\"x\ny\"\"\" -> 1..5";
        let got = kinds(text);
        assert_eq!(got[0], (TokenKind::Word, "step"));
        assert!(got.contains(&(TokenKind::Number, "-1.5e3")));
        assert!(got.contains(&(TokenKind::Comment, "// done")));
        assert!(got.contains(&(TokenKind::Str, "\"a\\\"b\"")));
        assert!(got.contains(&(TokenKind::Str, "\"\"\"x\ny\"\"\"")));
        assert!(got.contains(&(TokenKind::Arrow, "->")));
        assert_eq!(&got[got.len() - 3..], &[(TokenKind::Number, "1"), (TokenKind::DotDot, ".."), (TokenKind::Number, "5")]);
    }

    #[test]
    fn half_typed_text_still_gives_tokens() {
        assert_eq!(kinds("\"open\nstep"), vec![(TokenKind::Str, "\"open"), (TokenKind::Word, "step")]);
        assert_eq!(kinds("\"\"\"never closed"), vec![(TokenKind::Str, "\"\"\"never closed")]);
        assert_eq!(kinds("x.é"), vec![(TokenKind::Word, "x"), (TokenKind::Punct('.'), "."), (TokenKind::Punct('é'), "é")]);
        assert_eq!(kinds("\"esc\\"), vec![(TokenKind::Str, "\"esc\\")]);
    }
}
