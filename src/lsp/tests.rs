//! The server's answers on half-written text, as editors send it on every keystroke: for
//! mutated programs, every question at every position (hover, definition, references,
//! rename, completion, quick fixes, symbols, semantic tokens, lenses) is answered without a
//! panic, with ranges inside the text, and positions survive the round trip through every
//! encoding.

use proptest::prelude::*;

use super::analysis::Analysis;
use super::position::{Encoding, Positions};
use super::{actions, completion, hover, navigate, runner, symbols, tokens};
use crate::syntax::Span;

const SEED: &str = "program triage \"Route tickets 🚀\"\n\
    input ticket: text \"the message\"\n\
    output category: label(billing, \"bug report\")\n\
    model default = onnx(\"smollm2-135m-instruct\") { max_tokens: 8 }\n\
    tool kb(query: text) -> text = http GET \"http://127.0.0.1:9/s?q={query}\"\n\
    signature Classify \"Classify it.\" {\n  in ticket: text\n  in notes: text\n  out category: label(billing, \"bug report\")\n}\n\
    step notes = call kb { query: input.ticket }\n\
    step classify = chain_of_thought Classify { ticket: input.ticket, notes: notes.result }\n\
    return { category: classify.category }\n\
    metric ok = exact(output.category, example.category)\n\
    optimize bootstrap_random_search { metric: ok, templates: [chat] }\n\
    feedback rating: int(1..5)\n\
    example e \"é\" held_out {\n  input { ticket: \"\"\"\n    two\n    lines\n  \"\"\" }\n  output { category: billing }\n}\n";

const TOKENS: [&str; 24] = [
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    ":",
    ",",
    ".",
    "=",
    "\"",
    "\"\"\"",
    "//",
    "\n",
    "é",
    "🚀",
    "input.",
    "classify.",
    "example",
    "held_out",
    "step",
    "label(",
    "list<",
    "->",
];

fn boundary(s: &str, i: usize) -> usize {
    let mut i = i % (s.len() + 1);
    while !s.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn in_bounds(span: Span, text: &str) {
    assert!(span.fits(text.len()), "{:?} outside {} bytes", span.range(), text.len());
}

/// Every question at every character boundary of `text`.
fn ask_everything(text: &str) {
    let a = Analysis::new(text.to_string());
    let names = Analysis::new(SEED.to_string()).index;
    for e in [Encoding::Utf8, Encoding::Utf16, Encoding::Utf32] {
        let p = Positions::new(&a.text, &a.lines, e);
        for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
            assert_eq!(p.offset(p.position(offset)), offset, "{e:?}");
        }
        let _ = tokens::encode(&a, &p);
        let _ = symbols::outline(&a, &p);
        let _ = runner::lenses(&a, "file:///x.loop", &p);
    }
    for (offset, _) in text.char_indices().chain([(text.len(), ' ')]) {
        if let Some((_, span)) = hover::hover(&a, offset) {
            in_bounds(span, text);
        }
        navigate::definition(&a, offset).into_iter().for_each(|s| in_bounds(s, text));
        navigate::references(&a, offset, true).into_iter().for_each(|s| in_bounds(s, text));
        if let Ok(spans) = navigate::rename(&a, offset, "renamed") {
            spans.into_iter().for_each(|s| in_bounds(s, text));
        }
        let _ = completion::complete(&a, &names, offset);
        let _ = completion::complete(&a, &a.index, offset);
    }
    for fix in actions::fixes(&a, Span::new(0, text.len())) {
        in_bounds(fix.span, text);
    }
}

#[test]
fn the_seed_program_checks_and_is_answered_everywhere() {
    let a = Analysis::new(SEED.to_string());
    assert!(a.diagnostics.is_empty(), "{:?}", a.diagnostics);
    ask_everything(SEED);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn half_written_programs_are_answered_at_every_position(edits in prop::collection::vec((any::<usize>(), 0..TOKENS.len(), 0usize..6), 1..6)) {
        let mut text = SEED.to_string();
        for (at, token, delete) in edits {
            let a = boundary(&text, at);
            let b = boundary(&text, (a + delete).min(text.len())).max(a);
            text.replace_range(a..b, TOKENS[token]);
        }
        ask_everything(&text);
    }
}
