//! Checker tests. `check` is the one helper touching the API: it returns each diagnostic as
//! `code line:col message`, so every test states the position it expects.

use super::*;
use crate::syntax::{parse, LineIndex};

pub(super) fn check(src: &str) -> Vec<String> {
    let file = parse(src).unwrap_or_else(|d| panic!("syntax error: {d:?}"));
    let lowered = lower(&file);
    let index = LineIndex::new(src);
    lowered
        .diagnostics
        .iter()
        .map(|d| {
            let lc = index.line_col(src, d.span.start);
            format!("{} {}:{} {}", d.code, lc.line, lc.col, d.message)
        })
        .collect()
}

fn dag(src: &str) -> Dag {
    let lowered = lower(&parse(src).unwrap());
    lowered.dag.unwrap_or_else(|| panic!("invalid: {:?}", lowered.diagnostics))
}

fn hints(src: &str) -> Vec<String> {
    lower(&parse(src).unwrap()).diagnostics.into_iter().flat_map(|d| d.hints).collect()
}

/// A valid program with a signature `S` (in `x: text`, out `y: text`); `extra` is appended.
fn with(extra: &str) -> String {
    format!("program p\ninput q: text\noutput a: text\nsignature S {{ in x: text out y: text }}\n{extra}")
}

#[test]
fn example_programs_check_without_diagnostics() {
    for (name, src) in crate::syntax::tests::programs() {
        assert_eq!(check(src), Vec::<String>::new(), "{name}");
    }
}

#[test]
fn unknown_names_are_reported_with_a_suggestion() {
    let src = with("step classify = predict S { x: input.q }\nstep b = predict S { x: clasify.y }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 6:25 unknown step `clasify`"]);
    assert_eq!(hints(&src), ["did you mean `classify`?"]);

    let src = with("step b = predict Sig { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:18 unknown signature `Sig`"]);
    let src = with("step b = predict S { x: input.qq }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:31 the program has no input `qq`"]);
    let src = with("step b = predict S { x: input.q }\nreturn { a: b.z }");
    assert_eq!(check(&src), ["unknown-name 6:15 step `b` has no output `z`"]);
    let src = with("step b = predict S { x: input.q, w: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:34 `S` has no input `w`"]);
    let src = with("step b = call nothing { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:15 unknown tool `nothing`"]);
    let src = with("step b = predict S { x: input.q } using fast\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:41 unknown model `fast`"]);
    let src = with("input z: strin\nstep b = predict S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unknown-name 5:10 unknown type `strin`"]);
}

#[test]
fn duplicate_names_point_at_the_second_declaration() {
    let src = with("step b = predict S { x: input.q }\nstep b = predict S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["duplicate-name 6:6 the step `b` is declared twice"]);
    let src = with("signature S { in x: text out x: text }\nstep b = predict S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["duplicate-name 5:11 the signature `S` is declared twice", "duplicate-name 5:30 the field `x` is declared twice"]);
    let src = "program p\ninput q: text\noutput q: text\nreturn { q: input.q }";
    assert_eq!(check(src), ["duplicate-name 3:8 `q` is both an input and an output"]);
}

#[test]
fn cycles_name_every_step_on_them() {
    let src = with("step s1 = predict S { x: s3.y }\nstep s2 = predict S { x: s1.y }\nstep s3 = predict S { x: s2.y }\nreturn { a: s3.y }");
    assert_eq!(check(&src), ["cycle 5:1 steps form a cycle: `s1` → `s2` → `s3` → `s1`"]);
    let src = with("step me = predict S { x: me.y }\nreturn { a: me.y }");
    assert_eq!(check(&src), ["cycle 5:1 steps form a cycle: `me` → `me`"]);
}

#[test]
fn type_mismatches_name_both_types() {
    let src = "program p\ninput n: int\noutput a: text\nsignature S { in x: text out y: text }\nstep b = predict S { x: input.n }\nreturn { a: b.y }";
    assert_eq!(check(src), ["type-mismatch 5:25 `input.n` is `int`, but `S` input `x` takes `text`"]);
    let src = "program p\ninput q: text\noutput a: label(x, y)\nsignature S { in x: text out y: text }\nstep b = predict S { x: input.q }\nreturn { a: b.y }";
    assert_eq!(check(src), ["type-mismatch 6:13 `b.y` is `text`, but the program output `a` takes `label(x, y)`"]);
    // A label is text, and an int is a float: these fit.
    let src = "program p\ninput n: int\noutput a: text\nsignature S { in x: float out y: label(u, v) }\nstep b = predict S { x: input.n }\nreturn { a: b.y }";
    assert_eq!(check(src), Vec::<String>::new());
}

#[test]
fn unbound_inputs_and_missing_outputs_are_errors() {
    let src = "program p\ninput q: text\noutput a: text\noutput c: text\nsignature S { in x: text in w: text out y: text }\nstep b = predict S { x: input.q }\nreturn { a: b.y }";
    assert_eq!(check(src), ["unbound-input 6:1 input `w` of `S` is not bound", "missing-output 7:1 output `c` is never produced"]);
    let src = "program p\ninput q: text\noutput a: text\n";
    assert_eq!(check(src), ["missing-output 1:1 the program has no `return`"]);
}

#[test]
fn unused_steps_are_warnings_and_the_program_stays_valid() {
    let src = with("step b = predict S { x: input.q }\nstep spare = predict S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["unused-step 6:6 the results of step `spare` are never used"]);
    assert!(lower(&parse(&src).unwrap()).dag.is_some());
}

#[test]
fn steps_and_targets_must_agree_in_kind() {
    let src = with("tool t(x: text) -> text = command [\"echo\", \"{x}\"]\nstep b = predict t { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["wrong-kind 6:18 `t` is a tool, and `predict` asks the model"]);
    let src = with("step b = call S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(check(&src), ["wrong-kind 5:15 `S` is a signature, and `call` runs a tool"]);
    let src = with("step input = predict S { x: input.q }\nreturn { a: input.q }");
    assert!(check(&src).contains(&"reserved-name 5:6 `input` cannot name a step".to_string()));
}

#[test]
fn the_schedule_groups_independent_steps() {
    let d = dag(&with(
        "step a1 = predict S { x: input.q }\nstep a2 = predict S { x: input.q }\nstep b = predict S { x: a1.y }\nstep c = predict S { x: b.y }\nstep d = predict S { x: a2.y }\nreturn { a: c.y }\nmetric m = exact(output.a, example.a)\noptimize labeled_few_shot",
    ));
    let names: Vec<Vec<&str>> = d.schedule().iter().map(|l| l.iter().map(|s| d.step(*s).name.as_str()).collect()).collect();
    assert_eq!(names, [vec!["a1", "a2"], vec!["b", "d"], vec!["c"]]);
    assert_eq!(d.dependencies(d.step_id("b").unwrap()), [d.step_id("a1").unwrap()]);
}

#[test]
fn chain_of_thought_adds_reasoning_and_tools_give_result() {
    let d = dag(&with(
        "tool t(x: text) -> int = command [\"wc\"] { stdin: \"{x}\" }\nstep c = chain_of_thought S { x: input.q }\nstep n = call t { x: c.reasoning }\nreturn { a: c.y }\nmetric m = exact(output.a, example.a)",
    ));
    let outs: Vec<&str> = d.steps()[0].outputs.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(outs, [REASONING, "y"]);
    assert_eq!(d.steps()[1].outputs[0].name, RESULT);
    assert_eq!(d.steps()[1].outputs[0].ty, Type::Int);
}

#[test]
fn models_default_to_the_local_model_and_check_their_settings() {
    let d = dag(&with("step b = predict S { x: input.q }\nreturn { a: b.y }"));
    assert_eq!(d.model(d.default_model()).provider, Provider::Onnx { model: DEFAULT_LOCAL_MODEL.into() });

    let src = with("model default = onnx(\"m\") { temprature: 0.5, top_p: 2.0, max_tokens: \"x\" }\nstep b = predict S { x: input.q }\nreturn { a: b.y }");
    assert_eq!(
        check(&src),
        [
            "unknown-setting 5:29 model `default` has no setting `temprature`",
            "invalid-value 5:53 `top_p` must be between 0 and 1",
            "invalid-value 5:70 `max_tokens` takes a whole number of at least 0, not `\"x\"`",
        ]
    );
    assert!(hints(&src).contains(&"did you mean `temperature`?".to_string()));

    let src = with("model a = onnx(\"m\")\nmodel b = openai(\"ftp://x\", \"m\")\nstep s = predict S { x: input.q }\nreturn { a: s.y }");
    assert_eq!(check(&src), ["invalid-value 6:18 `ftp://x` is not an http(s) URL", "missing-setting 7:1 step `s` does not say which model runs it"]);
}

#[test]
fn tool_templates_may_only_use_parameters() {
    let src = with("tool kb(query: text) -> text = http GET \"http://h/?q={qery}\"\nstep n = call kb { query: input.q }\nreturn { a: n.result }");
    assert_eq!(check(&src), ["unknown-name 5:41 `{qery}` is not a parameter of tool `kb`"]);
    let src =
        with("tool kb(query: text) -> text = http FETCH \"http://h/{query\" { timeout_ms: 0 }\nstep n = call kb { query: input.q }\nreturn { a: n.result }");
    assert_eq!(
        check(&src),
        [
            "invalid-value 5:37 `FETCH` is not an HTTP method",
            "invalid-value 5:43 bad template: `{query` is never closed with `}`",
            "invalid-value 5:75 `timeout_ms` must be at least 1",
        ]
    );
}

#[test]
fn metrics_check_functions_and_operands() {
    let base = with("step b = predict S { x: input.q }\nreturn { a: b.y }\n");
    let cases = [
        ("metric m = exactly(output.a, example.a)", "unknown-name 7:12 unknown metric function `exactly`"),
        ("metric m = exact(output.b, example.a)", "unknown-name 7:25 `output` has no field `b`"),
        ("metric m = exact(result.a, example.a)", "unknown-name 7:18 a metric cannot read `result`"),
        ("metric m = exact(output.a)", "invalid-value 7:1 `exact` is called with the wrong arguments"),
        ("metric m = numeric(output.a, example.a)", "type-mismatch 7:20 `numeric` compares numbers, but this is `text`"),
        ("metric m = regex(output.a, \"(\")", "invalid-value 7:28 bad regular expression: regex parse error:"),
        ("metric m = judge(S, x: output.a)", "type-mismatch 7:18 a judge's signature needs exactly one `float`, `int` or `bool` output"),
    ];
    for (metric, want) in cases {
        let got = check(&format!("{base}{metric}"));
        assert!(got[0].starts_with(want), "{metric}\n got: {}\nwant: {want}", got[0]);
    }
    let d = dag(&format!("{base}metric h = human(\"helpfulness\")\nmetric t = contains(output.a, \"yes\")"));
    assert_eq!(d.metrics()[0].kind, MetricKind::Human { criterion: "helpfulness".into() });
    assert_eq!(d.metrics()[1].kind, MetricKind::Contains(Operand::Output("a".into()), Operand::Const("yes".into())));
}

#[test]
fn optimizers_check_their_settings() {
    let base = with("step b = predict S { x: input.q }\nreturn { a: b.y }\nmetric m1 = exact(output.a, example.a)\n");
    let cases = [
        ("optimize bootstrap_random { }", "unknown-name 8:10 unknown optimizer `bootstrap_random`"),
        ("optimize labeled_few_shot { metric: m2 }", "unknown-name 8:37 unknown metric `m2`"),
        ("optimize labeled_few_shot { max_demos: -1 }", "invalid-value 8:40 `max_demos` takes a whole number"),
        ("optimize labeled_few_shot { templates: [chat, xml] }", "unknown-name 8:47 unknown template `xml`"),
        ("optimize labeled_few_shot { teacher: big }", "unknown-name 8:38 unknown model `big`"),
        ("optimize labeled_few_shot { retrieval: 1 }", "invalid-value 8:40 `retrieval` takes `true` or `false`, not `1`"),
    ];
    for (opt, want) in cases {
        let got = check(&format!("{base}{opt}"));
        assert_eq!(got.len(), 1, "{opt}: {got:?}");
        assert!(got[0].starts_with(want), "{opt}\n got: {}\nwant: {want}", got[0]);
    }
    let d = dag(&format!("{base}optimize bootstrap_random_search {{ max_demos: 4, candidates: 8, seed: 7 }}"));
    let o = d.optimizer().unwrap();
    assert_eq!(o.kind, OptimizerKind::BootstrapRandomSearch);
    assert_eq!((o.settings.metric, o.settings.max_demos, o.settings.seed), (Some(MetricId(0)), Some(4), Some(7)));
    assert_eq!(o.settings.retrieval, None);
    let d = dag(&format!("{base}optimize bootstrap_random_search {{ retrieval: true }}"));
    assert_eq!(d.optimizer().unwrap().settings.retrieval, Some(true));

    let src = with("step b = predict S { x: input.q }\nreturn { a: b.y }\noptimize labeled_few_shot");
    assert_eq!(check(&src), ["missing-setting 7:1 `optimize labeled_few_shot` needs a metric"]);
}

#[test]
fn declared_feedback_is_typed_and_without_declarations_thumbs_and_correction_are_taken() {
    let base = with("step b = predict S { x: input.q }\nreturn { a: b.y }\n");
    let d = dag(&base);
    let names: Vec<&str> = d.feedback().iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["correction", "thumbs"]);
    let d =
        dag(&format!("{base}feedback rating: int(1..5) \"how good\"\nfeedback conf: float(0..1)\nfeedback issue: label(rude, slow)\nfeedback note: text\n"));
    let kinds: Vec<String> = d.feedback().iter().map(|f| f.kind.describe()).collect();
    assert_eq!(kinds, ["int(1..5)", "float(0..1)", "label(rude, slow)", "text"]);
    assert_eq!(d.feedback_spec("rating").unwrap().description.as_deref(), Some("how good"));
    assert!(d.feedback_spec("thumbs").is_none(), "declaring feedback replaces the defaults");
}

#[test]
fn bad_feedback_declarations_are_reported_where_they_are_written() {
    let base = with("step b = predict S { x: input.q }\nreturn { a: b.y }\n");
    for (decl, want) in [
        ("feedback a: bool\nfeedback a: int", "duplicate-name 8:10 the feedback `a` is declared twice"),
        ("feedback accepted: bool", "reserved-name 7:10 `accepted` is an implicit signal and cannot be declared"),
        ("feedback stars", "missing-type 7:10 feedback `stars` has no type"),
        ("feedback correction: text", "invalid-value 7:22 `correction` takes a value of the program's outputs and has no type of its own"),
        ("feedback x: flaot", "unknown-name 7:13 unknown feedback type `flaot`"),
        ("feedback x: json", "invalid-value 7:13 feedback `x` cannot be `json`"),
        ("feedback x: list<text>", "invalid-value 7:13 feedback `x` cannot be a list"),
        ("feedback x: int(5..1)", "invalid-value 7:16 the range is empty or reversed: 5 is not below 1"),
        ("feedback x: int(1.5..3)", "invalid-value 7:16 the bounds of an `int` feedback are whole numbers"),
        ("feedback x: text(1..3)", "invalid-value 7:17 a range applies to `int` and `float` feedback, not `text`"),
        ("feedback x: label(a, a)", "duplicate-name 7:22 the label `a` is listed twice"),
    ] {
        assert_eq!(check(&format!("{base}{decl}\n")), [want], "{decl}");
    }
    assert_eq!(hints(&format!("{base}feedback x: flaot\n"))[0], "did you mean `float`?");
}

/// A program of `n` steps, each reading the one before; the first reads the input, or, when
/// `closed`, the last step (so all of them form one cycle).
fn chain(n: usize, closed: bool) -> String {
    let mut src = with("");
    let first = if closed { format!("s{}.y", n - 1) } else { "input.q".to_string() };
    src.push_str(&format!("step s0 = predict S {{ x: {first} }}\n"));
    for i in 1..n {
        src.push_str(&format!("step s{i} = predict S {{ x: s{}.y }}\n", i - 1));
    }
    src.push_str(&format!("return {{ a: s{}.y }}\n", n - 1));
    src
}

/// Runs `f` on a thread with the 2 MiB stack Rust gives spawned threads (a tokio worker, say).
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new().stack_size(2 << 20).spawn(f).unwrap().join().unwrap()
}

#[test]
fn a_chain_of_fifty_thousand_steps_parses_checks_and_formats_on_a_small_stack() {
    let (steps, layers, formatted_ok) = on_small_stack(|| {
        let src = chain(50_000, false);
        let d = dag(&src);
        let formatted = crate::syntax::format_source(&src).unwrap();
        (d.steps().len(), d.schedule().len(), crate::syntax::parse(&formatted).is_ok())
    });
    assert_eq!((steps, layers, formatted_ok), (50_000, 50_000, true));
}

#[test]
fn a_cycle_through_fifty_thousand_steps_is_named_by_its_first_few() {
    let lowered = on_small_stack(|| lower(&parse(&chain(50_000, true)).unwrap()));
    let cycles: Vec<_> = lowered.diagnostics.iter().filter(|d| d.code == "cycle").collect();
    assert_eq!(cycles.len(), 1);
    assert_eq!(cycles[0].message, "steps form a cycle: `s0` → `s1` → `s2` → `s3` → `s4` → `s5` → `s6` → `s7` → … (49992 more) → `s0`");
    assert_eq!(cycles[0].related.len(), 7, "the named steps after the first are pointed at");
}

#[test]
fn many_misspelt_names_stop_getting_suggestions_once_the_budget_is_spent() {
    // 2 000 steps read 2 000 misspelt steps: a suggestion each would take 4 million comparisons.
    let mut src = with("");
    for i in 0..2_000 {
        src.push_str(&format!("step classify{i} = predict S {{ x: clasify{i}.y }}\n"));
    }
    src.push_str("return { a: classify0.y }\n");
    let lowered = lower(&parse(&src).unwrap());
    let unknown = lowered.diagnostics.iter().filter(|d| d.code == "unknown-name").count();
    let suggested = lowered.diagnostics.iter().filter(|d| d.hints.iter().any(|h| h.starts_with("did you mean"))).count();
    assert_eq!(unknown, 2_000);
    assert!(suggested > 0 && suggested <= suggest::SUGGESTION_BUDGET / 2_000, "{suggested} suggestions");
}

#[test]
fn steps_over_one_signature_share_its_output_fields() {
    let d = dag(&chain(3, false));
    assert!(std::ptr::eq(d.steps()[0].outputs.as_slice(), d.steps()[2].outputs.as_slice()));
}

#[test]
fn many_unbound_inputs_make_one_diagnostic_per_step() {
    let fields: String = (0..500).map(|i| format!("in f{i}: text ")).collect();
    let mut src = format!("program p\ninput q: text\noutput a: text\nsignature W {{ {fields} out y: text }}\n");
    for i in 0..100 {
        src.push_str(&format!("step s{i} = predict W {{}}\n"));
    }
    src.push_str("return { a: s0.y }\n");
    let got = check(&src);
    assert_eq!(got.len(), 100, "one per step, not 50 000");
    assert!(got[0].starts_with("unbound-input 5:1 500 inputs of `W` are not bound: f0, f1, "), "{}", got[0]);
    assert!(got[0].ends_with("f19 and 480 more"), "{}", got[0]);
    // A few are still named one by one, with their types.
    let few = with("step s = predict S {}\nreturn { a: s.y }");
    assert_eq!(check(&few), ["unbound-input 5:1 input `x` of `S` is not bound"]);
}

#[test]
fn constraints_are_checked_where_they_are_written() {
    let t = |ty: &str| {
        check(&format!(
            "program p\ninput q: text\noutput a: {ty}\nsignature S {{ in x: text out y: {ty} }}\nstep s = predict S {{ x: input.q }}\nreturn {{ a: s.y }}"
        ))
    };
    assert_eq!(t("list<text(email)>"), Vec::<String>::new());
    assert_eq!(t("text(/[A-Z]{3}/, max_length: 3)"), Vec::<String>::new());
    assert_eq!(t("text(emial)")[0], "unknown-name 3:16 unknown text format `emial`");
    assert_eq!(hints("program p\noutput a: text(emial)\nreturn { a: \"x\" }")[0], "did you mean `email`?");
    assert_eq!(t("text(/[a-/)")[0].split(':').next(), Some("invalid-pattern 3"));
    assert!(t("text(/(?=a)b/)")[0].starts_with("invalid-pattern 3:16 invalid pattern:"), "{:?}", t("text(/(?=a)b/)"));
    assert_eq!(
        t("text(date, /[a-z]+/)"),
        ["unmatchable-pattern 3:22 no text satisfies `text(date, /[a-z]+/)`", "unmatchable-pattern 4:44 no text satisfies `text(date, /[a-z]+/)`"]
    );
    assert_eq!(t("text(min_length: 5, max_length: 2)")[0], "unmatchable-pattern 3:31 no text is at least 5 and at most 2 characters long");
    assert_eq!(t("int(email)")[0], "invalid-constraint 3:11 `int` takes no constraints");
    assert_eq!(t("text(max_len: 3)")[0], "unknown-name 3:16 unknown text constraint `max_len`");
    assert_eq!(t("text(max_length: -1)")[0], "invalid-value 3:28 `max_length` takes a whole number from 0 to 100000");
    assert_eq!(t("text(email, url)")[0], "duplicate-name 3:23 a text type takes one format");
}

#[test]
fn constrained_text_fits_text_slots_and_text_does_not_fit_constrained_ones() {
    let src = "program p\ninput q: text\noutput a: text(email)\nsignature S { in x: text out y: text(email) }\nstep s = predict S { x: input.q }\nstep t = predict S { x: s.y }\nreturn { a: s.y }";
    assert!(check(src).iter().all(|d| d.starts_with("unused")), "{:?}", check(src));
    let src = "program p\ninput q: text\noutput a: text(email)\nreturn { a: input.q }";
    assert_eq!(check(src)[0].split(' ').next(), Some("type-mismatch"));
}

#[test]
fn text_from_an_input_names_one_of_the_signatures_inputs() {
    let ok = "program p\ninput q: text\noutput a: list<text(email)>\nsignature S { in mail: text out to: list<text(email, from: mail)> }\nstep s = predict S { mail: input.q }\nreturn { a: s.to }";
    assert_eq!(check(ok), Vec::<String>::new(), "a quoted value fills a slot without `from`");
    let typo = ok.replace("from: mail", "from: mial");
    assert_eq!(check(&typo), ["unknown-name 4:60 `from: mial` names no input of this signature"]);
    assert_eq!(hints(&typo)[0], "did you mean `mail`?");
    let on_output = "program p\ninput q: text\noutput a: text(from: q)\nreturn { a: input.q }";
    assert_eq!(check(on_output)[0], "invalid-constraint 3:22 `from` does not apply to program outputs (declare it on the signature's `out` field)");
}
