#!/usr/bin/env node
// Validate an AsyncAPI document with @asyncapi/parser (the reference parser: schema, references,
// message examples against their payload and headers, the spectral AsyncAPI ruleset).
//
//   node scripts/validate-asyncapi.mjs [specs/asyncapi.yaml]
//
// Prints one JSON report on stdout: {"document", "errors": [...], "warnings": [...], "infos": n,
// "hints": n}, each diagnostic as {code, message, path, line}. Exits 1 if any diagnostic has
// severity error (the document is then unusable), 0 otherwise; warnings are reported, and
// tests/unit/messaging/test_asyncapi_parser.py fails on them too.
import { readFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { resolve } from 'node:path';

const require = createRequire(new URL('../tools/node_modules/', import.meta.url));
const { Parser, DiagnosticSeverity } = require('@asyncapi/parser');

const file = resolve(process.argv[2] ?? 'specs/asyncapi.yaml');
const parser = new Parser();
const diagnostics = await parser.validate(await readFile(file, 'utf8'), { source: file });
const shown = (severity) => diagnostics.filter((d) => d.severity === severity).map((d) => ({
  code: String(d.code), message: d.message, path: d.path.join('.'), line: d.range.start.line + 1,
}));
const report = {
  document: file,
  errors: shown(DiagnosticSeverity.Error),
  warnings: shown(DiagnosticSeverity.Warning),
  infos: shown(DiagnosticSeverity.Information).length,
  hints: shown(DiagnosticSeverity.Hint).length,
};
console.log(JSON.stringify(report, null, 2));
process.exitCode = report.errors.length > 0 ? 1 : 0;
