#!/usr/bin/env node
// Entry point of the `mixtile` command: runs the compiled CLI (built by `npm install`).
import { existsSync } from 'node:fs';
const cli = new URL('../dist/cli/index.js', import.meta.url);
if (!existsSync(cli)) {
  console.error('mixtile: dist/ is missing; run "npm install" (or "npm run build") in the mixtile folder first');
  process.exit(1);
}
await import(cli.href);
