//! Parser and formatter tests. `parse_ok` and `parse_err` are the only helpers touching the
//! API; each test is data.

use super::ast::*;
use super::{format_source, parse, LineIndex};

fn parse_ok(src: &str) -> File {
    match parse(src) {
        Ok(f) => f,
        Err(d) => panic!("expected to parse, got {d:?}"),
    }
}

/// Parses `src`, expecting a syntax error; returns "line:col message".
fn parse_err(src: &str) -> String {
    let d = parse(src).expect_err("expected a syntax error");
    assert!(d.span.fits(src.len()), "span {:?} outside the text", d.span.range());
    let lc = LineIndex::new(src).line_col(src, d.span.start);
    format!("{}:{} {}", lc.line, lc.col, d.message)
}

const EVERY_CONSTRUCT: &str = r#"
// A file with every construct of the language.
program everything "Uses every construct" // trailing comment

input ticket: text "the message"
input count: int
input ratio: float
input urgent: bool
input meta: json
output category: label(billing, "needs review", other)
output tags: list<list<text>>

model default = onnx("smollm2-135m-instruct") { temperature: 0.0, max_tokens: 96, stop: ["\n\n"] }
model remote = openai("http://127.0.0.1:8000/v1", "gpt-x") { api_key_env: "KEY", top_p: 0.9, top_k: 40, seed: 7 }

tool kb(query: text, limit: int) -> text = http GET "http://127.0.0.1:8080/q?q={query}&n={limit}" { timeout_ms: 2000 }
tool wc(text: text) -> int = command ["wc", "-w"] { stdin: "{text}" }

signature Classify """
    Classify the ticket.
      Indented line.
""" {
  in ticket: text "the customer's message"
  out category: label(billing, "needs review", other)
}

step classify = predict Classify { ticket: input.ticket } using remote
step notes = call kb { query: input.ticket, limit: 3 }
step think = chain_of_thought Classify { ticket: notes.result, }

return { category: classify.category, tags: think.category }

metric ok = exact(output.category, example.category)
metric close = numeric(output.count, example.count, tolerance: 0.5)
optimize instruction_search { metric: ok, templates: [chat, json], seed: 1, max_seconds: 60 }
"#;

#[test]
fn every_construct_parses_into_the_expected_tree() {
    let f = parse_ok(EVERY_CONSTRUCT);
    assert_eq!(f.header.name.name, "everything");
    assert_eq!(f.header.description.as_ref().unwrap().value, "Uses every construct");
    assert_eq!(f.items.len(), 19);

    let Item::Output(cat) = &f.items[5] else { panic!("{:?}", f.items[5]) };
    let TypeKind::Label(labels) = &cat.ty.kind else { panic!() };
    let labels: Vec<&str> = labels.iter().map(|l| l.value.as_str()).collect();
    assert_eq!(labels, ["billing", "needs review", "other"]);

    let Item::Output(tags) = &f.items[6] else { panic!() };
    let TypeKind::List(inner) = &tags.ty.kind else { panic!() };
    assert!(matches!(&inner.kind, TypeKind::List(t) if t.kind == TypeKind::Named("text".into())));

    let Item::Model(m) = &f.items[7] else { panic!() };
    assert_eq!((m.provider.name.as_str(), m.args[0].value.as_str()), ("onnx", "smollm2-135m-instruct"));
    assert_eq!(m.config.entries[2].value.kind, ValueKind::List(vec![Value { kind: ValueKind::Str("\n\n".into()), span: Default::default() }]));

    let Item::Tool(t) = &f.items[9] else { panic!() };
    assert_eq!(t.params.len(), 2);
    assert!(matches!(&t.implementation, ToolImpl::Http { method, .. } if method.name == "GET"));
    let Item::Tool(t) = &f.items[10] else { panic!() };
    assert!(matches!(&t.implementation, ToolImpl::Command { argv } if argv.len() == 2));

    let Item::Signature(s) = &f.items[11] else { panic!() };
    assert_eq!(s.instruction.as_ref().unwrap().value, "Classify the ticket.\n  Indented line.");
    assert_eq!(s.fields[0].direction, Direction::In);
    assert_eq!(s.fields[1].direction, Direction::Out);

    let Item::Step(st) = &f.items[12] else { panic!() };
    assert_eq!((st.kind, st.target.name.as_str()), (StepKind::Predict, "Classify"));
    assert_eq!(st.model.as_ref().unwrap().name, "remote");
    let Item::Step(st) = &f.items[13] else { panic!() };
    assert_eq!(st.kind, StepKind::Call);
    assert_eq!(st.bindings[1].value.kind, ValueKind::Int(3));
    let Item::Step(st) = &f.items[14] else { panic!() };
    assert_eq!(st.kind, StepKind::ChainOfThought);

    let Item::Metric(m) = &f.items[17] else { panic!() };
    assert_eq!(m.args[2].name.as_ref().unwrap().name, "tolerance");
    assert_eq!(m.args[2].value.kind, ValueKind::Float(0.5));
    let Item::Optimize(o) = &f.items[18] else { panic!() };
    assert_eq!(o.optimizer.name, "instruction_search");
}

#[test]
fn spans_cover_exactly_the_written_text() {
    let src = "program p\ninput  x: text   // note\n\noutput y: text\n";
    let f = parse_ok(src);
    assert_eq!(&src[f.items[0].span().range()], "input  x: text");
    let Item::Input(x) = &f.items[0] else { panic!() };
    assert_eq!(&src[x.name.span.range()], "x");
}

#[test]
fn string_escapes_are_resolved() {
    let f = parse_ok(r#"program p "tab\there \"q\" \\ \u{1F680} \n""#);
    assert_eq!(f.header.description.unwrap().value, "tab\there \"q\" \\ 🚀 \n");
}

#[test]
fn numbers_keep_their_kind() {
    let f = parse_ok("program p\noptimize x { a: 3, b: -2, c: 0.5, d: 1e-3, e: true }");
    let Item::Optimize(o) = &f.items[0] else { panic!() };
    let kinds: Vec<&ValueKind> = o.config.entries.iter().map(|e| &e.value.kind).collect();
    assert_eq!(kinds, [&ValueKind::Int(3), &ValueKind::Int(-2), &ValueKind::Float(0.5), &ValueKind::Float(1e-3), &ValueKind::Bool(true)]);
}

#[test]
fn keywords_are_whole_words() {
    // `inputs` is not `input s`, and a step may be called `predictor`.
    let f = parse_ok("program p\noutput inputs: text\nstep predictor = predict S {}");
    assert!(matches!(&f.items[1], Item::Step(s) if s.name.name == "predictor"));
    assert!(parse("program p\ninputx: text").is_err());
}

#[test]
fn syntax_errors_point_at_the_offending_token() {
    let cases = [
        ("input q: text\n", "1:1 expected `program`, found `input`"),
        ("program p\nstep s = predcit S {}\n", "2:10 expected `call`, `chain_of_thought` or `predict`, found `predcit`"),
        ("program p \"open\n", "1:16 expected `\"` or the rest of the string, found the end of the line"),
        ("program p\ninput q text\n", "2:9 expected `:`, found `text`"),
        ("program p\noptimize o { n: 99999999999999999999 }", "2:17 the integer `99999999999999999999` does not fit in 64 bits"),
        ("program p \"\\u{D800}\"", "1:11 this `\\u{...}` escape names no character"),
        // A float that overflows to infinity never reaches a setting such as `temperature`.
        ("program p\nmodel m = onnx(\"x\") { temperature: 1e999 }", "2:36 the number `1e999` is too large"),
        ("program p\nmodel m = onnx(\"x\") { top_p: -1e400 }", "2:30 the number `-1e400` is too large"),
        // A control character is named by its code, not written raw to the terminal.
        ("program p\n\u{1b}[31m", "2:1 expected "),
    ];
    for (src, want) in cases {
        let got = parse_err(src);
        assert!(got.starts_with(want), "for {src:?}\n got: {got}\nwant: {want}");
        assert!(!got.contains('\u{1b}'), "{got:?}");
    }
    assert!(parse_err("program p\n\u{1b}[31m").ends_with("found `\\u{1b}`"));
}

#[test]
fn an_unclosed_brace_is_reported_where_the_next_item_starts() {
    let got = parse_err("program p\nstep s = predict S { x: input.q\nreturn {}\n");
    assert!(got.starts_with("3:1 expected `,`"), "{got}");
    assert!(got.contains("`}`") && got.ends_with("found `return`"), "{got}");
}

#[test]
fn syntax_errors_suggest_the_keyword_meant() {
    let d = parse("program p\nstep s = predcit S {}").unwrap_err();
    assert_eq!(d.hints, ["did you mean `predict`?"]);
}

#[test]
fn formatting_is_idempotent_and_keeps_the_tree_and_comments() {
    let once = format_source(EVERY_CONSTRUCT).unwrap();
    assert_eq!(parse_ok(&once), parse_ok(EVERY_CONSTRUCT));
    assert_eq!(format_source(&once).unwrap(), once);
    for comment in ["// A file with every construct", "// trailing comment"] {
        assert!(once.contains(comment), "lost {comment:?} in\n{once}");
    }
}

#[test]
fn formatting_lays_out_items_canonically() {
    let src = "program   p   \"d\"\ninput a:text output b : label( x,y )\nsignature S { in a: text\n out b: label(x, y) }\nstep s=predict S{a:input.a}\nreturn{b:s.b}";
    let want = "program p \"d\"\n\ninput a: text\noutput b: label(x, y)\n\nsignature S {\n  in a: text\n  out b: label(x, y)\n}\n\nstep s = predict S { a: input.a }\n\nreturn { b: s.b }\n";
    assert_eq!(format_source(src).unwrap(), want);
}

#[test]
fn comments_inside_signatures_stay_with_their_fields() {
    let src = "program p\nsignature S {\n  // what goes in\n  in a: text // the text\n  out b: text\n  // end\n}\n";
    assert_eq!(format_source(src).unwrap(), "program p\n\nsignature S {\n  // what goes in\n  in a: text // the text\n  out b: text\n  // end\n}\n");
}

#[test]
fn example_programs_are_formatted() {
    for (name, src) in crate::syntax::tests::programs() {
        assert_eq!(format_source(src).unwrap(), src, "{name} is not in canonical layout; run `loopc fmt`");
    }
}

/// The example programs shipped in `programs/`.
pub(crate) fn programs() -> [(&'static str, &'static str); 5] {
    [
        ("support_triage", include_str!("../../programs/support_triage.loop")),
        ("sentiment", include_str!("../../programs/sentiment.loop")),
        ("extract_contacts", include_str!("../../programs/extract_contacts.loop")),
        ("qa_cot", include_str!("../../programs/qa_cot.loop")),
        ("word_stats", include_str!("../../programs/word_stats.loop")),
    ]
}

#[test]
fn feedback_declarations_parse_with_their_types_ranges_and_descriptions() {
    let src = "program p\nfeedback thumbs: bool \"useful?\"\nfeedback rating: int(1..5)\nfeedback conf: float(0.5 .. 1.5)\n\
               feedback issue: label(rude, \"too long\")\nfeedback correction \"the right answer\"\nfeedback drift: int(-3..3)\n";
    let f = parse_ok(src);
    assert_eq!(f.items.len(), 6);
    let Item::Feedback(thumbs) = &f.items[0] else { panic!("{:?}", f.items[0]) };
    assert_eq!((thumbs.name.name.as_str(), thumbs.description.as_ref().unwrap().value.as_str()), ("thumbs", "useful?"));
    assert_eq!(thumbs.ty.as_ref().unwrap().kind, TypeKind::Named("bool".into()));
    let Item::Feedback(rating) = &f.items[1] else { panic!() };
    let range = rating.range.as_ref().unwrap();
    assert_eq!((&range.min.kind, &range.max.kind), (&ValueKind::Int(1), &ValueKind::Int(5)));
    assert_eq!(&src[range.span.range()], "(1..5)");
    assert_eq!(&src[rating.span.range()], "feedback rating: int(1..5)");
    let Item::Feedback(conf) = &f.items[2] else { panic!() };
    assert_eq!(conf.range.as_ref().unwrap().min.kind, ValueKind::Float(0.5));
    let Item::Feedback(correction) = &f.items[4] else { panic!() };
    assert!(correction.ty.is_none() && correction.range.is_none());
    let Item::Feedback(drift) = &f.items[5] else { panic!() };
    assert_eq!(drift.range.as_ref().unwrap().min.kind, ValueKind::Int(-3));
    let once = format_source(src).unwrap();
    assert_eq!(parse_ok(&once), f);
    assert_eq!(format_source(&once).unwrap(), once);
    assert!(once.contains("\nfeedback conf: float(0.5..1.5)\n") && once.contains("\nfeedback correction \"the right answer\"\n"), "{once}");
}

#[test]
fn a_half_written_feedback_range_is_a_syntax_error_at_the_gap() {
    let got = parse_err("program p\nfeedback rating: int(1..)\n");
    assert!(got.starts_with("2:25 expected `-` or a number, found `)`"), "{got}");
}

#[test]
fn nesting_beyond_the_limit_is_one_located_error_however_deep() {
    let depth = 100_000;
    let ty = format!("program p\ninput x: {}text{}\n", "list<".repeat(depth), ">".repeat(depth));
    // The 65th `list<` opens one level too many.
    let col = "input x: ".len() + 64 * "list<".len() + "list".len() + 1;
    assert_eq!(parse_err(&ty), format!("2:{col} brackets nest more than 64 deep here"));
    let value = format!("program p\nmodel m = onnx(\"x\") {{ stop: {}{} }}\n", "[".repeat(depth), "]".repeat(depth));
    // The config's `{` is the first level, so the 64th `[` is one too many.
    let col = "model m = onnx(\"x\") { stop: ".len() + 63 + 1;
    assert_eq!(parse_err(&value), format!("2:{col} brackets nest more than 64 deep here"));
}

#[test]
fn a_byte_order_mark_before_the_header_is_allowed_and_invisible_characters_are_named() {
    let f = parse_ok("\u{FEFF}program p\n");
    assert_eq!(f.header.name.name, "p");
    assert_eq!(format_source("\u{FEFF}program p\n").unwrap(), "program p\n", "the formatter drops the mark");
    assert!(parse_err("program p\n\u{FEFF}input x: text").ends_with("found `\\u{feff}`"));
    assert!(parse_err("program p\n\u{202E}input x: text").ends_with("found `\\u{202e}`"));
}

#[test]
fn an_unclosed_long_string_is_reported_where_it_opens() {
    assert_eq!(parse_err("program p\nsignature S \"\"\"\n  no end\n"), "2:13 this `\"\"\"` string is never closed");
    // A closed one followed by a real error is not blamed.
    assert!(parse_err("program p \"\"\"x\"\"\"\n}").starts_with("2:1 expected"));
}

#[test]
fn constrained_types_parse_with_their_constraints_in_order() {
    let f = parse_ok("program p\noutput to: list<text(email, max_length: 80)>\noutput code: text(/[A-Z]{3}\\/[0-9]+/)\n");
    let Item::Output(to) = &f.items[0] else { panic!() };
    let TypeKind::List(inner) = &to.ty.kind else { panic!("{:?}", to.ty) };
    let TypeKind::Constrained { name, constraints } = &inner.kind else { panic!("{inner:?}") };
    assert_eq!(name.name, "text");
    assert_eq!(constraints[0].kind, ConstraintKind::Name("email".into()));
    assert!(matches!(&constraints[1].kind, ConstraintKind::Setting { key, value } if key.name == "max_length" && value.kind == ValueKind::Int(80)));
    let Item::Output(code) = &f.items[1] else { panic!() };
    let TypeKind::Constrained { constraints, .. } = &code.ty.kind else { panic!() };
    assert_eq!(constraints[0].kind, ConstraintKind::Regex("[A-Z]{3}/[0-9]+".into()), "`\\/` is a slash");
    assert_eq!(constraints[0].span.range(), 73..91);
}

#[test]
fn constrained_types_format_back_to_what_was_written() {
    let src = "program p\n\noutput to: list<text(email,max_length:80,)>\noutput code: text( /a\\/b[(]\"/ ) // a comment\n";
    let want = "program p\n\noutput to: list<text(email, max_length: 80)>\noutput code: text(/a\\/b[(]\"/) // a comment\n";
    assert_eq!(format_source(src).unwrap(), want);
    assert_eq!(format_source(want).unwrap(), want);
}

#[test]
fn a_pattern_left_open_is_a_syntax_error_at_its_end() {
    assert_eq!(parse_err("program p\noutput c: text(/[a-z]+)\n"), "2:24 expected `/`, found the end of the line");
}
