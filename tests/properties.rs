//! Property tests of the laws the docs state: the parser and checker never panic and every
//! diagnostic points inside the text; formatting keeps the tree and is idempotent; valid
//! programs always have a schedule covering every step once.

mod mutate;

use loopc::{graph, syntax};
use proptest::prelude::*;

const PROGRAMS: [&str; 5] = [
    include_str!("../programs/support_triage.loop"),
    include_str!("../programs/sentiment.loop"),
    include_str!("../programs/extract_contacts.loop"),
    include_str!("../programs/qa_cot.loop"),
    include_str!("../programs/word_stats.loop"),
];

/// Tokens of the language, so mutations produce near-valid programs, not just noise.
const TOKENS: [&str; 45] = [
    "program",
    "feedback",
    "example",
    "held_out",
    "..",
    "int(1..5)",
    "input",
    "output",
    "model",
    "tool",
    "signature",
    "step",
    "return",
    "metric",
    "optimize",
    "in",
    "out",
    "predict",
    "chain_of_thought",
    "call",
    "using",
    "http",
    "command",
    "{",
    "}",
    "(",
    ")",
    "[",
    "]",
    "<",
    ">",
    ",",
    ":",
    "=",
    "->",
    ".",
    "\"",
    "\"\"\"",
    "//",
    "\n",
    "label",
    "list",
    "text",
    "input.ticket",
    "\\u{",
];

/// Parses and checks `src`, asserting nothing panics and every span fits the text.
fn check_total(src: &str) -> Option<syntax::ast::File> {
    match syntax::parse(src) {
        Err(d) => {
            assert!(d.span.fits(src.len()), "syntax span {:?} outside {} bytes", d.span.range(), src.len());
            assert!(src.is_char_boundary(d.span.start) && src.is_char_boundary(d.span.end));
            assert!(!d.message.is_empty());
            None
        }
        Ok(file) => {
            let lowered = graph::lower(&file);
            for d in &lowered.diagnostics {
                assert!(d.span.fits(src.len()), "{}: span {:?} outside the text", d.message, d.span.range());
                for (s, _) in &d.related {
                    assert!(s.fits(src.len()));
                }
            }
            assert_eq!(lowered.dag.is_some(), !syntax::has_errors(&lowered.diagnostics));
            if let Some(dag) = &lowered.dag {
                let mut scheduled: Vec<usize> = dag.schedule().iter().flatten().map(|s| s.0).collect();
                scheduled.sort();
                assert_eq!(scheduled, (0..dag.steps().len()).collect::<Vec<_>>(), "every step scheduled once");
            }
            Some(file)
        }
    }
}

fn assert_format_law(src: &str, file: &syntax::ast::File) {
    let formatted = syntax::format_source(src).expect("a parsed file formats");
    let reparsed = syntax::parse(&formatted).unwrap_or_else(|d| panic!("formatted text does not parse: {d:?}\n{formatted}"));
    assert_eq!(&reparsed, file, "formatting changed the tree:\n{formatted}");
    assert_eq!(syntax::format_source(&formatted).unwrap(), formatted, "formatting is not idempotent");
}

#[derive(Debug, Clone)]
enum Edit {
    Delete(usize, usize),
    Insert(usize, usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (any::<usize>(), 1usize..12).prop_map(|(a, n)| Edit::Delete(a, n)),
        (any::<usize>(), 0..TOKENS.len()).prop_map(|(a, t)| Edit::Insert(a, t)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
    ]
}

fn apply(src: &str, edits: &[Edit]) -> String {
    let mut s = src.to_string();
    for e in edits {
        let boundary = |s: &str, i: usize| {
            let mut i = i % (s.len() + 1);
            while !s.is_char_boundary(i) {
                i -= 1;
            }
            i
        };
        match *e {
            Edit::Delete(a, n) => {
                let a = boundary(&s, a);
                let b = boundary(&s, (a + n).min(s.len()));
                s.replace_range(a..b.max(a), "");
            }
            Edit::Insert(a, t) => {
                let a = boundary(&s, a);
                s.insert_str(a, &format!(" {} ", TOKENS[t]));
            }
            Edit::DuplicateLine(i) | Edit::SwapLines(i, _) if s.lines().count() == 0 => {
                let _ = i;
            }
            Edit::DuplicateLine(i) => {
                let mut lines: Vec<&str> = s.lines().collect();
                let i = i % lines.len();
                lines.insert(i, lines[i]);
                s = lines.join("\n");
            }
            Edit::SwapLines(i, j) => {
                let mut lines: Vec<&str> = s.lines().collect();
                let (i, j) = (i % lines.len(), j % lines.len());
                lines.swap(i, j);
                s = lines.join("\n");
            }
        }
    }
    s
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(src in "\\PC{0,200}") {
        check_total(&src);
    }

    #[test]
    fn mutated_programs_never_panic_and_valid_ones_format_faithfully(
        which in 0..PROGRAMS.len(),
        edits in proptest::collection::vec(edit(), 1..6),
    ) {
        let src = apply(PROGRAMS[which], &edits);
        if let Some(file) = check_total(&src) {
            assert_format_law(&src, &file);
        }
    }

    #[test]
    fn arbitrary_strings_survive_formatting(desc in "\\PC{0,40}", instr in "(\\PC|\\n|\\t){0,60}") {
        let src = format!(
            "program p {}\ninput q: text {}\noutput a: text\nsignature S {} {{ in x: text out y: text }}\nstep s = predict S {{ x: input.q }}\nreturn {{ a: s.y }}\n",
            syntax::quote(&desc), syntax::quote(&instr), syntax::quote(&instr),
        );
        let file = check_total(&src).expect("parses");
        assert_format_law(&src, &file);
    }
}

proptest! {
    // The parser's fuzz target: bounded like the others in `fuzz.rs` (`LOOPC_FUZZ_CASES`).
    #![proptest_config(ProptestConfig { cases: mutate::cases(), ..ProptestConfig::default() })]

    #[test]
    fn byte_mutations_of_the_seed_corpus_never_panic_the_parser_or_checker(
        (which, edits) in mutate::case(parser_seeds().len()),
    ) {
        let bytes = mutate::apply(&parser_seeds(), which, &edits);
        // Sources are UTF-8 by the time they reach the parser; the CLI refuses other bytes.
        let src = String::from_utf8_lossy(&bytes);
        if let Some(file) = check_total(&src) {
            assert_format_law(&src, &file);
        }
    }
}

/// The parser's seed corpus: `tests/fixtures/fuzz/parser/` and the example programs.
fn parser_seeds() -> Vec<Vec<u8>> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut seeds = mutate::seeds(&root.join("tests/fixtures/fuzz/parser"), &["loop"]);
    seeds.extend(PROGRAMS.iter().map(|p| p.as_bytes().to_vec()));
    seeds
}

#[test]
fn the_example_programs_obey_the_format_law() {
    for src in PROGRAMS {
        let file = check_total(src).expect("example parses");
        assert_format_law(src, &file);
    }
}
