//! Finds the `//` comments of a source text, which the grammar skips, so the formatter can
//! keep them.

use super::Span;

/// A `// ...` comment: its text without the slashes, and where it stands.
#[derive(Clone, Debug, PartialEq)]
pub struct Comment {
    /// The text after `//`, trailing whitespace removed.
    pub text: String,
    /// The span from `//` to the end of the line.
    pub span: Span,
}

/// Every comment in `source`, in order. Slashes inside string literals are not comments.
pub fn comments(source: &str) -> Vec<Comment> {
    let bytes = source.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        // Byte comparisons only: `i` may stand inside a multi-byte character.
        if bytes[i..].starts_with(b"\"\"\"") {
            i = find(&bytes[i + 3..], b"\"\"\"").map_or(bytes.len(), |e| i + 3 + e + 3);
        } else if bytes[i] == b'"' {
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                i += if bytes[i] == b'\\' { 2 } else { 1 };
            }
            i += 1;
        } else if bytes[i..].starts_with(b"//") {
            let end = find(&bytes[i..], b"\n").map_or(bytes.len(), |e| i + e);
            out.push(Comment { text: source[i + 2..end].trim_end().to_string(), span: Span::new(i, end) });
            i = end;
        } else if bytes[i] == b'/' {
            i = skip_regex(bytes, i);
        } else {
            i += 1;
        }
    }
    out
}

/// The end of the `/.../` pattern literal that opens at `start` (a lone `/`: the grammar
/// has no other use for one): after its closing slash, or at the end of its line.
pub(crate) fn skip_regex(bytes: &[u8], start: usize) -> usize {
    let mut i = start + 1;
    while i < bytes.len() && bytes[i] != b'/' && bytes[i] != b'\n' {
        i += if bytes[i] == b'\\' { 2 } else { 1 };
    }
    if bytes.get(i) == Some(&b'/') {
        i + 1
    } else {
        i.min(bytes.len())
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn comments_skip_string_contents() {
        let src = "a // one\n\"x // no\" \"\"\"\n// no\n\"\"\" b //two\n\"esc \\\" // no\"";
        let found: Vec<String> = comments(src).into_iter().map(|c| c.text).collect();
        assert_eq!(found, vec![" one", "two"]);
    }

    #[test]
    fn comments_skip_patterns_but_not_what_follows_them() {
        let src = "x: text(/\"a\\/b[(]/) // one\ny: text(/c/) // two";
        let found: Vec<String> = comments(src).into_iter().map(|c| c.text).collect();
        assert_eq!(found, vec![" one", " two"]);
    }
}
