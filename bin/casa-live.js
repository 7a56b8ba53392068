#!/usr/bin/env node
// casa-live command line. The TypeScript sources are compiled to dist/ by `npm run build`
// (run automatically by `npm ci` / `npm install` through the "prepare" script).

// Ctrl-C / SIGTERM while modules load: exit 130 at once (nothing has started yet). Commands
// replace this with their own handling (see src/cli/signals.ts).
const early = () => process.exit(130);
globalThis[Symbol.for('casa-live.early-signal-handler')] = early;
process.on('SIGINT', early);
process.on('SIGTERM', early);

const { main } = await import('../dist/cli/main.js');
const code = await main();
// `serve` keeps running (undefined): the daemon exits by itself on SIGTERM / SIGINT.
// Every other command is finished: exit now, even if a library left a handle open.
if (code !== undefined) process.exit(code);
