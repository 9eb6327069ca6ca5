//! **Running:** prompt templates (adapters), typed values, output parsing, tool calls,
//! model backends, the executor and its traces, and the artifact format compiled programs
//! are loaded from.

pub mod adapter;
pub mod artifact;
pub mod backend;
pub mod cache;
mod engine;
pub mod executor;
pub mod memory;
mod program;
pub mod retrieve;
pub mod scoring;
pub mod source;
pub mod structure;
pub mod tools;
pub mod trace;
pub mod value;

pub use self::engine::{CacheSetting, Engine, EngineBuilder, EngineOptions, ProgramCounters, TraceSink};
pub use self::program::{checked_dag, LoadError, LoadWarning, Program, ProgramOptions};

#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod dialect_tests;
#[cfg(test)]
mod executor_tests;
#[cfg(test)]
mod test_http;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_tests;
