//! Rendering prompt text through a Jinja template without losing what is data.
//!
//! Each turn's content goes into the template as a sentinel (private-use characters that no
//! template writes), wrapped in whitespace probes; the rendered text is then read back as the
//! template's own text (markup) with each sentinel replaced by its turn's pieces. A probe the
//! template removed (`content | trim`) means the content is trimmed on that side too.
//!
//! The shared part is found by rendering twice, the later turns' sentinels differing between
//! the two: the longest common prefix is the text the shared turns fix, whatever follows.

use super::super::error::ModelError;
use super::super::text::PromptText;
use super::{Jinja, Role};

const OPEN: char = '\u{F8F0}';
const CLOSE: char = '\u{F8F1}';
/// Whitespace around each sentinel, distinctive enough that a template's own text does not
/// end or start with it.
const PROBE_LEFT: &str = " \t\n";
const PROBE_RIGHT: &str = "\n\t ";

fn sentinel(turn: usize, variant: char) -> String {
    format!("{OPEN}{variant}{turn}{CLOSE}")
}

/// One part of a rendered template.
#[derive(Debug, PartialEq)]
enum Part {
    /// The template's own text.
    Markup(String),
    /// A turn's content, trimmed on the left and right or not.
    Content { turn: usize, trim_left: bool, trim_right: bool },
}

/// Each turn's content as the template sees it, in the two renderings: sentinels in probes,
/// the later turns' (from `shared` on) differing between the two.
fn contents(turns: &[(Role, &PromptText)], shared: usize) -> Vec<(Role, [String; 2])> {
    turns
        .iter()
        .enumerate()
        .map(|(i, (role, _))| {
            let variant = |v: char| format!("{PROBE_LEFT}{}{PROBE_RIGHT}", sentinel(i, if i < shared { 'a' } else { v }));
            (*role, [variant('a'), variant('b')])
        })
        .collect()
}

/// The messages with the system turn folded into the first user turn.
fn fold_system(messages: &[(Role, [String; 2])]) -> Option<Vec<(Role, [String; 2])>> {
    let (first, rest) = messages.split_first()?;
    if first.0 != Role::System {
        return None;
    }
    let user = rest.iter().position(|(r, _)| *r == Role::User)?;
    let mut out: Vec<(Role, [String; 2])> = rest.to_vec();
    for v in 0..2 {
        out[user].1[v] = format!("{}\n\n{}", first.1[v].trim_end_matches(PROBE_RIGHT), out[user].1[v].trim_start_matches(PROBE_LEFT));
    }
    Some(out)
}

/// Renders `turns` with the assistant's turn opened; see the module doc.
pub fn render(jinja: &Jinja, turns: &[(Role, &PromptText)], shared: usize) -> Result<(PromptText, PromptText), ModelError> {
    let messages = contents(turns, shared);
    let pick = |msgs: &[(Role, [String; 2])], v: usize| msgs.iter().map(|(r, c)| (*r, c[v].clone())).collect::<Vec<_>>();
    let (a, b) = match jinja.render(&pick(&messages, 0), true) {
        Ok(a) => (a, jinja.render(&pick(&messages, 1), true)?),
        Err(first) => match fold_system(&messages) {
            Some(folded) => match jinja.render(&pick(&folded, 0), true) {
                Ok(a) => (a, jinja.render(&pick(&folded, 1), true)?),
                Err(_) => return Err(first),
            },
            None => return Err(first),
        },
    };
    let parts = parse(&a)?;
    if let Some(last_user) = turns.iter().rposition(|(r, _)| *r == Role::User) {
        if !parts.iter().any(|(p, _)| matches!(p, Part::Content { turn, .. } if *turn == last_user)) {
            return Err(ModelError::ChatTemplate("the chat template leaves out the last user message".into()));
        }
    }
    let cut = common_prefix(&a, &b);
    let (mut shared_text, mut rest_text) = (PromptText::new(), PromptText::new());
    let mut at = 0;
    for (part, len) in parts {
        let (start, end) = (at, at + len);
        at = end;
        match part {
            Part::Markup(text) if start < cut && cut < end => {
                let k = cut - start;
                shared_text.push_markup(&text[..k]);
                rest_text.push_markup(&text[k..]);
            }
            Part::Markup(text) => {
                let target = if end <= cut { &mut shared_text } else { &mut rest_text };
                target.push_markup(&text);
            }
            Part::Content { turn, trim_left, trim_right } => {
                let target = if end <= cut { &mut shared_text } else { &mut rest_text };
                let content = turns.get(turn).ok_or_else(|| ModelError::ChatTemplate("the chat template changed a message's text".into()))?;
                target.append(&content.1.trimmed(trim_left, trim_right));
            }
        }
    }
    Ok((shared_text, rest_text))
}

/// The byte length of the longest common prefix of `a` and `b`, at a character boundary.
fn common_prefix(a: &str, b: &str) -> usize {
    a.char_indices().zip(b.chars()).find(|((_, x), y)| x != y).map_or(a.len().min(b.len()), |((i, _), _)| i)
}

/// Reads rendered text back into parts, each with its byte length in the rendered text (a
/// content part's length covers its sentinel and whatever probe whitespace is left).
fn parse(rendered: &str) -> Result<Vec<(Part, usize)>, ModelError> {
    let mut parts = Vec::new();
    let mut rest = rendered;
    while let Some(open) = rest.find(OPEN) {
        let close =
            rest[open..].find(CLOSE).map(|c| open + c).ok_or_else(|| ModelError::ChatTemplate("the chat template cut a message's text apart".into()))?;
        let inner = &rest[open + OPEN.len_utf8()..close];
        let turn: usize =
            inner.get(1..).and_then(|n| n.parse().ok()).ok_or_else(|| ModelError::ChatTemplate("the chat template changed a message's text".into()))?;
        let before = &rest[..open];
        let after = &rest[close + CLOSE.len_utf8()..];
        let kept_left = before.ends_with(PROBE_LEFT);
        let kept_right = after.starts_with(PROBE_RIGHT);
        let markup = if kept_left { &before[..before.len() - PROBE_LEFT.len()] } else { before };
        if !markup.is_empty() {
            parts.push((Part::Markup(markup.to_string()), markup.len()));
        }
        let probe_len = if kept_left { PROBE_LEFT.len() } else { 0 } + if kept_right { PROBE_RIGHT.len() } else { 0 };
        parts.push((Part::Content { turn, trim_left: !kept_left, trim_right: !kept_right }, close + CLOSE.len_utf8() - open + probe_len));
        rest = if kept_right { &after[PROBE_RIGHT.len()..] } else { after };
    }
    if !rest.is_empty() {
        parts.push((Part::Markup(rest.to_string()), rest.len()));
    }
    Ok(parts)
}
