//! **Running:** prompt templates (adapters), typed values, output parsing and tool calls.
//! The executor, remote models and traces are still to come (see ARCHITECTURE.md).

pub mod adapter;
pub mod tools;
pub mod value;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tool_tests;
