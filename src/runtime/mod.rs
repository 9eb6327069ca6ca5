//! **Running:** prompt templates (adapters), typed values and output parsing. The executor,
//! tools, remote models and traces are still to come (see ARCHITECTURE.md).

pub mod adapter;
pub mod value;

#[cfg(test)]
mod tests;
