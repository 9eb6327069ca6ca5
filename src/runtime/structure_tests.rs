//! Tests of answer grammars: each is compiled by llguidance over a one-byte-per-token
//! vocabulary and fed answers byte by byte, so a test says exactly which texts a grammar
//! lets a model write.

use super::*;
use crate::graph::{Format, TextRule};
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::ApproximateTokEnv;
use llguidance::{Matcher, ParserFactory};

fn field(name: &str, ty: Type) -> Field {
    Field { name: name.into(), ty, description: None }
}

fn email() -> Type {
    Type::Constrained(TextRule::new(Some(Format::Email), None, None, None).expect("compiles"))
}

fn list(t: Type) -> Type {
    Type::List(Box::new(t))
}

/// Whether `grammar` accepts `text` as a whole answer.
fn accepts(grammar: &Grammar, text: &str) -> bool {
    let env = ApproximateTokEnv::single_byte_env();
    let mut factory = ParserFactory::new_simple(&env).expect("factory");
    factory.quiet();
    let parser = factory.create_parser(TopLevelGrammar::from_lark(grammar.text().to_string()));
    let parser = match parser {
        Ok(p) => p,
        Err(e) => panic!("grammar does not compile: {e}\n{}", grammar.text()),
    };
    let mut m = Matcher::new(Ok(parser));
    let tokens: Vec<u32> = text.bytes().map(u32::from).collect();
    m.consume_tokens(&tokens).is_ok() && m.is_accepting().unwrap_or(false)
}

#[test]
fn chat_answers_are_every_field_in_order_with_markers_only_where_they_belong() {
    let outputs = [field("people", list(Type::Text)), field("addresses", list(email())), field("has_deadline", Type::Bool)];
    let g = grammar(Template::Chat, &outputs, &Map::new());
    let good = "[\"Ann Lee\",\"Bo Chen\"]\n\n[[ ## addresses ## ]]\n[\"ann@example.com\"]\n\n[[ ## has_deadline ## ]]\ntrue\n\n[[ ## completed ## ]]";
    assert!(accepts(&g, good), "{}", g.text());
    assert!(accepts(&g, "[]\n\n[[ ## addresses ## ]]\n[]\n\n[[ ## has_deadline ## ]]\nfalse\n\n[[ ## completed ## ]]"));
    // What the unconstrained model wrote (issue 20): none of it fits.
    for junk in [
        "[\"#\"]\n\n[[ ## addresses ## ]]\n[\"#\"]\n\n[[ ## has_deadline ## ]]\ntrue\n\n[[ ## completed ## ]]",
        "[\"## people ##\"]\n\n[[ ## addresses ## ]]\n[]\n\n[[ ## has_deadline ## ]]\ntrue\n\n[[ ## completed ## ]]",
        "[]\n\n[[ ## addresses ## ]]\n[\"David Okafor and Lena Fischer\"]\n\n[[ ## has_deadline ## ]]\ntrue\n\n[[ ## completed ## ]]",
        // Fields out of order, or one missing.
        "[]\n\n[[ ## has_deadline ## ]]\ntrue\n\n[[ ## completed ## ]]",
        "[]\n\n[[ ## addresses ## ]]\n[]\n\n[[ ## completed ## ]]",
    ] {
        assert!(!accepts(&g, junk), "{junk:?}");
    }
}

#[test]
fn chat_text_values_span_lines_but_cannot_hold_a_marker() {
    let g = grammar(Template::Chat, &[field("reasoning", Type::Text), field("answer", Type::Int)], &Map::new());
    assert!(accepts(&g, "First this.\n\nThen that [1].\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "so [[ ## answer ## ]]\n7\n\n[[ ## answer ## ]]\n42\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "fine\n\n[[ ## answer ## ]]\n4.5\n\n[[ ## completed ## ]]"));
}

#[test]
fn labels_numbers_and_constrained_text_are_written_raw_in_chat() {
    let code = Type::Constrained(TextRule::new(None, Some("[A-Z]{3}-[0-9]{4}".into()), None, None).expect("compiles"));
    let outputs = [field("team", Type::Label(vec!["billing".into(), "tech support".into()])), field("score", Type::Float), field("code", code)];
    let g = grammar(Template::Chat, &outputs, &Map::new());
    assert!(accepts(&g, "tech support\n\n[[ ## score ## ]]\n-0.5e3\n\n[[ ## code ## ]]\nABC-1234\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "sales\n\n[[ ## score ## ]]\n1\n\n[[ ## code ## ]]\nABC-1234\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "billing\n\n[[ ## score ## ]]\n1\n\n[[ ## code ## ]]\nabc-1234\n\n[[ ## completed ## ]]"));
}

#[test]
fn json_answers_are_one_compact_object_in_field_order() {
    let outputs = [field("name", Type::Text), field("tags", list(Type::Label(vec!["a".into(), "b".into()]))), field("n", Type::Int)];
    let g = grammar(Template::Json, &outputs, &Map::new());
    assert!(accepts(&g, "{\"name\":\"Ann \\\"A\\\" Lee\",\"tags\":[\"a\",\"b\"],\"n\":3}"));
    assert!(!accepts(&g, "{\"tags\":[\"a\"],\"name\":\"x\",\"n\":3}"));
    assert!(!accepts(&g, "{\"name\":\"x\",\"tags\":[\"c\"],\"n\":3}"));
    assert!(!accepts(&g, "{\"name\":\"x\",\"tags\":[],\"n\":3,\"extra\":1}"));
}

#[test]
fn completion_answers_are_one_line_per_field() {
    let outputs = [field("summary", Type::Text), field("site", Type::Constrained(TextRule::new(Some(Format::Url), None, None, Some(40)).expect("compiles")))];
    let g = grammar(Template::Completion, &outputs, &Map::new());
    assert!(accepts(&g, " A short summary.\nSite: https://example.com/a"));
    assert!(!accepts(&g, " Two\nlines.\nSite: https://example.com/a"));
    assert!(!accepts(&g, " ok\nSite: https://example.com/a-very-long-path-that-goes-past-forty"));
}

#[test]
fn json_values_take_any_compact_json() {
    let g = grammar(Template::Chat, &[field("data", Type::Json)], &Map::new());
    assert!(accepts(&g, "{\"a\":[1,true,null]}\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "{a: 1}\n\n[[ ## completed ## ]]"));
}

#[test]
fn schemas_list_every_field_in_order_with_labels_as_enums_and_constraints() {
    let outputs = [field("emotion", Type::Label(vec!["joy".into(), "anger".into()])), field("to", list(email()))];
    let s = schema(&outputs);
    assert_eq!(s["required"], json!(["emotion", "to"]));
    assert_eq!(s["properties"]["emotion"]["enum"], json!(["joy", "anger"]));
    assert_eq!(s["properties"]["to"]["items"]["format"], json!("email"));
    assert!(s["properties"]["to"]["items"]["pattern"].as_str().is_some_and(|p| p.starts_with("^(?:")));
    let keys: Vec<&String> = s["properties"].as_object().map(|o| o.keys().collect()).unwrap_or_default();
    assert_eq!(keys, ["emotion", "to"], "properties keep the declared order");
}

#[test]
fn text_from_an_input_is_quoted_from_it_word_by_word() {
    let quoted = Type::Constrained(TextRule::new(Some(Format::Email), None, None, None).expect("compiles").with_source("email", Default::default()));
    let outputs = [field("to", list(quoted))];
    let inputs: Map<String, Value> = json!({"email": "Write to (david.okafor@northwind.io) or ann@example.com."}).as_object().cloned().unwrap_or_default();
    let g = grammar(Template::Chat, &outputs, &inputs);
    assert!(accepts(&g, "[\"david.okafor@northwind.io\",\"ann@example.com\"]\n\n[[ ## completed ## ]]"), "{}", g.text());
    assert!(accepts(&g, "[]\n\n[[ ## completed ## ]]"));
    // A real address that is not in the email, or one cut inside a word, cannot be written.
    assert!(!accepts(&g, "[\"sam.lopez@northwind.io\"]\n\n[[ ## completed ## ]]"));
    assert!(!accepts(&g, "[\"avid.okafor@northwind.io\"]\n\n[[ ## completed ## ]]"));
    let values: Map<String, Value> = json!({"to": ["sam.lopez@northwind.io"]}).as_object().cloned().unwrap_or_default();
    let err = check_sources(&outputs, &values, &inputs).expect_err("not in the email");
    assert!(err.to_string().contains("does not occur in `email`"), "{err}");
}
