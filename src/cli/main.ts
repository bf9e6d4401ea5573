#!/usr/bin/env node
// Entry point of the `keypool` command (package.json bin). Everything lives in run.ts so tests can call runCli.
import { runCli } from './run.js';

const code = await runCli(process.argv.slice(2));
process.exitCode = code;
// Normally the process ends here by itself. If a driver left a handle open, end anyway shortly after
// (unref: this timer alone never keeps the process alive).
setTimeout(() => process.exit(code), 2_000).unref();
