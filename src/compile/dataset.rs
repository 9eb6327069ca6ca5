//! Datasets: JSONL or CSV examples whose keys are the program's inputs and, for labelled
//! data, its outputs. Every line is checked against the program before anything runs, and a
//! bad line is reported by file and line number.
//!
//! Reading is strict where a lenient reader would silently change the data: a UTF-8
//! byte-order mark is refused (it would become part of the first key or column name), a JSON
//! object with a key twice is refused (serde_json would keep the last), a CSV header with a
//! column twice is refused, and numbers must be finite. A CSV record that spans lines (a
//! quoted cell with newlines) is reported at the line where it starts. Files larger than
//! [`MAX_DATASET_BYTES`] are refused before they fill memory.

use std::io::Read;
use std::path::Path;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde_json::{Map, Value};

use crate::graph::{Dag, Type};
use crate::runtime::value;

/// One example: the program's inputs, and whatever labels it has.
#[derive(Clone, Debug, PartialEq)]
pub struct Example {
    /// Where it came from: `file:line`.
    pub origin: String,
    /// Every field of the line (inputs, outputs and extra fields metrics may read).
    pub fields: Map<String, Value>,
}

impl Example {
    /// The program inputs of this example.
    pub fn inputs(&self, dag: &Dag) -> Map<String, Value> {
        dag.inputs().iter().filter_map(|f| self.fields.get(&f.name).map(|v| (f.name.clone(), v.clone()))).collect()
    }
}

/// A loaded dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What to call it in messages and provenance.
    pub source: String,
    /// SHA-256 of the file's bytes.
    pub sha256: String,
    /// The examples, in file order.
    pub examples: Vec<Example>,
}

/// Why a dataset cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DatasetError {
    /// Occurs when the file cannot be read.
    #[error("cannot read `{path}`: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// Occurs when a line is malformed or does not fit the program: `file:line: why`.
    #[error("{origin}: {reason}")]
    Line {
        /// `file:line`.
        origin: String,
        /// What is wrong.
        reason: String,
    },
    /// Occurs when a dataset has no examples.
    #[error("`{0}` has no examples")]
    Empty(String),
}

/// The largest dataset file loopc reads.
pub const MAX_DATASET_BYTES: u64 = 1 << 30;

/// The UTF-8 encoding of U+FEFF, which some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Reads `path` (JSONL, or CSV when it ends in `.csv`) and checks each example against
/// `dag`: every program input present with its type; labelled outputs, where present, of
/// their declared types (a label must be in the label set); `required` fields present.
pub fn load(path: &Path, dag: &Dag, required: &[String]) -> Result<Dataset, DatasetError> {
    let shown = path.display().to_string();
    let bytes = read_bounded(path).map_err(|source| DatasetError::Io { path: shown.clone(), source })?;
    if bytes.starts_with(BOM) {
        return Err(DatasetError::Line {
            origin: format!("{shown}:1"),
            reason: "the file starts with a UTF-8 byte-order mark (BOM); save it as UTF-8 without one \
                     (e.g. `sed -i '1s/^\\xEF\\xBB\\xBF//' FILE`)"
                .into(),
        });
    }
    let is_csv = path.extension().is_some_and(|e| e.eq_ignore_ascii_case("csv"));
    let rows = if is_csv { csv_rows(&shown, &bytes, dag)? } else { jsonl_rows(&shown, &bytes)? };
    for ex in &rows {
        validate(ex, dag, required)?;
    }
    if rows.is_empty() {
        return Err(DatasetError::Empty(shown));
    }
    Ok(Dataset { source: shown, sha256: crate::fs::sha256_hex(&bytes), examples: rows })
}

/// The file's bytes, refusing more than [`MAX_DATASET_BYTES`] (`/dev/zero` never ends).
fn read_bounded(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)?.take(MAX_DATASET_BYTES + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_DATASET_BYTES {
        return Err(std::io::Error::other(format!("it is larger than {} MiB, the most loopc reads", MAX_DATASET_BYTES >> 20)));
    }
    Ok(bytes)
}

fn jsonl_rows(shown: &str, bytes: &[u8]) -> Result<Vec<Example>, DatasetError> {
    let text = std::str::from_utf8(bytes).map_err(|e| {
        let line = bytes[..e.valid_up_to()].iter().filter(|b| **b == b'\n').count() + 1;
        DatasetError::Line { origin: format!("{shown}:{line}"), reason: format!("not UTF-8 text ({e})") }
    })?;
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let origin = format!("{shown}:{}", i + 1);
        if line.trim().is_empty() {
            continue;
        }
        match crate::json::strict(line) {
            Ok(Value::Object(fields)) => rows.push(Example { origin, fields }),
            Ok(_) => return Err(DatasetError::Line { origin, reason: "expected a JSON object".into() }),
            Err(e) => {
                // serde_json ends its messages with "at line 1 column N"; the line is ours.
                let text = e.to_string();
                let what = text.rsplit_once(" at line ").map_or(text.as_str(), |(what, _)| what);
                let reason = if e.is_data() { format!("{what} (column {})", e.column()) } else { format!("not valid JSON ({what}, column {})", e.column()) };
                return Err(DatasetError::Line { origin, reason });
            }
        }
    }
    Ok(rows)
}

/// CSV cells are text; a column named after a typed program field is read as that type.
fn csv_rows(shown: &str, bytes: &[u8], dag: &Dag) -> Result<Vec<Example>, DatasetError> {
    let mut reader = csv::ReaderBuilder::new().from_reader(bytes);
    // A record may span lines (a quoted cell with newlines): messages name the line it starts on.
    let line_of = |pos: Option<&csv::Position>, fallback: u64| pos.map_or(fallback, csv::Position::line);
    let header_err = |e: csv::Error| DatasetError::Line { origin: format!("{shown}:{}", line_of(e.position(), 1)), reason: format!("bad CSV header ({e})") };
    let headers: Vec<String> = reader.headers().map_err(header_err)?.iter().map(str::to_string).collect();
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = headers.iter().find(|h| !seen.insert(h.as_str())) {
        return Err(DatasetError::Line { origin: format!("{shown}:1"), reason: format!("the column `{}` appears twice in the header", twice.escape_debug()) });
    }
    let type_of = |name: &str| dag.inputs().iter().chain(dag.outputs()).find(|f| f.name == name).map(|f| f.ty.clone());
    let types: Vec<Option<Type>> = headers.iter().map(|h| type_of(h)).collect();
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record
            .map_err(|e| DatasetError::Line { origin: format!("{shown}:{}", line_of(e.position(), i as u64 + 2)), reason: format!("bad CSV row ({e})") })?;
        let origin = format!("{shown}:{}", line_of(record.position(), i as u64 + 2));
        let mut fields = Map::new();
        for ((name, ty), cell) in headers.iter().zip(&types).zip(record.iter()) {
            let v = match ty {
                Some(ty) if !matches!(ty, Type::Text) => {
                    value::coerce(ty, cell).map_err(|r| DatasetError::Line { origin: origin.clone(), reason: format!("field `{name}`: {r}") })?
                }
                _ => Value::String(cell.to_string()),
            };
            fields.insert(name.clone(), v);
        }
        rows.push(Example { origin, fields });
    }
    Ok(rows)
}

pub(crate) fn validate(ex: &Example, dag: &Dag, required: &[String]) -> Result<(), DatasetError> {
    let bad = |reason: String| DatasetError::Line { origin: ex.origin.clone(), reason };
    for f in dag.inputs() {
        match ex.fields.get(&f.name) {
            None => return Err(bad(format!("field `{}` missing (a program input)", f.name))),
            Some(v) => value::check_type(&f.ty, v).map_err(|r| bad(format!("field `{}`: {r}", f.name)))?,
        }
    }
    for f in dag.outputs() {
        if let Some(v) = ex.fields.get(&f.name) {
            value::check_type(&f.ty, v).map_err(|r| bad(format!("field `{}`: {r}", f.name)))?;
        }
    }
    if let Some(name) = required.iter().find(|n| !ex.fields.contains_key(*n)) {
        return Err(bad(format!("field `{name}` missing (the metric reads `example.{name}`)")));
    }
    Ok(())
}

/// Splits `data` into (train, dev) with `dev_fraction` of the examples in dev, shuffled by `seed`.
pub fn split(data: &Dataset, dev_fraction: f64, seed: u64) -> (Dataset, Dataset) {
    let mut order: Vec<usize> = (0..data.examples.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_dev = ((data.examples.len() as f64 * dev_fraction).round() as usize).clamp(1, data.examples.len().saturating_sub(1).max(1));
    let part = |idx: &[usize], which: &str| Dataset {
        source: format!("{} ({which} of a split seeded {seed})", data.source),
        sha256: data.sha256.clone(),
        examples: idx.iter().map(|&i| data.examples[i].clone()).collect(),
    };
    let (dev, train) = order.split_at(n_dev);
    (part(train, "train"), part(dev, "dev"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dag() -> Dag {
        let src = "program p\ninput text: text\noutput label: label(yes, no)\nsignature S { in text: text out label: label(yes, no) }\nstep s = predict S { text: input.text }\nreturn { label: s.label }\n";
        crate::graph::lower(&crate::syntax::parse(src).unwrap()).dag.unwrap()
    }

    fn load_text(name: &str, text: &str) -> Result<Dataset, DatasetError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        load(&path, &dag(), &["label".to_string()]).map_err(|e| match e {
            DatasetError::Line { origin, reason } => DatasetError::Line { origin: origin.rsplit('/').next().unwrap_or_default().to_string(), reason },
            other => other,
        })
    }

    #[test]
    fn bad_lines_are_reported_by_number_with_the_field() {
        let cases = [
            ("{\"text\": \"a\", \"label\": \"yes\"}\n{\"label\": \"no\"}\n", "d.jsonl:2: field `text` missing (a program input)"),
            ("{\"text\": \"a\", \"label\": \"maybe\"}\n", "d.jsonl:1: field `label`: "),
            ("{\"text\": \"a\", \"label\": \"yes\"}\n\n{\"text\": \"a\"\n", "d.jsonl:3: not valid JSON"),
            ("[1]\n", "d.jsonl:1: expected a JSON object"),
            ("{\"text\": \"a\"}\n", "d.jsonl:1: field `label` missing (the metric reads `example.label`)"),
        ];
        for (text, want) in cases {
            let err = load_text("d.jsonl", text).unwrap_err().to_string();
            assert!(err.starts_with(want), "{err}");
        }
        assert!(matches!(load_text("d.jsonl", "\n"), Err(DatasetError::Empty(_))));
    }

    #[test]
    fn csv_rows_are_read_with_the_programs_types() {
        let d = load_text("d.csv", "text,label\n\"hello, world\",yes\nbye,no\n").unwrap();
        assert_eq!(d.examples.len(), 2);
        assert_eq!(d.examples[0].fields["text"], "hello, world");
        assert!(load_text("d.csv", "text,label\nx,perhaps\n").unwrap_err().to_string().starts_with("d.csv:2: field `label`"));
    }

    #[test]
    fn a_byte_order_mark_is_refused_with_how_to_remove_it() {
        for name in ["d.jsonl", "d.csv"] {
            let err = load_text(name, "\u{FEFF}{\"text\": \"a\", \"label\": \"yes\"}\n").unwrap_err().to_string();
            assert!(err.starts_with(&format!("{name}:1: the file starts with a UTF-8 byte-order mark")), "{err}");
            assert!(err.contains("without one"), "{err}");
        }
    }

    #[test]
    fn a_key_twice_in_a_line_is_an_error_naming_the_key_and_line() {
        let text = "{\"text\": \"a\", \"label\": \"yes\"}\n{\"text\": \"b\", \"label\": \"yes\", \"label\": \"no\"}\n";
        let err = load_text("d.jsonl", text).unwrap_err().to_string();
        assert_eq!(err, "d.jsonl:2: the key `label` appears twice in one object (column 37)", "the column is the end of the second key");
        // Nested objects (a `json` field, say) are read the same way; escapes do not hide a twin.
        let err = load_text("d.jsonl", "{\"text\": \"a\", \"label\": \"yes\", \"x\": {\"k\": 1, \"\\u006b\": 2}}\n").unwrap_err().to_string();
        assert!(err.starts_with("d.jsonl:1: the key `k` appears twice"), "{err}");
        let err = load_text("d.csv", "text,label,text\na,yes,b\n").unwrap_err().to_string();
        assert_eq!(err, "d.csv:1: the column `text` appears twice in the header");
    }

    #[test]
    fn csv_records_spanning_lines_are_reported_where_they_start() {
        let text = "text,label\n\"one\nline two\nline three\",yes\n\"a\nb\",maybe\n";
        let err = load_text("d.csv", text).unwrap_err().to_string();
        assert!(err.starts_with("d.csv:5: field `label`"), "{err}");
        let d = load_text("d.csv", "text,label\n\"x\ny\",yes\nz,no\n").unwrap();
        let origins: Vec<&str> = d.examples.iter().map(|e| e.origin.rsplit('/').next().unwrap()).collect();
        assert_eq!(origins, ["d.csv:2", "d.csv:4"]);
        let err = load_text("d.csv", "text,label\n\"x\ny\",yes\nz\n").unwrap_err().to_string();
        assert!(err.starts_with("d.csv:4: bad CSV row"), "{err}");
    }

    #[test]
    fn numbers_that_are_not_finite_are_refused() {
        let src = "program p\ninput x: float\ninput n: int\noutput label: text\nreturn { label: \"k\" }\n";
        let dag = crate::graph::lower(&crate::syntax::parse(src).unwrap()).dag.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let cases = [
            ("d.csv", "x,n\nNaN,1\n", "field `x`: `NaN` is not a number"),
            ("d.csv", "x,n\ninf,1\n", "field `x`: `inf` is not a number"),
            ("d.csv", "x,n\n1e999,1\n", "field `x`: `1e999` is not a number"),
            ("d.csv", "x,n\n1,1e999\n", "field `n`: `1e999` is not a whole number"),
            ("d.jsonl", "{\"x\": 1e999, \"n\": 1}\n", "not valid JSON (number out of range"),
            ("d.jsonl", "{\"x\": NaN, \"n\": 1}\n", "not valid JSON (expected value"),
        ];
        for (name, text, want) in cases {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            let err = load(&path, &dag, &[]).unwrap_err().to_string();
            assert!(err.contains(&format!("{name}:2: {want}")) || err.contains(&format!("{name}:1: {want}")), "{text:?}: {err}");
        }
    }

    #[test]
    fn text_that_is_not_utf8_is_reported_at_its_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.jsonl");
        std::fs::write(&path, b"{\"text\": \"a\", \"label\": \"yes\"}\n{\"text\": \"\xff\"}\n").unwrap();
        let err = load(&path, &dag(), &[]).unwrap_err().to_string();
        assert!(err.contains("d.jsonl:2: not UTF-8 text"), "{err}");
    }

    #[test]
    fn a_seeded_split_is_reproducible_and_disjoint() {
        let text: String = (0..20).map(|i| format!("{{\"text\": \"t{i}\", \"label\": \"yes\"}}\n")).collect();
        let d = load_text("d.jsonl", &text).unwrap();
        let (a, b) = split(&d, 0.25, 7);
        assert_eq!((a.examples.len(), b.examples.len()), (15, 5));
        assert_eq!(split(&d, 0.25, 7), (a.clone(), b.clone()));
        assert!(b.examples.iter().all(|e| !a.examples.contains(e)));
    }
}
