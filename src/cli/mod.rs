//! The `loopc` command line: parses arguments, calls the library, prints results and
//! decides the exit code. Logic lives in the library; this layer only translates.
//!
//! Exit codes, decided here only: 0 success; 1 the command ran and what it checked failed
//! (diagnostics, a failed `fmt --check`, a batch row or eval run that failed, artifacts that
//! differ, a score under `--fail-under`); 2 loopc could not do what was asked (unreadable
//! file, bad arguments, a run error); 130 interrupted by Ctrl-C (finished work is kept).

mod args;
mod bench;
mod bench_compile;
mod bench_loop;
mod bench_model;
mod bench_run;
mod cache;
mod check;
mod compile;
mod eval;
mod fmt;
mod generate;
mod graph;
mod html_report;
mod inspect;
mod learn;
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
    /// The command ran, and what it checked failed (or differed, or scored below the bar).
    Failure,
    /// The user interrupted it (Ctrl-C); what was finished is kept.
    Interrupted,
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
        Command::Cache(c) => cache::run(&c),
        Command::Learn(a) => learn::learn(&a, color),
        Command::Dataset(c) => learn::dataset(&c, color),
        Command::History(a) => learn::history(&a),
        Command::Why(a) => learn::why(&a),
        Command::Bench(BenchCommand::Parse(a)) => bench::parse(&a),
        Command::Bench(BenchCommand::Model(a)) => bench_model::run(&a),
        Command::Bench(BenchCommand::Run(a)) => bench_run::run(&a, color),
        Command::Bench(BenchCommand::Compile(a)) => bench_compile::run(&a, color),
        Command::Bench(BenchCommand::Loop(a)) => bench_loop::run(&a, color),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
