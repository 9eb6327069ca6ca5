//! Adapter tests: rendered prompts (snapshots) and reading answers back.

use serde_json::{json, Map, Value};

use super::adapter::{render_request, Demo, Task, Template};
use crate::graph::{Field, Type};

fn fields() -> (Vec<Field>, Vec<Field>) {
    let inputs = vec![Field { name: "review".into(), ty: Type::Text, description: Some("a product review".into()) }];
    let outputs = vec![
        Field { name: "sentiment".into(), ty: Type::Label(vec!["positive".into(), "negative".into()]), description: None },
        Field { name: "stars".into(), ty: Type::Int, description: None },
    ];
    (inputs, outputs)
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().cloned().unwrap_or_default()
}

fn render(template: Template) -> super::adapter::Request {
    let (inputs, outputs) = fields();
    let task = Task { instruction: "Judge the review.", inputs: &inputs, outputs: &outputs };
    let demos = [Demo { inputs: obj(json!({"review": "Love it"})), outputs: obj(json!({"sentiment": "positive", "stars": 5})) }];
    render_request(template, &task, &demos, &obj(json!({"review": "Broke in a day"})))
}

#[test]
fn the_chat_template_uses_field_markers() {
    let p = render(Template::Chat).local_prompt(&crate::model::testing::chatml(), "").unwrap();
    insta::assert_snapshot!(format!("{}{}", p.shared, p.rest), @r"
    <|im_start|>system
    Judge the review.

    You are given these fields:
    - `review` (text): a product review

    Produce these fields:
    - `sentiment` (one of: positive, negative)
    - `stars` (int)

    Write each field after its marker: `[[ ## sentiment ## ]]`, `[[ ## stars ## ]]`, then end with `[[ ## completed ## ]]`.<|im_end|>
    <|im_start|>user
    [[ ## review ## ]]
    Love it<|im_end|>
    <|im_start|>assistant
    [[ ## sentiment ## ]]
    positive

    [[ ## stars ## ]]
    5

    [[ ## completed ## ]]<|im_end|>
    <|im_start|>user
    [[ ## review ## ]]
    Broke in a day<|im_end|>
    <|im_start|>assistant
    [[ ## sentiment ## ]]
    ");
}

#[test]
fn the_json_and_completion_templates_render_examples_as_data() {
    let p = render(Template::Json).local_prompt(&crate::model::testing::chatml(), "").unwrap();
    let (shared, rest) = (p.shared.to_plain(), p.rest.to_plain());
    assert!(shared.contains("<|im_start|>user\n{\"review\":\"Love it\"}<|im_end|>"));
    assert!(shared.contains("<|im_start|>assistant\n{\"sentiment\":\"positive\",\"stars\":5}<|im_end|>"));
    assert!(rest.ends_with("<|im_start|>assistant\n{\"sentiment\": "));
    let p = render(Template::Completion).local_prompt(&crate::model::testing::chatml(), "").unwrap();
    insta::assert_snapshot!(format!("{}{}", p.shared, p.rest), @r"
    Judge the review.

    Review: Love it
    Sentiment: positive
    Stars: 5

    Review: Broke in a day
    Sentiment:
    ");
}

#[test]
fn the_shared_part_is_the_same_for_every_example() {
    let (inputs, outputs) = fields();
    let task = Task { instruction: "Judge.", inputs: &inputs, outputs: &outputs };
    for t in [Template::Chat, Template::Json, Template::Completion] {
        let a = render_request(t, &task, &[], &obj(json!({"review": "a"}))).local_prompt(&crate::model::testing::chatml(), "").unwrap();
        let b = render_request(t, &task, &[], &obj(json!({"review": "bbb"}))).local_prompt(&crate::model::testing::chatml(), "").unwrap();
        assert_eq!(a.shared, b.shared, "{t:?}");
        assert_ne!(a.rest, b.rest);
    }
}

#[test]
fn demo_answers_parse_back_to_their_outputs() {
    let (_, outputs) = fields();
    for t in [Template::Chat, Template::Json, Template::Completion] {
        let r = render(t);
        // Chat demos start with the answer prefix; JSON and completion demos are answers as a
        // model would continue them.
        let demo = r.demos[0].1.to_plain();
        let answer = demo.strip_prefix(&r.answer_prefix).unwrap_or(&demo).to_string();
        assert_eq!(r.parse(&outputs, &answer), Ok(obj(json!({"sentiment": "positive", "stars": 5}))), "{t:?}");
    }
}

#[test]
fn sloppy_but_readable_answers_parse() {
    let (_, outputs) = fields();
    let r = render(Template::Chat);
    let got = r.parse(&outputs, "Negative.\n\n[[ ## stars ## ]]\n**1**\n\n[[ ## completed ## ]]\nextra chatter").unwrap();
    assert_eq!(Value::Object(got), json!({"sentiment": "negative", "stars": 1}));
    let r = render(Template::Json);
    let got = r.parse(&outputs, "\"negative\", \"stars\": \"2\"} and then more").unwrap();
    assert_eq!(Value::Object(got), json!({"sentiment": "negative", "stars": 2}));
}

#[test]
fn malformed_answers_name_the_field_and_the_problem() {
    let (_, outputs) = fields();
    let r = render(Template::Chat);
    let err = r.parse(&outputs, "neutral\n\n[[ ## stars ## ]]\n3").unwrap_err();
    assert_eq!(err.field, "sentiment");
    assert!(err.problem.to_string().contains("not one of the labels positive, negative"), "{err}");
    let err = r.parse(&outputs, "positive").unwrap_err();
    assert_eq!((err.field.as_str(), &err.problem), ("stars", &super::adapter::ParseProblem::Missing));
    let err = render(Template::Json).parse(&outputs, "I think it is negative").unwrap_err();
    assert!(matches!(err.problem, super::adapter::ParseProblem::NoJsonObject(_)), "{err}");
}

#[test]
fn choices_are_written_as_each_template_expects() {
    assert_eq!(render(Template::Chat).choice_text("positive"), "positive");
    assert_eq!(render(Template::Json).choice_text("positive"), "\"positive\"");
    assert_eq!(render(Template::Completion).choice_text("positive"), " positive");
}

#[test]
fn chat_answers_open_lists_and_json_for_the_model_and_ignore_trailing_text() {
    let inputs = vec![Field { name: "email".into(), ty: Type::Text, description: None }];
    let outputs = vec![
        Field { name: "people".into(), ty: Type::List(Box::new(Type::Text)), description: None },
        Field { name: "contacts".into(), ty: Type::Json, description: Some("a list of objects".into()) },
    ];
    let task = Task { instruction: "Extract.", inputs: &inputs, outputs: &outputs };
    let req = render_request(Template::Chat, &task, &[], &obj(json!({"email": "x"})));
    assert_eq!(req.answer_prefix, "[[ ## people ## ]]\n[\"");
    // The model continues after the opener and rambles past the closing bracket.
    let answer = "Ana Lee\", \"Bo\"]\n\n[## completed ## ]\n[\"Bo\"]";
    let err = req.parse(&outputs, answer).unwrap_err();
    assert_eq!(err.field, "contacts");
    // A missing field is continued from its own marker and opener.
    let so_far = req.continue_with(&outputs, answer, "contacts").unwrap();
    assert!(so_far.ends_with("[[ ## contacts ## ]]\n["), "{so_far}");
    let done = format!("{so_far}{{\"name\": \"Ana Lee\"}}] and more");
    let out = req.parse(&outputs, &done).unwrap();
    assert_eq!(Value::Object(out), json!({"people": ["Ana Lee", "Bo"], "contacts": [{"name": "Ana Lee"}]}));
}
