//! Fuzz targets for the readers of untrusted files: datasets, artifacts and GGUF models (the
//! parser's is in `properties.rs`). Each mutates its committed seed corpus in
//! `tests/fixtures/fuzz/<target>/` and asserts the reader never panics, never allocates beyond
//! what the input holds, and names the file in every error. Bounded: [`mutate::cases`] cases
//! per target (`LOOPC_FUZZ_CASES` raises it).

mod mutate;

use std::path::{Path, PathBuf};

use proptest::prelude::*;

fn seeds_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/fuzz").join(target)
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: mutate::cases(), ..ProptestConfig::default() }
}

/// The dataset target's program (inputs `review: text`, `stars: float`, a label output).
fn program() -> loopc::graph::Dag {
    let src = std::fs::read_to_string(seeds_dir("dataset").join("program.loop")).unwrap();
    loopc::graph::lower(&loopc::syntax::parse(&src).unwrap()).dag.unwrap()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_dataset_reader_refuses_any_mutation_by_file_and_line(
        (which, edits) in mutate::case(mutate::seeds(&seeds_dir("dataset"), &["jsonl", "csv"]).len()),
        as_csv in any::<bool>(),
    ) {
        let seeds = mutate::seeds(&seeds_dir("dataset"), &["jsonl", "csv"]);
        let bytes = mutate::apply(&seeds, which, &edits);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(if as_csv { "fuzzed.csv" } else { "fuzzed.jsonl" });
        std::fs::write(&path, &bytes).unwrap();
        match loopc::compile::dataset::load(&path, &program(), &["sentiment".to_string()]) {
            Ok(data) => {
                prop_assert!(!data.examples.is_empty());
                for ex in &data.examples {
                    prop_assert!(ex.origin.contains("fuzzed."), "{}", ex.origin);
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzzed."), "the error names the file: {e}"),
        }
    }

    #[test]
    fn the_artifact_reader_refuses_any_mutation_without_panicking(
        (which, edits) in mutate::case(mutate::seeds(&seeds_dir("artifact"), &["json"]).len()),
    ) {
        let seeds = mutate::seeds(&seeds_dir("artifact"), &["json"]);
        let bytes = mutate::apply(&seeds, which, &edits);
        let text = String::from_utf8_lossy(&bytes);
        match loopc::runtime::artifact::Artifact::parse("fuzzed.json", &text) {
            Ok(artifact) => {
                // What loading does next: the embedded program is checked, then the artifact
                // validated against it.
                if let Ok(dag) = loopc::runtime::checked_dag("fuzzed.json", &artifact.program.source) {
                    if let Err(e) = artifact.validate("fuzzed.json", &dag) {
                        prop_assert!(e.to_string().contains("fuzzed.json"), "{e}");
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzzed.json"), "{e}"),
        }
    }

    #[test]
    fn the_gguf_reader_refuses_any_mutation_within_the_files_size(
        (which, edits) in mutate::case(mutate::seeds(&seeds_dir("gguf"), &["gguf"]).len()),
    ) {
        let seeds = mutate::seeds(&seeds_dir("gguf"), &["gguf"]);
        let bytes = mutate::apply(&seeds, which, &edits);
        let len = bytes.len();
        match loopc::model::gguf::Gguf::parse(Path::new("fuzzed.gguf"), bytes) {
            Ok(g) => {
                // What an import reads next: the shape, the tokenizer, every tensor.
                let _ = loopc::model::import::llama_shape(&g);
                let _ = loopc::model::tokenizer::tokenizer_json(&g);
                for t in &g.tensors {
                    if let Ok(values) = g.dequantize(t) {
                        // Dequantized data is at most 8 floats per byte (Q4 packs two values a byte).
                        prop_assert!(values.len() <= 8 * len);
                    }
                }
            }
            Err(e) => prop_assert!(e.to_string().contains("fuzzed.gguf"), "{e}"),
        }
    }
}
