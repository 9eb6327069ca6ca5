//! What the editor says about the language's own words: keywords, types, metric functions,
//! optimizers, providers and the settings of each block, with a line of documentation each
//! (from the README's language reference). The checker owns the rules; a test below checks
//! that every setting listed here is one the checker takes.

/// A word of the language and what it means.
pub type Entry = (&'static str, &'static str);

/// The keywords that start an item, and what each declares.
pub const ITEMS: [Entry; 13] = [
    ("program", "`program NAME \"what it does\"`: the header every file starts with."),
    ("input", "`input NAME: TYPE \"description\"`: a value the caller passes."),
    ("output", "`output NAME: TYPE \"description\"`: a value the program returns; bind it in `return`."),
    ("model", "`model NAME = onnx(\"smollm2-135m-instruct\") { ... }`: a model steps can use (`default` is used by steps without `using`)."),
    ("tool", "`tool NAME(PARAM: TYPE) -> TYPE = http METHOD \"URL\"` or `= command [\"program\", ...]`: something steps can `call`."),
    ("signature", "`signature NAME \"instruction\" { in ... out ... }`: a task for the model."),
    ("step", "`step NAME = predict|chain_of_thought SIGNATURE { ... }` or `= call TOOL { ... }`: one step of the program."),
    ("return", "`return { OUTPUT: SOURCE, ... }`: where each output comes from."),
    ("metric", "`metric NAME = FUNCTION(ARG, ...)`: how outputs are scored against an example, in [0, 1]."),
    ("optimize", "`optimize OPTIMIZER { metric: NAME, ... }`: what `loopc compile` searches."),
    ("feedback", "`feedback NAME: TYPE \"what it asks\"`: feedback `loopc serve` takes."),
    ("example", "`example NAME { input { ... } output { ... } }`: a test `loopc test` runs, and training data for `loopc compile` unless `held_out`."),
    ("memory", "`memory STEP { demos: 4, tokens: 400, min_trust: 0.5 }`: the step recalls demos per request from trusted corrections and approved runs (`serve --memory`)."),
];

/// The other keywords.
pub const KEYWORDS: [Entry; 10] = [
    ("in", "A signature field the model is given."),
    ("out", "A signature field the model must produce."),
    ("predict", "Ask the model for the signature's outputs."),
    ("chain_of_thought", "Ask the model to reason first (a `reasoning: text` field), then give the outputs."),
    ("call", "Run a tool; the step's one field is `result`."),
    ("using", "`using MODEL`: run this step on another declared model."),
    ("http", "`http METHOD \"URL with {param}\"`: values are percent-encoded into their slot."),
    ("command", "`command [\"program\", \"arg\", \"{param}\"]`: run directly with an argument list, never through a shell."),
    ("held_out", "A test only: `loopc compile` does not train on this example."),
    ("true", "A boolean."),
];

/// The types, and the values each holds.
pub const TYPES: [Entry; 7] = [
    ("text", "A string."),
    ("int", "A whole number."),
    ("float", "A number (an `int` fits too)."),
    ("bool", "`true` or `false`."),
    ("json", "Any JSON value; anything fits."),
    ("label", "`label(a, b, \"c d\")`: one of the listed strings."),
    ("list", "`list<T>`: a list of `T`."),
];

/// The step kinds.
pub const STEP_KINDS: [Entry; 3] = [KEYWORDS[2], KEYWORDS[3], KEYWORDS[4]];

/// The model providers.
pub const PROVIDERS: [Entry; 2] = [
    ("onnx", "`onnx(\"smollm2-135m-instruct\")` or `onnx(\"/path/to/model-dir\")`: a local ONNX model."),
    ("openai", "`openai(\"http://host/v1\", ..., \"model-name\")`: a pool of OpenAI-compatible endpoints serving one model."),
];

/// The tool kinds.
pub const TOOL_KINDS: [Entry; 2] = [KEYWORDS[6], KEYWORDS[7]];

/// HTTP methods a tool may use.
pub const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

/// The metric functions.
pub const METRIC_FUNCTIONS: [Entry; 9] = [
    ("exact", "`exact(a, b)`: 1 when equal."),
    ("normalized_exact", "`normalized_exact(a, b)`: 1 when equal after lowercasing and collapsing whitespace and punctuation."),
    ("contains", "`contains(a, b)`: 1 when `a` contains `b`, ignoring case."),
    ("f1", "`f1(a, b)`: token-level F1 (a fraction)."),
    ("items_f1", "`items_f1(a, b)`: item-level F1 of two lists (a fraction): items match when equal after normalizing (case, punctuation, articles, whitespace), in any order."),
    ("regex", "`regex(a, \"pattern\")`: 1 when `a` matches."),
    ("numeric", "`numeric(a, b, tolerance: 0.01)`: 1 when the numbers differ by at most the tolerance."),
    ("judge", "`judge(Signature, in_field: ARG, ...)`: an LM judge; the rubric signature's one output is the score."),
    ("human", "`human(\"criterion\")`: a person's rating (`compile --interactive`, or stored feedback in a learning round)."),
];

/// The optimizers.
pub const OPTIMIZERS: [Entry; 4] = [
    ("labeled_few_shot", "Demos drawn from labelled examples."),
    ("bootstrap_few_shot", "Demos from the teacher's traces that pass the metric."),
    ("bootstrap_random_search", "Many seeded demo sets, each evaluated; the best kept."),
    ("instruction_search", "Proposed instructions × demo sets × templates, searched with a surrogate."),
];

/// The settings of `optimize`.
pub const OPTIMIZER_SETTINGS: [Entry; 13] = [
    ("metric", "The metric to maximise (a name)."),
    ("max_demos", "The most demos per step."),
    ("max_labeled_demos", "The most labelled (not bootstrapped) demos per step."),
    ("candidates", "How many candidate programs to evaluate."),
    ("instructions", "How many instruction variants to propose per signature."),
    ("minibatch", "Examples per minibatch in surrogate-guided search."),
    ("seed", "The search seed."),
    ("teacher", "The model that produces bootstrapped traces (a name; default: the program's own)."),
    ("templates", "The prompt templates to search over: `[chat, json, completion]`."),
    ("max_calls", "Budget: the most model calls."),
    ("max_tokens", "Budget: the most tokens (prompt plus completion)."),
    ("max_seconds", "Budget: the most wall-clock seconds."),
    ("retrieval", "Whether a classification program's search also tries demos retrieved per input."),
];

/// The settings of `memory`.
pub const MEMORY_SETTINGS: [Entry; 6] = [
    ("demos", "The most demos recalled per request (default 4): the most similar stored inputs, newest first among equals."),
    ("tokens", "The most prompt tokens the recalled demos may take (default 400)."),
    ("min_trust", "The least trust (0 to 1, default 0.5) a user needs for their feedback to be remembered."),
    ("max_age_days", "Only feedback from the last this many days (default: any age)."),
    ("keep", "The most inputs remembered, the newest kept (default 100000)."),
    ("approved", "Whether answers people approved are remembered too, not only corrections (default `true`)."),
];

/// The prompt templates.
pub const TEMPLATES: [&str; 3] = ["chat", "json", "completion"];

/// The settings of every `model`.
pub const MODEL_SETTINGS: [Entry; 9] = [
    ("temperature", "Sampling temperature; 0 (the default) decodes greedily."),
    ("top_p", "Nucleus sampling mass."),
    ("top_k", "Sample among the `k` likeliest tokens."),
    ("max_tokens", "The most tokens to generate per call (default 256)."),
    ("seed", "The sampling seed."),
    ("stop", "Extra stop sequences (a list of strings)."),
    ("timeout_ms", "Per-request timeout."),
    ("concurrency", "The most requests in flight at once (per endpoint for `openai`)."),
    ("retries", "Retries on rate limits and server errors."),
];

/// The settings only an `openai` model takes.
pub const OPENAI_SETTINGS: [Entry; 2] = [
    ("api_key_env", "The *name* of the environment variable that holds the API key."),
    ("max_response_bytes", "The largest response body read (default 8 MiB)."),
];

/// The settings of an `http` tool.
pub const HTTP_SETTINGS: [Entry; 5] = [
    ("timeout_ms", "How long one attempt may take (default 10000)."),
    ("retries", "Extra attempts after a timeout or a 5xx answer (default 2)."),
    ("max_bytes", "The largest response accepted (default 1 MiB)."),
    ("body", "The request body, a template with `{param}` placeholders."),
    ("headers", "Extra headers: `[\"Name: value {param}\"]`."),
];

/// The settings of a `command` tool.
pub const COMMAND_SETTINGS: [Entry; 4] = [
    ("timeout_ms", "How long the program may run (default 10000)."),
    ("max_bytes", "The largest output accepted (default 1 MiB)."),
    ("stdin", "Text written to the program's standard input, a template."),
    ("env", "Environment variables passed on: `[\"API_TOKEN\"]`."),
];

/// The documentation of `word` wherever the language defines it, for hover.
pub fn describe(word: &str) -> Option<&'static str> {
    [&ITEMS[..], &KEYWORDS, &TYPES, &METRIC_FUNCTIONS, &OPTIMIZERS, &PROVIDERS].iter().flat_map(|t| t.iter()).find(|(w, _)| *w == word).map(|(_, d)| *d)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes of the diagnostics of `src` (with a program around it).
    fn codes(body: &str) -> Vec<&'static str> {
        let src = format!("program p\ninput t: text\noutput o: text\nreturn {{ o: input.t }}\nmetric m = exact(output.o, example.o)\n{body}\n");
        crate::graph::check_text(&src).diagnostics.into_iter().map(|d| d.code).collect()
    }

    #[test]
    fn every_setting_listed_is_one_the_checker_takes() {
        let cases: [(&[Entry], &str); 6] = [
            (&MODEL_SETTINGS, "model default = onnx(\"x\") { KEY: 1 }"),
            (&OPENAI_SETTINGS, "model default = openai(\"http://h/v1\", \"m\") { KEY: 1 }"),
            (&HTTP_SETTINGS, "tool t(q: text) -> text = http GET \"http://h/{q}\" { KEY: 1 }"),
            (&COMMAND_SETTINGS, "tool t(q: text) -> text = command [\"echo\", \"{q}\"] { KEY: 1 }"),
            (&OPTIMIZER_SETTINGS, "optimize bootstrap_few_shot { KEY: 1 }"),
            (&MEMORY_SETTINGS, "signature S { in t: text out o: text }\nstep s = predict S { t: input.t }\nmemory s { KEY: 1 }"),
        ];
        for (settings, template) in cases {
            for (key, _) in settings {
                let codes = codes(&template.replace("KEY", key));
                assert!(!codes.contains(&"unknown-setting"), "`{key}` in `{template}`: {codes:?}");
            }
            assert!(codes(&template.replace("KEY", "no_such_key")).contains(&"unknown-setting"), "the check would catch a stale list");
        }
    }

    #[test]
    fn every_function_optimizer_and_provider_listed_is_known() {
        let names: Vec<&str> = crate::graph::METRIC_FUNCTIONS.iter().map(|(n, _)| *n).collect();
        assert_eq!(METRIC_FUNCTIONS.map(|(n, _)| n).to_vec(), names);
        let optimizers: Vec<&str> = crate::graph::OptimizerKind::ALL.iter().map(|(_, n)| *n).collect();
        assert_eq!(OPTIMIZERS.map(|(n, _)| n).to_vec(), optimizers);
        assert_eq!(TEMPLATES, crate::graph::TEMPLATE_NAMES);
        for (p, _) in PROVIDERS {
            let src = format!("program p\noutput o: text\nreturn {{ o: \"x\" }}\nmodel x = {p}(\"http://h/v1\", \"m\")\n");
            let messages: Vec<String> = crate::graph::check_text(&src).diagnostics.into_iter().map(|d| d.message).collect();
            assert!(messages.iter().all(|m| !m.contains("unknown model provider")), "{p}: {messages:?}");
        }
    }
}
