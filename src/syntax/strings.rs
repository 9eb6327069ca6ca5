//! String literals: resolving escapes and long-string indentation, and writing values back.
//!
//! Writing must invert reading exactly (`read(write(s)) == s` for every `s`), since the
//! formatter relies on it; the tests below and the property tests check that law.

/// Resolves the escapes of a `"..."` body (without quotes). The grammar has already checked
/// that every escape is well formed; `None` means a `\u{...}` named no character.
pub fn unescape(body: &str) -> Option<String> {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            'n' => out.push('\n'),
            't' => out.push('\t'),
            'r' => out.push('\r'),
            '0' => out.push('\0'),
            'u' => {
                let rest = chars.as_str();
                let close = rest.find('}')?;
                let code = u32::from_str_radix(&rest[1..close], 16).ok()?;
                out.push(char::from_u32(code)?);
                chars = rest[close + 1..].chars();
            }
            other => out.push(other),
        }
    }
    Some(out)
}

/// The pattern of a `/.../` literal's body: `\\/` stands for `/`; every other escape is the
/// pattern's own and stays as written.
pub fn unescape_regex(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    let mut chars = body.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('/') => out.push('/'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

/// Writes a pattern as a `/.../` literal: the inverse of reading one (a `/` not
/// already escaped gets a backslash; escape pairs are kept whole).
pub fn quote_regex(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len() + 2);
    out.push('/');
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                out.push('\\');
                match chars.next() {
                    // Reading turns `\/` into `/`; both mean a slash to the pattern.
                    Some('/') => out.push('/'),
                    Some(n) => out.push(n),
                    None => out.push('\\'),
                }
            }
            '/' => out.push_str("\\/"),
            other => out.push(other),
        }
    }
    out.push('/');
    out
}

/// The value of a `"""..."""` body: the newline right after the opening quotes is dropped,
/// so is a last line holding only whitespace, and the indentation common to all non-blank
/// lines is removed. No escapes are processed.
pub fn dedent_long(body: &str) -> String {
    let body = body.strip_prefix('\n').unwrap_or(body);
    let body = match body.rfind('\n') {
        Some(i) if body[i + 1..].chars().all(|c| c == ' ' || c == '\t') => &body[..i],
        _ => body,
    };
    let indent = body.lines().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start_matches([' ', '\t']).len()).min().unwrap_or(0);
    let mut out = String::with_capacity(body.len());
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            out.push('\n');
        }
        let strip = line.len() - line.trim_start_matches([' ', '\t']).len();
        out.push_str(&line[strip.min(indent)..]);
    }
    out
}

/// Writes `s` as a `"..."` literal.
pub fn quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\0' => out.push_str("\\0"),
            c if c.is_control() => out.push_str(&format!("\\u{{{:x}}}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Writes `s` as a `"""..."""` literal whose lines are indented by `indent`, when `s` spans
/// lines and the long form reads back to exactly `s`; otherwise as a `"..."` literal.
pub fn quote_multiline(s: &str, indent: &str) -> String {
    if !s.contains('\n') || s.contains("\"\"\"") || s.ends_with('"') || s.contains('\r') {
        return quote(s);
    }
    let inner = format!("{indent}    ");
    let mut out = String::from("\"\"\"\n");
    for line in s.split('\n') {
        if !line.is_empty() {
            out.push_str(&inner);
            out.push_str(line);
        }
        out.push('\n');
    }
    out.push_str(indent);
    out.push_str("\"\"\"");
    let body = &out[3..out.len() - 3];
    if dedent_long(body) == s {
        out
    } else {
        quote(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(literal: &str) -> &str {
        &literal[1..literal.len() - 1]
    }

    #[test]
    fn escapes_read_back_to_the_same_text() {
        for s in ["plain", "a \"q\" \\ b", "tab\tnl\ncr\r", "nul\0", "bell\u{7}", "é🚀{x}"] {
            assert_eq!(unescape(body(&quote(s))).as_deref(), Some(s));
        }
    }

    #[test]
    fn unicode_escapes_name_characters() {
        assert_eq!(unescape(r"\u{48}\u{1F680}").as_deref(), Some("H🚀"));
        assert_eq!(unescape(r"\u{D800}"), None, "a surrogate is not a character");
    }

    #[test]
    fn long_strings_drop_the_first_newline_and_common_indent() {
        let body = "\n    Classify the ticket.\n      Be brief.\n\n    Thanks.\n  ";
        assert_eq!(dedent_long(body), "Classify the ticket.\n  Be brief.\n\nThanks.");
    }

    #[test]
    fn multiline_literals_read_back_to_the_same_text() {
        for s in ["one\ntwo", "\nlead", "trail\n", "  indented\nnot", "a\n\n\nb", "x\n  ", "\tt\nu", "q\"\n"] {
            let lit = quote_multiline(s, "  ");
            let back = if let Some(b) = lit.strip_prefix("\"\"\"") { dedent_long(&b[..b.len() - 3]) } else { unescape(body(&lit)).unwrap() };
            assert_eq!(back, s, "literal was {lit}");
        }
    }
}
