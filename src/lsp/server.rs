//! The server's main loop: the initialize handshake (capabilities, the position encoding),
//! open documents and their changes, one handler per request, and diagnostics published
//! after every change. Everything but running examples happens on this thread, in order;
//! running an example goes to a [`Runner`] thread, which answers when done.

use std::collections::HashMap;

use lsp_server::{Connection, ErrorCode, ExtractError, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Notification as _, PublishDiagnostics};
use lsp_types::request::{
    CodeActionRequest, CodeLensRequest, Completion, DocumentHighlightRequest, DocumentSymbolRequest, ExecuteCommand, Formatting, GotoDefinition, HoverRequest,
    PrepareRenameRequest, References, Rename, Request as _, SemanticTokensFullRequest,
};
use lsp_types::{
    CodeAction, CodeActionKind, CodeActionOrCommand, CodeActionProviderCapability, CodeLensOptions, CompletionItem, CompletionItemKind, CompletionOptions,
    CompletionResponse, DiagnosticRelatedInformation, DiagnosticSeverity, DocumentHighlight, DocumentHighlightKind, DocumentSymbolResponse, Documentation,
    ExecuteCommandOptions, GotoDefinitionResponse, Hover, HoverContents, HoverProviderCapability, InitializeParams, Location, MarkupContent, MarkupKind,
    NumberOrString, OneOf, Position, PrepareRenameResponse, PublishDiagnosticsParams, RenameOptions, SemanticTokens, SemanticTokensFullOptions,
    SemanticTokensOptions, SemanticTokensResult, SemanticTokensServerCapabilities, ServerCapabilities, ServerInfo, TextDocumentContentChangeEvent,
    TextDocumentSyncCapability, TextDocumentSyncKind, TextEdit, Url, WorkspaceEdit,
};
use serde_json::Value;

use super::analysis::Analysis;
use super::completion::{self, Kind};
use super::position::{Encoding, Positions};
use super::runner::{Runner, RUN_EXAMPLE};
use super::{actions, hover, navigate, symbols, tokens};
use crate::syntax::{Diagnostic, Severity, Span};

/// Why the server stopped other than by `shutdown` and `exit`.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Occurs when the client breaks the protocol (e.g. exits before initializing).
    #[error("protocol error: {0}")]
    Protocol(#[from] lsp_server::ProtocolError),
    /// Occurs when the client's `initialize` parameters cannot be read.
    #[error("cannot read the client's `initialize` request: {0}")]
    Initialize(#[from] serde_json::Error),
    /// Occurs when the client's end of the connection closes.
    #[error("the connection to the client closed")]
    Disconnected,
}

/// One open document: the latest analysis, and the latest that parsed (whose names complete
/// while the text does not parse).
struct Document {
    uri: Url,
    version: i32,
    analysis: Analysis,
    parsed: Option<Analysis>,
}

impl Document {
    fn names(&self) -> &super::index::Index {
        match (&self.analysis.file, &self.parsed) {
            (None, Some(good)) => &good.index,
            _ => &self.analysis.index,
        }
    }
}

/// What the server learnt at `initialize`, and its state since.
struct Server {
    connection: Connection,
    encoding: Encoding,
    documents: HashMap<Url, Document>,
    runner: Runner,
}

/// Serves one client on `connection` until it asks to shut down and exits.
pub fn serve(connection: Connection) -> Result<(), ServerError> {
    let (id, params) = connection.initialize_start()?;
    let params: InitializeParams = serde_json::from_value(params)?;
    let offered = params.capabilities.general.as_ref().and_then(|g| g.position_encodings.as_deref());
    let encoding = Encoding::negotiate(offered);
    let result = serde_json::json!({
        "capabilities": capabilities(encoding),
        "serverInfo": ServerInfo { name: "loopc".into(), version: Some(env!("CARGO_PKG_VERSION").into()) },
    });
    connection.initialize_finish(id, result)?;
    let runner = Runner::new(connection.sender.clone());
    let mut server = Server { connection, encoding, documents: HashMap::new(), runner };
    server.main_loop()
}

/// What the server can do.
fn capabilities(encoding: Encoding) -> ServerCapabilities {
    ServerCapabilities {
        position_encoding: Some(encoding.kind()),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::INCREMENTAL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        definition_provider: Some(OneOf::Left(true)),
        references_provider: Some(OneOf::Left(true)),
        document_highlight_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Right(RenameOptions { prepare_provider: Some(true), work_done_progress_options: Default::default() })),
        completion_provider: Some(CompletionOptions { trigger_characters: Some(vec![".".into(), ":".into()]), ..Default::default() }),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        semantic_tokens_provider: Some(SemanticTokensServerCapabilities::SemanticTokensOptions(SemanticTokensOptions {
            legend: tokens::legend(),
            full: Some(SemanticTokensFullOptions::Bool(true)),
            range: None,
            work_done_progress_options: Default::default(),
        })),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        code_lens_provider: Some(CodeLensOptions { resolve_provider: Some(false) }),
        execute_command_provider: Some(ExecuteCommandOptions { commands: vec![RUN_EXAMPLE.into()], work_done_progress_options: Default::default() }),
        ..Default::default()
    }
}

/// A handler's failure, answered as an error response.
struct Failure {
    code: ErrorCode,
    message: String,
}

impl Failure {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Failure { code, message: message.into() }
    }
}

type Handled<T> = Result<T, Failure>;

impl Server {
    fn main_loop(&mut self) -> Result<(), ServerError> {
        loop {
            let Ok(message) = self.connection.receiver.recv() else { return Err(ServerError::Disconnected) };
            match message {
                Message::Request(req) => {
                    if self.connection.handle_shutdown(&req)? {
                        return Ok(());
                    }
                    self.request(req);
                }
                Message::Notification(n) => self.notification(n),
                Message::Response(_) => {}
            }
        }
    }

    fn send(&self, message: Message) {
        // A send fails only once the client has gone; the main loop then ends on its own.
        let _ = self.connection.sender.send(message);
    }

    fn notification(&mut self, n: Notification) {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidOpenTextDocumentParams>(n.params) else { return };
                let doc = p.text_document;
                let analysis = Analysis::new(doc.text);
                self.documents.insert(doc.uri.clone(), Document { uri: doc.uri.clone(), version: doc.version, analysis, parsed: None });
                self.publish(&doc.uri);
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidChangeTextDocumentParams>(n.params) else { return };
                let encoding = self.encoding;
                let Some(doc) = self.documents.get_mut(&p.text_document.uri) else { return };
                let text = apply_changes(&doc.analysis, p.content_changes, encoding);
                let analysis = Analysis::new(text);
                let old = std::mem::replace(&mut doc.analysis, analysis);
                if doc.analysis.file.is_some() {
                    doc.parsed = None;
                } else if old.file.is_some() {
                    doc.parsed = Some(old);
                }
                doc.version = p.text_document.version;
                self.publish(&p.text_document.uri);
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp_types::DidCloseTextDocumentParams>(n.params) else { return };
                if self.documents.remove(&p.text_document.uri).is_some() {
                    let params = PublishDiagnosticsParams { uri: p.text_document.uri, diagnostics: Vec::new(), version: None };
                    self.send(Message::Notification(Notification::new(PublishDiagnostics::METHOD.into(), params)));
                }
            }
            _ => {}
        }
    }

    /// Publishes the diagnostics of the document at `uri`.
    fn publish(&self, uri: &Url) {
        let Some(doc) = self.documents.get(uri) else { return };
        let a = &doc.analysis;
        let positions = Positions::new(&a.text, &a.lines, self.encoding);
        let diagnostics = a.diagnostics.iter().map(|d| diagnostic(d, &doc.uri, &positions)).collect();
        let params = PublishDiagnosticsParams { uri: doc.uri.clone(), diagnostics, version: Some(doc.version) };
        self.send(Message::Notification(Notification::new(PublishDiagnostics::METHOD.into(), params)));
    }

    fn request(&mut self, req: Request) {
        let id = req.id.clone();
        let result = match req.method.as_str() {
            HoverRequest::METHOD => self.handle::<HoverRequest>(req, Server::hover),
            GotoDefinition::METHOD => self.handle::<GotoDefinition>(req, Server::definition),
            References::METHOD => self.handle::<References>(req, Server::references),
            DocumentHighlightRequest::METHOD => self.handle::<DocumentHighlightRequest>(req, Server::highlights),
            PrepareRenameRequest::METHOD => self.handle::<PrepareRenameRequest>(req, Server::prepare_rename),
            Rename::METHOD => self.handle::<Rename>(req, Server::rename),
            Completion::METHOD => self.handle::<Completion>(req, Server::completion),
            Formatting::METHOD => self.handle::<Formatting>(req, Server::formatting),
            DocumentSymbolRequest::METHOD => self.handle::<DocumentSymbolRequest>(req, Server::document_symbols),
            SemanticTokensFullRequest::METHOD => self.handle::<SemanticTokensFullRequest>(req, Server::semantic_tokens),
            CodeActionRequest::METHOD => self.handle::<CodeActionRequest>(req, Server::code_actions),
            CodeLensRequest::METHOD => self.handle::<CodeLensRequest>(req, Server::code_lenses),
            ExecuteCommand::METHOD => {
                // Answered by the runner when the example has run.
                match self.execute(req) {
                    Ok(()) => return,
                    Err(f) => Err(f),
                }
            }
            other => Err(Failure::new(ErrorCode::MethodNotFound, format!("loopc does not handle `{other}`"))),
        };
        let response = match result {
            Ok(value) => Response { id, result: Some(value), error: None },
            Err(f) => Response::new_err(id, f.code as i32, f.message),
        };
        self.send(Message::Response(response));
    }

    /// Reads `req`'s parameters as `R`'s and answers with `f`'s result.
    fn handle<R: lsp_types::request::Request>(&mut self, req: Request, f: impl FnOnce(&Self, R::Params) -> Handled<R::Result>) -> Handled<Value> {
        let (_, params) = req.extract::<R::Params>(R::METHOD).map_err(|e| match e {
            ExtractError::JsonError { error, .. } => Failure::new(ErrorCode::InvalidParams, error.to_string()),
            ExtractError::MethodMismatch(r) => Failure::new(ErrorCode::MethodNotFound, r.method),
        })?;
        let result = f(self, params)?;
        serde_json::to_value(result).map_err(|e| Failure::new(ErrorCode::InternalError, e.to_string()))
    }

    fn document(&self, uri: &Url) -> Handled<&Document> {
        self.documents.get(uri).ok_or_else(|| Failure::new(ErrorCode::InvalidParams, format!("`{uri}` is not open")))
    }

    /// The document at `uri`, its position converter and the byte offset of `position`.
    fn at(&self, uri: &Url, position: Position) -> Handled<(&Document, Positions<'_>, usize)> {
        let doc = self.document(uri)?;
        let positions = Positions::new(&doc.analysis.text, &doc.analysis.lines, self.encoding);
        let offset = positions.offset(position);
        Ok((doc, positions, offset))
    }

    fn hover(&self, p: lsp_types::HoverParams) -> Handled<Option<Hover>> {
        let tdp = p.text_document_position_params;
        let (doc, positions, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        Ok(hover::hover(&doc.analysis, offset).map(|(markdown, span)| Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: markdown }),
            range: Some(positions.range(span)),
        }))
    }

    fn definition(&self, p: lsp_types::GotoDefinitionParams) -> Handled<Option<GotoDefinitionResponse>> {
        let tdp = p.text_document_position_params;
        let (doc, positions, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        Ok(navigate::definition(&doc.analysis, offset)
            .map(|span| GotoDefinitionResponse::Scalar(Location { uri: doc.uri.clone(), range: positions.range(span) })))
    }

    fn references(&self, p: lsp_types::ReferenceParams) -> Handled<Option<Vec<Location>>> {
        let tdp = p.text_document_position;
        let (doc, positions, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        let spans = navigate::references(&doc.analysis, offset, p.context.include_declaration);
        Ok(Some(spans.into_iter().map(|s| Location { uri: doc.uri.clone(), range: positions.range(s) }).collect()))
    }

    /// The other places the name under the cursor is written, its declaration marked as written.
    fn highlights(&self, p: lsp_types::DocumentHighlightParams) -> Handled<Option<Vec<DocumentHighlight>>> {
        let tdp = p.text_document_position_params;
        let (doc, positions, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        let spans = navigate::references(&doc.analysis, offset, true);
        let highlights = spans
            .into_iter()
            .enumerate()
            .map(|(i, s)| DocumentHighlight {
                range: positions.range(s),
                kind: Some(if i == 0 { DocumentHighlightKind::WRITE } else { DocumentHighlightKind::READ }),
            })
            .collect();
        Ok(Some(highlights))
    }

    fn prepare_rename(&self, p: lsp_types::TextDocumentPositionParams) -> Handled<Option<PrepareRenameResponse>> {
        let (doc, positions, offset) = self.at(&p.text_document.uri, p.position)?;
        let span = navigate::prepare_rename(&doc.analysis, offset).map_err(|e| Failure::new(ErrorCode::RequestFailed, e.to_string()))?;
        Ok(Some(PrepareRenameResponse::Range(positions.range(span))))
    }

    fn rename(&self, p: lsp_types::RenameParams) -> Handled<Option<WorkspaceEdit>> {
        let tdp = p.text_document_position;
        let (doc, positions, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        let spans = navigate::rename(&doc.analysis, offset, &p.new_name).map_err(|e| Failure::new(ErrorCode::RequestFailed, e.to_string()))?;
        let edits = spans.into_iter().map(|s| TextEdit { range: positions.range(s), new_text: p.new_name.clone() }).collect();
        Ok(Some(WorkspaceEdit { changes: Some(HashMap::from([(doc.uri.clone(), edits)])), ..Default::default() }))
    }

    fn completion(&self, p: lsp_types::CompletionParams) -> Handled<Option<CompletionResponse>> {
        let tdp = p.text_document_position;
        let (doc, _, offset) = self.at(&tdp.text_document.uri, tdp.position)?;
        let items = completion::complete(&doc.analysis, doc.names(), offset)
            .into_iter()
            .map(|c| CompletionItem {
                label: c.label,
                kind: Some(completion_kind(c.kind)),
                detail: c.detail,
                documentation: c.doc.map(|d| Documentation::MarkupContent(MarkupContent { kind: MarkupKind::Markdown, value: d })),
                ..Default::default()
            })
            .collect();
        Ok(Some(CompletionResponse::Array(items)))
    }

    fn formatting(&self, p: lsp_types::DocumentFormattingParams) -> Handled<Option<Vec<TextEdit>>> {
        let doc = self.document(&p.text_document.uri)?;
        let a = &doc.analysis;
        // The same text as `loopc fmt`; a file that does not parse is left as it is.
        let formatted = crate::syntax::format_source(&a.text).map_err(|d| Failure::new(ErrorCode::RequestFailed, format!("cannot format: {}", d.message)))?;
        if formatted == a.text {
            return Ok(Some(Vec::new()));
        }
        let positions = Positions::new(&a.text, &a.lines, self.encoding);
        Ok(Some(vec![TextEdit { range: positions.range(Span::new(0, a.text.len())), new_text: formatted }]))
    }

    fn document_symbols(&self, p: lsp_types::DocumentSymbolParams) -> Handled<Option<DocumentSymbolResponse>> {
        let doc = self.document(&p.text_document.uri)?;
        let positions = Positions::new(&doc.analysis.text, &doc.analysis.lines, self.encoding);
        Ok(Some(DocumentSymbolResponse::Nested(symbols::outline(&doc.analysis, &positions))))
    }

    fn semantic_tokens(&self, p: lsp_types::SemanticTokensParams) -> Handled<Option<SemanticTokensResult>> {
        let doc = self.document(&p.text_document.uri)?;
        let positions = Positions::new(&doc.analysis.text, &doc.analysis.lines, self.encoding);
        let data = tokens::encode(&doc.analysis, &positions);
        Ok(Some(SemanticTokensResult::Tokens(SemanticTokens { result_id: None, data })))
    }

    fn code_actions(&self, p: lsp_types::CodeActionParams) -> Handled<Option<Vec<CodeActionOrCommand>>> {
        let doc = self.document(&p.text_document.uri)?;
        let a = &doc.analysis;
        let positions = Positions::new(&a.text, &a.lines, self.encoding);
        let range = positions.span(p.range);
        let actions = actions::fixes(a, range)
            .into_iter()
            .map(|fix| {
                let edit = TextEdit { range: positions.range(fix.span), new_text: fix.replacement };
                CodeActionOrCommand::CodeAction(CodeAction {
                    title: fix.title,
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![diagnostic(&a.diagnostics[fix.diagnostic], &doc.uri, &positions)]),
                    edit: Some(WorkspaceEdit { changes: Some(HashMap::from([(doc.uri.clone(), vec![edit])])), ..Default::default() }),
                    is_preferred: Some(true),
                    ..Default::default()
                })
            })
            .collect();
        Ok(Some(actions))
    }

    fn code_lenses(&self, p: lsp_types::CodeLensParams) -> Handled<Option<Vec<lsp_types::CodeLens>>> {
        let doc = self.document(&p.text_document.uri)?;
        let positions = Positions::new(&doc.analysis.text, &doc.analysis.lines, self.encoding);
        Ok(Some(super::runner::lenses(&doc.analysis, doc.uri.as_str(), &positions)))
    }

    /// Starts `loopc.runExample`; the runner answers the request.
    fn execute(&self, req: Request) -> Handled<()> {
        let (id, p): (RequestId, lsp_types::ExecuteCommandParams) = req.extract(ExecuteCommand::METHOD).map_err(|e| match e {
            ExtractError::JsonError { error, .. } => Failure::new(ErrorCode::InvalidParams, error.to_string()),
            ExtractError::MethodMismatch(r) => Failure::new(ErrorCode::MethodNotFound, r.method),
        })?;
        if p.command != RUN_EXAMPLE {
            return Err(Failure::new(ErrorCode::InvalidParams, format!("unknown command `{}`", p.command)));
        }
        let uri = p.arguments.first().and_then(Value::as_str).and_then(|u| Url::parse(u).ok());
        let Some(uri) = uri else {
            return Err(Failure::new(ErrorCode::InvalidParams, format!("`{RUN_EXAMPLE}` takes the document's URI, then an example's name")));
        };
        let name = p.arguments.get(1).and_then(Value::as_str).map(str::to_string);
        let doc = self.document(&uri)?;
        let source_name = uri.to_file_path().map_or_else(|_| uri.to_string(), |p| p.display().to_string());
        self.runner.start(id, source_name, doc.analysis.text.clone(), name);
        Ok(())
    }
}

/// `changes` applied in order to the text of `a` (ranges in `encoding`).
fn apply_changes(a: &Analysis, changes: Vec<TextDocumentContentChangeEvent>, encoding: Encoding) -> String {
    let mut text = a.text.clone();
    for change in changes {
        match change.range {
            None => text = change.text,
            Some(range) => {
                let lines = crate::syntax::LineIndex::new(&text);
                let span = Positions::new(&text, &lines, encoding).span(range);
                text.replace_range(span.range(), &change.text);
            }
        }
    }
    text
}

/// A loopc diagnostic as the protocol's: hints become `help:` lines, related locations
/// related information.
fn diagnostic(d: &Diagnostic, uri: &Url, positions: &Positions<'_>) -> lsp_types::Diagnostic {
    let mut message = d.message.clone();
    for hint in &d.hints {
        message.push_str("\nhelp: ");
        message.push_str(hint);
    }
    let related: Vec<DiagnosticRelatedInformation> = d
        .related
        .iter()
        .map(|(span, note)| DiagnosticRelatedInformation { location: Location { uri: uri.clone(), range: positions.range(*span) }, message: note.clone() })
        .collect();
    lsp_types::Diagnostic {
        range: positions.range(d.span),
        severity: Some(match d.severity {
            Severity::Error => DiagnosticSeverity::ERROR,
            Severity::Warning => DiagnosticSeverity::WARNING,
        }),
        code: Some(NumberOrString::String(d.code.into())),
        source: Some("loopc".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        ..Default::default()
    }
}

fn completion_kind(kind: Kind) -> CompletionItemKind {
    match kind {
        Kind::Keyword => CompletionItemKind::KEYWORD,
        Kind::Type => CompletionItemKind::TYPE_PARAMETER,
        Kind::Step => CompletionItemKind::FUNCTION,
        Kind::Signature => CompletionItemKind::INTERFACE,
        Kind::Tool => CompletionItemKind::METHOD,
        Kind::Model => CompletionItemKind::MODULE,
        Kind::Function => CompletionItemKind::FUNCTION,
        Kind::Field => CompletionItemKind::FIELD,
        Kind::Label => CompletionItemKind::ENUM_MEMBER,
        Kind::Setting => CompletionItemKind::PROPERTY,
        Kind::Value => CompletionItemKind::VALUE,
    }
}
