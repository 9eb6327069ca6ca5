//! The syntax tree of a `.loop` file: what was written, with a span on every node.
//!
//! The tree is faithful to the text (item order, literals as written) and checks nothing about
//! meaning: names are not resolved and types not compared. That is the graph stage's job.

use super::Span;

/// A whole `.loop` file.
#[derive(Clone, Debug, PartialEq)]
pub struct File {
    /// The `program NAME "description"` header that opens every file.
    pub header: Header,
    /// The items after the header, in source order.
    pub items: Vec<Item>,
}

/// `program NAME "description"`.
#[derive(Clone, Debug, PartialEq)]
pub struct Header {
    /// The program's name.
    pub name: Ident,
    /// What the program does.
    pub description: Option<Str>,
    /// The whole header.
    pub span: Span,
}

/// A top-level declaration.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// `input NAME: TYPE "description"`.
    Input(FieldDecl),
    /// `output NAME: TYPE "description"`.
    Output(FieldDecl),
    /// `model NAME = PROVIDER("arg", ...) { key: value }`.
    Model(ModelDecl),
    /// `tool NAME(params) -> TYPE = http|command ... { key: value }`.
    Tool(ToolDecl),
    /// `signature NAME "instruction" { in ... out ... }`.
    Signature(SignatureDecl),
    /// `step NAME = KIND TARGET { bindings } using MODEL`.
    Step(StepDecl),
    /// `return { output: source, ... }`.
    Return(ReturnDecl),
    /// `metric NAME = FUNCTION(args)`.
    Metric(MetricDecl),
    /// `optimize OPTIMIZER { key: value }`.
    Optimize(OptimizeDecl),
    /// `feedback NAME: TYPE "description"` or `feedback correction`.
    Feedback(FeedbackDecl),
    /// `example NAME "description" held_out { input { ... } output { ... } }`.
    Example(ExampleDecl),
    /// `memory STEP { key: value }`.
    Memory(MemoryDecl),
}

impl Item {
    /// The span of the whole item.
    pub fn span(&self) -> Span {
        match self {
            Item::Input(d) | Item::Output(d) => d.span,
            Item::Model(d) => d.span,
            Item::Tool(d) => d.span,
            Item::Signature(d) => d.span,
            Item::Step(d) => d.span,
            Item::Return(d) => d.span,
            Item::Metric(d) => d.span,
            Item::Optimize(d) => d.span,
            Item::Feedback(d) => d.span,
            Item::Example(d) => d.span,
            Item::Memory(d) => d.span,
        }
    }
}

/// A name as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    /// The name.
    pub name: String,
    /// Where it is written.
    pub span: Span,
}

/// A string literal, with escapes resolved (and long strings dedented).
#[derive(Clone, Debug, PartialEq)]
pub struct Str {
    /// The string's value.
    pub value: String,
    /// Where the literal (quotes included) is written.
    pub span: Span,
}

/// `NAME: TYPE "description"`, as in inputs, outputs and signature fields.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldDecl {
    /// The field's name.
    pub name: Ident,
    /// The field's type.
    pub ty: Type,
    /// A description shown to the model.
    pub description: Option<Str>,
    /// The whole declaration.
    pub span: Span,
}

/// A type as written.
#[derive(Clone, Debug, PartialEq)]
pub struct Type {
    /// Which type.
    pub kind: TypeKind,
    /// Where it is written.
    pub span: Span,
}

/// The shape of a written type.
#[derive(Clone, Debug, PartialEq)]
pub enum TypeKind {
    /// A plain name: `text`, `int`, `float`, `bool`, `json`, or a misspelling the graph reports.
    Named(String),
    /// `label(a, b, "c d")`.
    Label(Vec<Str>),
    /// `list<T>`.
    List(Box<Type>),
    /// A named type with constraints: `text(email, max_length: 80)`, `text(/[0-9]{4}/)`,
    /// `json(schema: "...")`.
    Constrained {
        /// The constrained type's name, e.g. `text`.
        name: Ident,
        /// The constraints, in source order.
        constraints: Vec<Constraint>,
    },
}

/// One constraint inside `TYPE(...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Constraint {
    /// Which constraint.
    pub kind: ConstraintKind,
    /// Where it is written.
    pub span: Span,
}

/// The shape of a written constraint.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintKind {
    /// A bare name, such as a format: `email`, `url`, `date`.
    Name(String),
    /// `/pattern/`: the pattern as written between the slashes, with `\/` read as `/`.
    Regex(String),
    /// `key: value`, such as `max_length: 80` or `schema: "..."`.
    Setting {
        /// The setting's name.
        key: Ident,
        /// Its value.
        value: Value,
    },
}

/// `model NAME = PROVIDER("arg", ...) { key: value }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDecl {
    /// The model's name in this program (`default` is used by steps without `using`).
    pub name: Ident,
    /// `onnx` or `openai`.
    pub provider: Ident,
    /// The provider's positional arguments (model name or path; endpoint URL and model name).
    pub args: Vec<Str>,
    /// Decoding parameters and provider options.
    pub config: Config,
    /// The whole declaration.
    pub span: Span,
}

/// `tool NAME(params) -> TYPE = IMPL { key: value }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolDecl {
    /// The tool's name.
    pub name: Ident,
    /// Named, typed parameters.
    pub params: Vec<Param>,
    /// The type of the tool's `result`.
    pub returns: Type,
    /// How the tool runs.
    pub implementation: ToolImpl,
    /// Options such as `timeout_ms`.
    pub config: Config,
    /// The whole declaration.
    pub span: Span,
}

/// `NAME: TYPE` in a tool's parameter list.
#[derive(Clone, Debug, PartialEq)]
pub struct Param {
    /// The parameter's name, usable as `{name}` in templates.
    pub name: Ident,
    /// The parameter's type.
    pub ty: Type,
}

/// How a tool runs.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolImpl {
    /// `http METHOD "url template"`.
    Http {
        /// The HTTP method, e.g. `GET`.
        method: Ident,
        /// The URL, with `{param}` placeholders.
        url: Str,
    },
    /// `command ["program", "arg {param}", ...]`: run directly, never through a shell.
    Command {
        /// The argument vector, each with `{param}` placeholders.
        argv: Vec<Str>,
    },
}

/// `signature NAME "instruction" { in ... out ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct SignatureDecl {
    /// The signature's name.
    pub name: Ident,
    /// The task description given to the model.
    pub instruction: Option<Str>,
    /// Input and output fields in source order.
    pub fields: Vec<SigField>,
    /// The whole declaration.
    pub span: Span,
}

/// `in NAME: TYPE "description"` or `out ...`.
#[derive(Clone, Debug, PartialEq)]
pub struct SigField {
    /// Whether the field is an input or an output.
    pub direction: Direction,
    /// The field itself.
    pub field: FieldDecl,
}

/// The direction of a signature field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// `in`: given to the model.
    In,
    /// `out`: produced by the model.
    Out,
}

/// `step NAME = KIND TARGET { bindings } using MODEL`.
#[derive(Clone, Debug, PartialEq)]
pub struct StepDecl {
    /// The step's name, used as `NAME.field` by later steps.
    pub name: Ident,
    /// What the step does.
    pub kind: StepKind,
    /// Where the kind keyword is written.
    pub kind_span: Span,
    /// The signature (`predict`, `chain_of_thought`) or tool (`call`) used.
    pub target: Ident,
    /// What fills each input of the target.
    pub bindings: Vec<Binding>,
    /// A model overriding the program's default.
    pub model: Option<Ident>,
    /// The whole declaration.
    pub span: Span,
}

/// The kind of a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepKind {
    /// Ask the model for the signature's outputs.
    Predict,
    /// Ask the model to reason first, then give the outputs.
    ChainOfThought,
    /// Run a tool.
    Call,
}

impl StepKind {
    /// The keyword as written in source.
    pub fn keyword(self) -> &'static str {
        match self {
            StepKind::Predict => "predict",
            StepKind::ChainOfThought => "chain_of_thought",
            StepKind::Call => "call",
        }
    }
}

/// `NAME: VALUE` inside `{ ... }` of a step or the return.
#[derive(Clone, Debug, PartialEq)]
pub struct Binding {
    /// The slot being filled.
    pub name: Ident,
    /// What fills it: usually a path such as `input.ticket`, or a literal.
    pub value: Value,
}

/// `return { output: source, ... }`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReturnDecl {
    /// One binding per program output.
    pub bindings: Vec<Binding>,
    /// The whole declaration.
    pub span: Span,
}

/// `metric NAME = FUNCTION(arg, name: arg)`.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricDecl {
    /// The metric's name.
    pub name: Ident,
    /// The metric function, e.g. `exact`.
    pub function: Ident,
    /// Positional and named arguments.
    pub args: Vec<Arg>,
    /// The whole declaration.
    pub span: Span,
}

/// One argument of a metric.
#[derive(Clone, Debug, PartialEq)]
pub struct Arg {
    /// The argument's name, for `name: value` arguments.
    pub name: Option<Ident>,
    /// The argument's value.
    pub value: Value,
}

/// `memory STEP { key: value }`: the step draws demos for each request from stored
/// corrections and approved runs (online memory), with these settings.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryDecl {
    /// The step, e.g. `classify`.
    pub step: Ident,
    /// Its settings.
    pub config: Config,
    /// The whole declaration.
    pub span: Span,
}

/// `optimize OPTIMIZER { key: value }`.
#[derive(Clone, Debug, PartialEq)]
pub struct OptimizeDecl {
    /// The optimizer, e.g. `bootstrap_random_search`.
    pub optimizer: Ident,
    /// Its settings.
    pub config: Config,
    /// The whole declaration.
    pub span: Span,
}

/// `feedback NAME: TYPE "description"`: a kind of feedback the program takes, e.g.
/// `feedback rating: int(1..5)`; `feedback correction` (no type) takes a corrected output.
#[derive(Clone, Debug, PartialEq)]
pub struct FeedbackDecl {
    /// The feedback key, e.g. `thumbs`.
    pub name: Ident,
    /// Its type, when one is written.
    pub ty: Option<Type>,
    /// `(MIN..MAX)` after a numeric type, when written.
    pub range: Option<Range>,
    /// What it asks, for people giving it.
    pub description: Option<Str>,
    /// The whole declaration.
    pub span: Span,
}

/// `(MIN..MAX)`: the inclusive bounds of a numeric feedback.
#[derive(Clone, Debug, PartialEq)]
pub struct Range {
    /// The lower bound (a number literal).
    pub min: Value,
    /// The upper bound (a number literal).
    pub max: Value,
    /// From `(` to `)`.
    pub span: Span,
}

/// `example NAME "description" held_out { input { ... } output { ... } }`: an input of the
/// program and the outputs it should give, both a test (`loopc test`) and training data
/// (`loopc compile`, unless `held_out`).
#[derive(Clone, Debug, PartialEq)]
pub struct ExampleDecl {
    /// The example's name.
    pub name: Ident,
    /// What the example shows.
    pub description: Option<Str>,
    /// Where `held_out` is written, when it is: the example is a test only, never trained on.
    pub held_out: Option<Span>,
    /// `input { field: literal, ... }`: a value for each program input.
    pub inputs: Vec<Binding>,
    /// Where `input { ... }` is written.
    pub inputs_span: Span,
    /// `output { field: literal, ... }`: the expected value of some or all outputs.
    pub outputs: Vec<Binding>,
    /// Where `output { ... }` is written, when it is.
    pub outputs_span: Option<Span>,
    /// The whole declaration.
    pub span: Span,
}

/// `{ key: value, ... }`.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Config {
    /// The entries in source order.
    pub entries: Vec<Binding>,
    /// The braces and everything inside (empty when no braces were written).
    pub span: Span,
}

/// A literal or a dotted path.
#[derive(Clone, Debug, PartialEq)]
pub struct Value {
    /// Which value.
    pub kind: ValueKind,
    /// Where it is written.
    pub span: Span,
}

/// The shape of a value.
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKind {
    /// A string literal.
    Str(String),
    /// An integer literal.
    Int(i64),
    /// A floating-point literal.
    Float(f64),
    /// `true` or `false`.
    Bool(bool),
    /// `[v, ...]`.
    List(Vec<Value>),
    /// `a`, `a.b`: a name or a reference such as `input.ticket`.
    Path(Vec<Ident>),
}
