//! Builds a tool's URL from its template so that no value can change where the request goes.
//!
//! Each value is percent-encoded into its slot (everything but RFC 3986's unreserved
//! characters), so it holds no `/`, `\`, `?`, `#`, `&`, `=`, `+` or `%` of its own. Encoding
//! can't neutralise a dot-segment (URL parsers read `%2e%2e` as `..`), so a value that would
//! make a path segment `.`, `..` or empty is refused. The parsed result is then checked against
//! the template: the same scheme, host and port, the same fixed path prefix, the same number of
//! path segments and query parameters.

use std::ops::Range;

use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
use reqwest::Url;

use super::error::snippet;
use crate::graph::{url_slots, Segment, ToolTemplate, UrlSlot};

/// Everything but the unreserved characters `A-Z a-z 0-9 - . _ ~`.
pub(super) const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The URL `template` names with each parameter's value from `value_of`. The error says which
/// value could not be placed, or why the template itself is unusable.
pub(super) fn build(template: &ToolTemplate, value_of: impl Fn(&str) -> String) -> Result<Url, String> {
    let slots = url_slots(template).map_err(|e| e.to_string())?;
    let (text, path_values) = render(template, &slots, value_of);
    for (param, range) in &path_values {
        let segment = enclosing_segment(&text, range.clone());
        let plain = segment.to_ascii_lowercase().replace("%2e", ".");
        if plain.is_empty() {
            return Err(format!("the value of `{param}` is empty, which would leave an empty path segment (a different path to many servers)"));
        }
        if plain == "." || plain == ".." {
            return Err(format!("the value of `{param}` makes the path segment `{segment}`, which would climb the URL's path"));
        }
    }
    let url = Url::parse(&text).map_err(|e| format!("the URL `{}` is not valid: {e}", snippet(&text, 200)))?;
    // A neutral value shows the shape the template fixes; the real URL must have the same.
    let (neutral_text, _) = render(template, &slots, |_| "x".to_string());
    let neutral = Url::parse(&neutral_text).map_err(|e| format!("the URL template `{}` is not valid: {e}", snippet(&neutral_text, 200)))?;
    let fixed = fixed_prefix(template);
    let fixed = Url::parse(fixed).map_err(|e| format!("the URL `{}` is not valid: {e}", snippet(fixed, 200)))?;
    let changed = if url.origin() != fixed.origin() || url.username() != fixed.username() || url.password() != fixed.password() {
        Some("origin")
    } else if !path_keeps_prefix(&url, &fixed, slots.contains(&UrlSlot::Path)) || segments(&url) != segments(&neutral) {
        Some("path")
    } else if params(&url) != params(&neutral) || url.fragment().is_some() != neutral.fragment().is_some() {
        Some("query")
    } else {
        None
    };
    match changed {
        Some(part) => {
            Err(format!("the values would change the URL's {part}: `{}` instead of the form `{}`", snippet(url.as_str(), 200), snippet(neutral.as_str(), 200)))
        }
        None => Ok(url),
    }
}

/// The filled-in template and, for each value placed in the path, its parameter and byte range.
fn render<'t>(template: &'t ToolTemplate, slots: &[UrlSlot], value_of: impl Fn(&str) -> String) -> (String, Vec<(&'t str, Range<usize>)>) {
    let mut text = String::new();
    let mut path_values = Vec::new();
    let mut slots = slots.iter();
    for segment in &template.segments {
        match segment {
            Segment::Text(t) => text.push_str(t),
            Segment::Param(p) => {
                let start = text.len();
                text.extend(utf8_percent_encode(&value_of(p), COMPONENT));
                if slots.next() == Some(&UrlSlot::Path) {
                    path_values.push((p.as_str(), start..text.len()));
                }
            }
        }
    }
    (text, path_values)
}

/// The path segment of `text` around `range` (a value placed in the path). Encoded values hold
/// no delimiter, so the segment's ends are the template's own `/`, `?` or `#`.
fn enclosing_segment(text: &str, range: Range<usize>) -> &str {
    let start = text[..range.start].rfind(['/', '\\']).map_or(0, |i| i + 1);
    let end = text[range.end..].find(['/', '\\', '?', '#']).map_or(text.len(), |i| range.end + i);
    &text[start..end]
}

/// The template's text up to its first placeholder, without query or fragment: the origin
/// and the part of the path no value can touch.
fn fixed_prefix(template: &ToolTemplate) -> &str {
    let prefix = template.literal_prefix();
    prefix.find(['?', '#']).map_or(prefix, |i| &prefix[..i])
}

/// Whether `url` keeps the fixed path: starts with it when a value stands in the path, equals it otherwise.
fn path_keeps_prefix(url: &Url, fixed: &Url, path_has_values: bool) -> bool {
    if path_has_values {
        url.path().starts_with(fixed.path())
    } else {
        url.path() == fixed.path()
    }
}

fn segments(url: &Url) -> usize {
    url.path_segments().map_or(0, Iterator::count)
}

fn params(url: &Url) -> usize {
    url.query().map_or(0, |q| q.split('&').count())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The URL for `template` with every parameter set to `value`, or the refusal.
    fn check(template: &str, value: &str) -> Result<String, String> {
        let t = ToolTemplate::parse(template).map_err(|e| e.to_string())?;
        build(&t, |_| value.to_string()).map(|u| u.to_string())
    }

    #[test]
    fn path_values_stay_inside_their_segment() {
        assert_eq!(check("http://h/api/{p}/x", "../admin").unwrap(), "http://h/api/..%2Fadmin/x");
        assert_eq!(check("http://h/api/{p}/x", "a?b#c%d\\e").unwrap(), "http://h/api/a%3Fb%23c%25d%5Ce/x");
        assert_eq!(check("http://h/api/{p}", "//evil.example/").unwrap(), "http://h/api/%2F%2Fevil.example%2F");
        assert_eq!(check("http://h/api/v{p}", ".").unwrap(), "http://h/api/v.");
    }

    #[test]
    fn values_that_make_a_dot_or_empty_segment_are_refused() {
        for (template, value) in
            [("http://h/api/{p}/x", ".."), ("http://h/api/{p}/x", "."), ("http://h/api/.{p}/x", "."), ("http://h/a/%2e{p}", "."), ("http://h/a/{p}", "")]
        {
            let err = check(template, value).unwrap_err();
            assert!(err.contains("the value of `p`"), "{template} with {value:?}: {err}");
        }
    }

    #[test]
    fn query_values_cannot_add_parameters_or_end_the_query() {
        assert_eq!(check("http://h/s?q={p}&n=1", "x&admin=1#f+g h").unwrap(), "http://h/s?q=x%26admin%3D1%23f%2Bg%20h&n=1");
        assert_eq!(check("http://h/s?q={p}", "é\u{0}\n").unwrap(), "http://h/s?q=%C3%A9%00%0A");
    }

    #[test]
    fn placeholders_in_the_origin_are_refused() {
        for template in ["http://{p}/x", "http://h:{p}/x", "http://{p}@h/x", "http://h{p}", "{p}/x"] {
            assert!(check(template, "evil.example").is_err(), "{template}");
        }
    }

    #[test]
    fn the_shape_check_catches_a_template_that_climbs_by_itself() {
        // The template's own `..` is applied by the URL parser, and is the author's choice: the
        // fixed prefix is what the parser makes of it, so this passes.
        assert_eq!(check("http://h/a/../b/{p}", "x").unwrap(), "http://h/b/x");
    }

    #[test]
    fn very_long_values_are_encoded_not_truncated() {
        let long = "ü".repeat(100_000);
        let url = check("http://h/s?q={p}", &long).unwrap();
        assert_eq!(url.len(), "http://h/s?q=".len() + 100_000 * 6);
    }
}
