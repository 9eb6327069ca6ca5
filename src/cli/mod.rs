//! The `loopc` command line: parses arguments, calls the library, prints results and
//! decides the exit code. Logic lives in the library; this layer only translates.
//!
//! Exit codes, decided here only: 0 success; 1 the command ran and what it checked failed
//! (diagnostics, a failed `fmt --check`, a batch row or eval run that failed, artifacts that
//! differ, a score under `--fail-under`); 2 loopc could not do what was asked (unreadable
//! file, bad arguments, a run error, part of the work impossible); 130 interrupted by Ctrl-C
//! (finished work is kept).
//!
//! A closed standard output or error (`loopc check --json . | head -1`) means the reader has
//! stopped: like ripgrep, loopc then stops quietly and exits 0, printing nothing more.

mod args;
mod bench;
mod bench_accuracy;
mod bench_compile;
mod bench_loop;
mod bench_lsp;
mod bench_memory;
mod bench_model;
mod bench_review;
mod bench_run;
mod bench_serve;
mod bench_structured;
mod cache;
mod check;
mod compile;
mod eval;
mod fmt;
mod generate;
mod graph;
mod html_report;
mod inspect;
mod interrupt;
mod learn;
mod lsp;
mod malloc;
mod measure;
mod model;
mod progress;
mod prompt;
mod report;
mod run;
mod serve;
mod source;
mod store;
mod test;

use std::io::Write;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use args::{BenchCommand, Cli, Command, FeedbackCommand, RunsCommand};

/// What a command concluded, when it ran to the end.
pub enum Outcome {
    /// Everything was fine.
    Success,
    /// The command ran, and what it checked failed (or differed, or scored below the bar).
    Failure,
    /// The user interrupted it (Ctrl-C); what was finished is kept.
    Interrupted,
    /// Part of what was asked could not be done (an unreadable file among several), and the
    /// command has already said why.
    Unable,
}

/// How much commands write to standard error, from the global `-q` and `-v` flags.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    /// `-q`: errors only.
    Quiet,
    /// The default.
    Normal,
    /// `-v`: also what was done without a problem.
    Verbose,
}

impl Cli {
    /// The verbosity the flags ask for.
    pub fn verbosity(&self) -> Verbosity {
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (false, true) => Verbosity::Verbose,
            (false, false) => Verbosity::Normal,
        }
    }
}

/// Runs the command line and returns the process exit code.
pub fn main() -> ExitCode {
    quiet_on_closed_output();
    let cli = Cli::parse();
    // Before any thread starts (parsing starts none). An HTTP server keeps glibc's arena per
    // thread: one arena cost its concurrent small allocations throughput (see `malloc`).
    if !cli.command.serves_http() {
        malloc::one_arena();
    }
    let color = report::use_color(cli.color);
    let verbosity = cli.verbosity();
    let result = match cli.command {
        Command::Check(a) => check::run(&a, color, verbosity),
        Command::Graph(a) => graph::run(&a, color),
        Command::Fmt(a) => fmt::run(&a, color, verbosity),
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
        Command::Bench(BenchCommand::Accuracy(a)) => bench_accuracy::run(&a, color),
        Command::Bench(BenchCommand::Structured(a)) => bench_structured::run(&a, color),
        Command::Bench(BenchCommand::Serve(a)) => bench_serve::run(&a, color),
        Command::Bench(BenchCommand::Review(a)) => bench_review::run(&a),
        Command::Bench(BenchCommand::Memory(a)) => bench_memory::run(&a),
        Command::Serve(a) => serve::run(&a, color),
        Command::Runs(RunsCommand::List(a)) => store::runs_list(&a),
        Command::Runs(RunsCommand::Show(a)) => store::runs_show(&a),
        Command::Feedback(FeedbackCommand::List(a)) => store::feedback_list(&a),
        Command::Forget(a) => store::forget(&a),
        Command::Bench(BenchCommand::Loop(a)) => bench_loop::run(&a, color),
        Command::Completions(a) => completions(a.shell),
        Command::Test(a) => test::run(&a, color),
        Command::Lsp(a) => lsp::run(&a),
        Command::Bench(BenchCommand::Lsp(a)) => bench_lsp::run(&a),
    };
    match result {
        Ok(Outcome::Success) => ExitCode::SUCCESS,
        Ok(Outcome::Failure) => ExitCode::from(1),
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Ok(Outcome::Unable) => ExitCode::from(2),
        Err(e) if is_closed_output(&e) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", report::printable(&format!("{e:#}")));
            ExitCode::from(2)
        }
    }
}

/// `loopc completions SHELL`: the script, written in one piece (clap_complete itself panics
/// when its output closes early).
fn completions(shell: clap_complete::Shell) -> anyhow::Result<Outcome> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "loopc", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(Outcome::Success)
}

/// Whether `e` comes from writing to an output whose reader has gone.
fn is_closed_output(e: &anyhow::Error) -> bool {
    e.chain().any(|cause| cause.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Commands that write with `?` hand a broken pipe to [`main`] as an error; `println!` and
/// `eprintln!` panic on one instead, with std's "failed printing to stdout" message. This
/// hook turns that panic into the same quiet exit 0, so every command, however it prints,
/// stops cleanly when its reader does. Any other panic is reported as before.
fn quiet_on_closed_output() {
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload.downcast_ref::<String>().map(String::as_str).or_else(|| payload.downcast_ref::<&str>().copied()).unwrap_or("");
        if message.starts_with("failed printing to std") && message.contains("Broken pipe") {
            std::process::exit(0);
        }
        report(info);
    }));
}
