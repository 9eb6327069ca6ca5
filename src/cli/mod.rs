//! The `loopc` command line: parses arguments, calls the library, prints results and
//! decides the exit code. Logic lives in the library; this layer only translates.
//!
//! Exit codes: 0 success, 1 the input was checked and found wanting (diagnostics, a failed
//! `fmt --check`), 2 loopc could not do what was asked (unreadable file, bad arguments).

mod args;
mod bench;
mod bench_accuracy;
mod bench_compile;
mod bench_model;
mod bench_run;
mod check;
mod compile;
mod eval;
mod fmt;
mod generate;
mod graph;
mod html_report;
mod inspect;
mod model;
mod progress;
mod prompt;
mod report;
mod run;
mod source;

use std::process::ExitCode;

use clap::Parser;

use args::{BenchCommand, Cli, Command};

/// What a command concluded, when it ran to the end.
pub enum Outcome {
    /// Everything was fine.
    Success,
    /// The command ran, and what it checked failed.
    Failure,
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let color = report::use_color(cli.color);
    let result = match cli.command {
        Command::Check(a) => check::run(&a, color),
        Command::Graph(a) => graph::run(&a, color),
        Command::Fmt(a) => fmt::run(&a, color),
        Command::Run(a) => run::run(&a, color),
        Command::Prompt(a) => prompt::run(&a, color),
        Command::Compile(a) => compile::compile(&a, color),
        Command::Eval(a) => eval::run(&a, color),
        Command::Inspect(a) => inspect::inspect(&a),
        Command::Diff(a) => inspect::diff(&a),
        Command::Generate(a) => generate::run(&a),
        Command::Model(c) => model::run(&c),
        Command::Bench(BenchCommand::Parse(a)) => bench::parse(&a),
        Command::Bench(BenchCommand::Model(a)) => bench_model::run(&a),
        Command::Bench(BenchCommand::Run(a)) => bench_run::run(&a, color),
        Command::Bench(BenchCommand::Compile(a)) => bench_compile::run(&a, color),
        Command::Bench(BenchCommand::Accuracy(a)) => bench_accuracy::run(&a, color),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
