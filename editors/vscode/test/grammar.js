// Tokenizes `.loop` files with the extension's TextMate grammar, as VS Code does (vscode-textmate
// with the Oniguruma regex engine), and prints every token as JSON lines:
//   {"file": F, "line": L, "start": S, "end": E, "scopes": [...]}
// with columns in UTF-16 code units, as VS Code counts them. loopc's tests compare these scopes
// with what the language server itself says each token is (tests/editors.rs).
'use strict';

const fs = require('fs');
const path = require('path');
const vsctm = require('vscode-textmate');
const oniguruma = require('vscode-oniguruma');

async function main() {
  const files = process.argv.slice(2);
  if (files.length === 0) {
    console.error('usage: node test/grammar.js FILE.loop...');
    process.exit(2);
  }
  const wasm = fs.readFileSync(path.join(path.dirname(require.resolve('vscode-oniguruma')), 'onig.wasm'));
  await oniguruma.loadWASM(wasm.buffer);
  const registry = new vsctm.Registry({
    onigLib: Promise.resolve({
      createOnigScanner: (patterns) => new oniguruma.OnigScanner(patterns),
      createOnigString: (s) => new oniguruma.OnigString(s),
    }),
    loadGrammar: async (scopeName) => {
      if (scopeName !== 'source.loop') return null;
      const file = path.join(__dirname, '..', 'syntaxes', 'loop.tmLanguage.json');
      return vsctm.parseRawGrammar(fs.readFileSync(file, 'utf8'), file);
    },
  });
  const grammar = await registry.loadGrammar('source.loop');
  const out = [];
  for (const file of files) {
    const lines = fs.readFileSync(file, 'utf8').split('\n');
    let state = vsctm.INITIAL;
    lines.forEach((text, line) => {
      const result = grammar.tokenizeLine(text, state);
      for (const t of result.tokens) {
        out.push(JSON.stringify({ file, line, start: t.startIndex, end: Math.min(t.endIndex, text.length), scopes: t.scopes }));
      }
      state = result.ruleStack;
    });
  }
  process.stdout.write(out.join('\n') + '\n');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
