//! **Compiling:** datasets, metrics, evaluation and the optimizers that turn a program and
//! its data into an [`Artifact`](crate::runtime::artifact::Artifact). Reads the runtime;
//! the runtime knows nothing of this module.

pub mod dataset;
pub mod evaluate;
pub mod examples;
pub mod metric;
pub mod optimize;

pub use self::dataset::{Dataset, DatasetError, Example};
pub use self::evaluate::{evaluate, evaluate_until, Budget, Evaluation};
pub use self::examples::{run_examples, ExampleRun};
pub use self::metric::{Metric, MetricError, Rater, TerminalRater};
pub use self::optimize::{compile, CompileError, Event, Job, Plan};

#[cfg(test)]
mod tests;
