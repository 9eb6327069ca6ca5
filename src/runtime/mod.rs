//! **Running:** prompt templates (adapters), typed values, output parsing, tool calls and
//! model backends. The executor and traces are still to come (see ARCHITECTURE.md).

pub mod adapter;
pub mod backend;
pub mod cache;
pub mod executor;
mod program;
pub mod tools;
pub mod trace;

pub use self::program::{check, LoadError, Program, ProgramOptions, ResponseCache};
pub mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_tests;
#[cfg(test)]
mod backend_tests;
#[cfg(test)]
mod executor_tests;
#[cfg(test)]
mod test_http;
