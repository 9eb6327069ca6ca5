//! loopc: a compiler for prompt programs.
//!
//! A `.loop` file declares typed inputs and outputs, signatures, and steps that call a model
//! or a tool. loopc parses it ([`syntax`]), checks it and builds the step graph ([`graph`]),
//! runs it, and compiles it against a metric into an optimized artifact.
//!
//! ```
//! let source = r#"
//! program hello "Greets someone"
//! input name: text
//! output greeting: text
//! signature Greet "Write a one-line greeting." { in name: text  out greeting: text }
//! step greet = predict Greet { name: input.name }
//! return { greeting: greet.greeting }
//! "#;
//! let file = loopc::syntax::parse(source).expect("parses");
//! let checked = loopc::graph::lower(&file);
//! assert!(checked.diagnostics.is_empty());
//! let dag = checked.dag.expect("valid");
//! assert_eq!(dag.steps().len(), 1);
//! ```

pub mod compile;
pub mod fs;
pub mod graph;
pub mod json;
pub mod learn;
pub mod lsp;
pub mod model;
pub mod runtime;
pub mod serve;
pub mod store;
pub mod syntax;

pub use runtime::{Engine, Program, ProgramOptions};
