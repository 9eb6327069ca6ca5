// The VS Code side of loopc: starts `loopc lsp` and connects it to the editor. Everything the
// editor shows beyond colours (diagnostics, hover, definitions, rename, completion, formatting,
// outline, semantic colours, quick fixes, the "Run example" lens) comes from the server.
'use strict';

const vscode = require('vscode');
const { LanguageClient, TransportKind } = require('vscode-languageclient/node');

let client;

function serverOptions() {
  const command = vscode.workspace.getConfiguration('loopc').get('serverPath') || 'loopc';
  // `--stdio` is added by the client for the stdio transport; `loopc lsp` accepts it.
  return { command, args: ['lsp'], transport: TransportKind.stdio };
}

function activate(context) {
  const clientOptions = {
    documentSelector: [
      { scheme: 'file', language: 'loop' },
      { scheme: 'untitled', language: 'loop' },
    ],
  };
  client = new LanguageClient('loopc', 'loopc', serverOptions(), clientOptions);
  context.subscriptions.push(
    vscode.commands.registerCommand('loopc.restartServer', async () => {
      if (client) {
        await client.restart();
      }
    }),
  );
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
