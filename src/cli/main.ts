/**
 * The casa-live command line (bin/casa-live.js → here). Commands: caption, frames, models,
 * models check, serve, config check, bench. See docs/cli.md.
 *
 * Every failure ends with one sentence on stderr ("casa-live: …") and the exit code of its
 * kind (src/errors.ts EXIT_CODES); usage errors found by the parser exit 2.
 */
import yargs, { type Argv } from 'yargs';
import { UsageError } from '../errors.js';
import { VERSION } from '../version.js';
import { COMMANDS, commandName, type CommandContext, type CommandDef } from './commands.js';
import { EXIT_CODES_HELP, ExitRequest, writeError, type CliIo } from './common.js';

export type { CliIo };

/** A usage error found by yargs (unknown option, missing argument, …). */
class ParseError extends UsageError {}

function helpWidth(io: CliIo): number {
  const cols = io.stdout.columns;
  return typeof cols === 'number' && cols > 40 ? Math.min(cols, 110) : 100;
}

/** The parser of the whole command line: the command table (./commands.ts) under the global options. */
export function buildParser(argv: string[], io: CliIo, setCode: (code: number | undefined) => void): Argv {
  const ctx: CommandContext = { argv, io };
  let parser: Argv = yargs(argv)
    .scriptName('casa-live')
    .usage('Usage: $0 <command> [options]\n\nLive video captioning with a CASA model (Cross-Attention via Self-Attention).');
  for (const def of COMMANDS) parser = addCommand(parser, def, ctx, setCode);
  return parser
    .demandCommand(1, 'Name a command: caption, frames, models, serve, config or bench.')
    .strict()
    .recommendCommands()
    .example('$0 caption --demo', 'caption the bundled demo clip')
    .example('$0 caption video.mp4 --srt video.srt', 'subtitles for a video')
    .example('$0 serve --config casa-live.yaml', 'the daemon')
    .epilogue(`${EXIT_CODES_HELP}\n\nEnvironment: CASA_LIVE_MODEL (default model directory), FFMPEG_PATH / FFPROBE_PATH (ffmpeg binaries), NO_COLOR.`)
    .help()
    .alias('help', 'h')
    .version(VERSION)
    .alias('version', 'V')
    .wrap(helpWidth(io))
    .exitProcess(false)
    .fail(failHandler(argv));
}

/** Registers one command of the table (and its subcommands); its handler reports the exit code. */
function addCommand(parser: Argv, def: CommandDef, ctx: CommandContext, setCode: (code: number | undefined) => void): Argv {
  const { run } = def;
  return parser.command(
    def.command,
    def.describe,
    (y) => {
      let built = def.builder(y);
      for (const sub of def.subcommands ?? []) built = addCommand(built, sub, ctx, setCode);
      return built;
    },
    run
      ? async (a) => {
          setCode(await run(a, ctx));
        }
      : undefined,
  );
}

/** yargs' own validation errors (YError) become one-sentence usage errors; anything else came from a command. */
function failHandler(argv: string[]): (msg: string | undefined, err: Error | undefined) => never {
  return (msg, err) => {
    if (err && err.name !== 'YError') throw err;
    if (err) msg = err.message;
    const suggestion = /^Did you mean (\S+?)\??$/.exec(msg ?? '');
    if (suggestion) {
      const typed = argv.find((a) => !a.startsWith('-')) ?? '';
      throw new ParseError(`Unknown command "${typed}" (did you mean ${suggestion[1]}?).`);
    }
    throw new ParseError(/[.!?]$/.test(msg ?? '') ? (msg as string) : `${msg ?? 'invalid command line'}.`);
  };
}

/**
 * Runs the CLI; resolves with the exit code (the bin shim exits with it), or undefined when
 * the command keeps running (serve: the daemon ends the process itself on SIGTERM).
 */
export async function main(
  argv: string[] = process.argv.slice(2),
  io: CliIo = { stdout: process.stdout, stderr: process.stderr, env: process.env },
): Promise<number | undefined> {
  let code: number | undefined = 0;
  try {
    const parser = buildParser(argv, io, (c) => {
      code = c;
    });
    await parser.parseAsync();
    return code;
  } catch (err) {
    if (err instanceof ParseError) {
      io.stderr.write(`casa-live: ${err.message}\nRun "casa-live ${commandOf(argv)}--help" for usage.\n`);
      return err.exitCode;
    }
    if (err instanceof ExitRequest) return err.code;
    return writeError(err, io.stderr, Boolean(io.env.CASA_LIVE_DEBUG));
  }
}

/** "caption ", "models check ", … for the pointer to --help ("" when no command was recognised). */
function commandOf(argv: string[]): string {
  const first = argv.find((a) => !a.startsWith('-'));
  const def = COMMANDS.find((c) => commandName(c) === first);
  if (!first || !def) return '';
  const second = argv[argv.indexOf(first) + 1];
  const sub = def.subcommands?.find((c) => commandName(c) === second);
  return sub ? `${first} ${commandName(sub)} ` : `${first} `;
}
