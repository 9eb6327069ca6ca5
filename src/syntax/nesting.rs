//! The nesting limit: brackets (`[`, `(`, `{`, `<`) may nest at most [`MAX_NESTING`] deep.
//!
//! The grammar is recursive in lists (`[[...]]`) and list types (`list<list<...>>`), and so are
//! the parser, the tree, the checker and the formatter that walk them: a file nested 100 000
//! deep would overflow the stack. Real programs nest a handful of levels, so the text is
//! scanned for its bracket depth before pest sees it, and a deeper file gets one located
//! error instead of a crash.

use super::{Diagnostic, Span};

/// How deep brackets may nest in a `.loop` file.
pub const MAX_NESTING: usize = 64;

/// Reports the first bracket that opens deeper than [`MAX_NESTING`], if any.
///
/// The scan follows the grammar's lexical rules (strings and comments are skipped) but does
/// not check that brackets match: pest reports that, with better messages, once the depth is
/// known to be safe. A `>` of `->` closes nothing.
#[allow(clippy::result_large_err)] // one diagnostic, at most once per parse
pub fn check_nesting(source: &str) -> Result<(), Diagnostic> {
    let bytes = source.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < bytes.len() {
        // Byte comparisons only, as in `comments`: `i` may stand inside a multi-byte character.
        match bytes[i] {
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                i = find(&bytes[i + 3..], b"\"\"\"").map_or(bytes.len(), |e| i + 3 + e + 3);
                continue;
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                i = find(&bytes[i..], b"\n").map_or(bytes.len(), |e| i + e);
                continue;
            }
            // A pattern's brackets are the pattern's own (`/[(]{3}/`).
            b'/' => {
                i = super::comments::skip_regex(bytes, i);
                continue;
            }
            b'[' | b'(' | b'{' | b'<' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(Diagnostic::error("too-deep", Span::new(i, i + 1), format!("brackets nest more than {MAX_NESTING} deep here"))
                        .with_label("one level too many")
                        .with_hint(format!("lists and list types may nest at most {MAX_NESTING} levels; flatten the value or use `json`")));
                }
            }
            b'>' if i > 0 && bytes[i - 1] == b'-' => {}
            b']' | b')' | b'}' | b'>' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("program p\ninput x: {}text{}\n", "list<".repeat(depth), ">".repeat(depth))
    }

    #[test]
    fn the_limit_itself_is_allowed_and_one_more_is_reported_at_the_bracket() {
        assert!(check_nesting(&nested(MAX_NESTING)).is_ok());
        let d = check_nesting(&nested(MAX_NESTING + 1)).unwrap_err();
        let at = "program p\ninput x: ".len() + MAX_NESTING * "list<".len() + "list".len();
        assert_eq!(d.span.range(), at..at + 1);
        assert_eq!(d.code, "too-deep");
    }

    #[test]
    fn brackets_in_strings_comments_and_arrows_do_not_count() {
        let deep = "[".repeat(MAX_NESTING + 5);
        let src =
            format!("program p \"{deep}\"\n// {deep}\nsignature S \"\"\"\n{deep}\n\"\"\" {{}}\ntool t() -> text = command [\"x\"]\ninput x: text(/{deep}/)\n");
        assert!(check_nesting(&src).is_ok());
    }
}
