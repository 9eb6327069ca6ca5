//! **Running:** prompt templates (adapters), typed values, output parsing, tool calls,
//! model backends, the executor and its traces, and the artifact format compiled programs
//! are loaded from.

pub mod adapter;
pub mod artifact;
pub mod backend;
pub mod cache;
pub mod executor;
mod program;
pub mod tools;
pub mod trace;

pub use self::program::{check, local_stats, LoadError, Program, ProgramOptions, ResponseCache};
pub mod value;

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod executor_tests;
#[cfg(test)]
mod test_http;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_tests;
