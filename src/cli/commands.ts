/**
 * The table of casa-live commands: for each, its yargs definition (options, examples) and
 * what it runs. src/cli/main.ts builds the parser from it; docs/cli.md describes the same.
 *
 * Command modules are imported when their command runs: --help and usage errors stay fast
 * (no onnxruntime, sharp or server code loaded).
 */
import type { Argv } from 'yargs';
import { UsageError } from '../errors.js';
import type { CaptionArgs } from './caption-plan.js';
import { EXIT_CODES_HELP, type CliIo } from './common.js';
import type { FramesArgs } from './frames.js';

/** What a command's handler gets besides its parsed arguments. */
export interface CommandContext {
  /** The raw arguments (yargs hides a positional "-"; bench echoes them). */
  argv: string[];
  io: CliIo;
}

export interface CommandDef {
  /** yargs command string: the name, then its positionals. */
  command: string;
  describe: string;
  // yargs' builder types change with every option; the table only needs "an Argv in, an Argv out".
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  builder: (y: Argv) => Argv<any>;
  subcommands?: CommandDef[];
  /** Resolves with the exit code (undefined: the command keeps running); absent for a group of subcommands. */
  run?: (a: Record<string, unknown>, ctx: CommandContext) => Promise<number | undefined> | number;
}

const LOG_LEVEL_OPTION = {
  type: 'string',
  describe: 'JSON log lines on stderr at this level (fatal, error, warn, info, debug, trace, silent)',
  default: undefined,
  defaultDescription: 'silent',
} as const;

const INPUT_DESCRIPTION = 'file path, URL, /dev/videoN, or - for stdin';

const caption: CommandDef = {
  command: 'caption [input]',
  describe: 'Caption a video file or live stream: captions on screen, optional SRT, WebVTT, JSONL and burned-in video',
  builder: (y) =>
    y
      .usage(
        'Usage: $0 caption <input> [options]\n\n' +
          'Captions a video file, a live stream (rtsp, rtmp, srt, udp, http/HLS), a V4L2 camera (/dev/videoN) or stdin (-).\n' +
          'On a terminal, captions appear word by word with their time stamps above a progress line; otherwise one line per frame.',
      )
      .positional('input', { type: 'string', describe: INPUT_DESCRIPTION })
      .option('demo', { type: 'boolean', describe: 'caption the bundled demo clip (examples/demo.mp4) and score it against its ground truth' })
      .option('model', { type: 'string', describe: 'model bundle directory or name; torch:<bundle>, hf:<org>/<name> or a Hugging Face directory run in the Python worker', defaultDescription: 'the embedded model (CASA_LIVE_MODEL overrides)' })
      .option('fps', { type: 'number', describe: 'frames captioned per second', defaultDescription: "the model's (2)" })
      .option('realtime', { type: 'boolean', describe: 'files: read at the video\'s own speed, dropping frames when captioning falls behind (as for live input)' })
      .option('max-frames', { type: 'number', describe: 'stop after N frames' })
      .option('retries', { type: 'number', describe: 'live inputs: retries of failures in a row before giving up (exit 3); 0: none', defaultDescription: 'no limit' })
      .option('retry-timeout', {
        type: 'number',
        describe: 'live inputs: give up (exit 3) when the first connection has not given a frame within SECONDS; 0: keep trying. Once a stream has been up it is retried per --retries',
        defaultDescription: '30',
      })
      .option('seed', { type: 'number', describe: 'sampling seed, for reproducible runs' })
      .option('temperature', { type: 'number', describe: 'sampling temperature (0 = greedy)', defaultDescription: "the model's" })
      .option('max-tokens', { type: 'number', describe: 'most tokens generated per frame', defaultDescription: "the model's" })
      .option('realtime-deadline', { type: 'boolean', describe: "end a frame's text once its 1/fps budget is spent, so captions keep pace with a live stream" })
      .option('batch', {
        type: 'boolean',
        describe: "run the model in inference worker threads, as the daemon does; without it the one stream's graphs run on this thread, which is faster for one stream (ONNX bundles)",
      })
      .option('prompt', { type: 'string', describe: "instruction for models that take one (hf: models); a bundle's prompt is fixed", requiresArg: true })
      .option('srt', { type: 'string', describe: 'write SubRip subtitles to FILE', requiresArg: true })
      .option('vtt', { type: 'string', describe: 'write WebVTT subtitles to FILE', requiresArg: true })
      .option('jsonl', { type: 'string', describe: 'write token/caption/status events (one JSON object per line) to FILE, or - for stdout', requiresArg: true })
      .option('burn-in', { type: 'string', describe: 'write a copy of the video with the captions rendered into it to FILE (needs ffmpeg with libass)', requiresArg: true })
      .option('mqtt', { type: 'string', describe: 'publish captions and status to this MQTT broker (mqtt://host[:port], mqtts://…; topics casa-live/<stream-id>/…)', requiresArg: true })
      .option('youtube', { type: 'string', describe: 'post captions to this YouTube Live caption ingestion URL (or env:NAME to read it from that variable)', requiresArg: true })
      .option('line-length', { type: 'number', describe: 'longest subtitle line, in characters', default: undefined, defaultDescription: '42' })
      .option('subtitle-style', { type: 'string', describe: 'subtitle cues: block (readable groups) or rolling (two lines flowing, each cue until the next)', defaultDescription: 'block' })
      .option('fit', { type: 'string', describe: 'how frames of another aspect ratio fit the model: fill, crop, letterbox', defaultDescription: "the model's" })
      .option('stream-id', { type: 'string', describe: 'stream id in JSONL events', defaultDescription: 'the file name, else "main"' })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'print nothing but errors' })
      .option('log-level', LOG_LEVEL_OPTION)
      .example('$0 caption --demo', 'caption the bundled demo clip')
      .example('$0 caption talk.mp4 --srt talk.srt --vtt talk.vtt', 'subtitle files for a video')
      .example('$0 caption talk.mp4 --burn-in talk.captioned.mp4', 'a copy of the video with captions burned in')
      .example('$0 caption rtsp://cam.local/stream --jsonl -', 'a live camera; events as JSON lines on stdout')
      .example('$0 caption rtsp://cam.local/stream --retry-timeout 0', 'wait for a camera that is not up yet, however long')
      .example('$0 caption clip.mp4 --max-frames 20 --temperature 0 --seed 1', 'a short, reproducible run')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { argv, io }) => {
    const args = toCaptionArgs(a);
    if (args.input === '' && positionalDash(argv)) args.input = '-';
    const { runCaption } = await import('./caption.js');
    return runCaption(args, io);
  },
};

const frames: CommandDef = {
  command: 'frames <input>',
  describe: 'Write the frames the model would see as PNG files (plus frames.jsonl with their times)',
  builder: (y) =>
    y
      .positional('input', { type: 'string', describe: INPUT_DESCRIPTION, demandOption: true })
      .option('out', { alias: 'o', type: 'string', describe: 'output directory (created if missing)', demandOption: true, requiresArg: true })
      .option('count', { alias: 'n', type: 'number', describe: 'stop after N frames', defaultDescription: 'until the input ends' })
      .option('fps', { type: 'number', describe: 'frames per second', defaultDescription: "the model's (2)" })
      .option('width', { type: 'number', describe: 'frame width', defaultDescription: "the model's input width" })
      .option('height', { type: 'number', describe: 'frame height', defaultDescription: "the model's input height" })
      .option('fit', { type: 'string', describe: 'fill, crop or letterbox', defaultDescription: "the model's" })
      .option('model', { type: 'string', describe: 'model whose input size and fit are used: a bundle or torch:<bundle> (hf: models need --width/--height)', defaultDescription: 'the embedded model' })
      .option('realtime', { type: 'boolean', describe: "files: read at the video's own speed" })
      .option('quiet', { alias: 'q', type: 'boolean', describe: 'print nothing but errors' })
      .option('log-level', LOG_LEVEL_OPTION)
      .example('$0 frames clip.mp4 --out frames/ --count 10', 'the first 10 frames, as the model sees them')
      .example('$0 frames rtsp://cam.local/stream -o snap -n 1 --width 640 --height 360', 'one snapshot of a camera')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { argv, io }) => {
    const { runFramesCli } = await import('./frames.js');
    const args = a as unknown as FramesArgs;
    if (args.input === '' && positionalDash(argv)) args.input = '-';
    return runFramesCli(args, io);
  },
};

const modelsCheck: CommandDef = {
  command: 'check <dir>',
  describe: 'Validate a model: a bundle\'s manifest, tokenizer and every graph against the format, or a worker model (torch:, hf:) loaded by the worker; then caption a test frame',
  builder: (y) =>
    y
      .positional('dir', { type: 'string', describe: 'bundle directory or name; torch:<bundle>, hf:<org>/<name> or a Hugging Face directory', demandOption: true })
      .option('json', { type: 'boolean', describe: 'print the result as JSON' })
      .example('$0 models check models/casa-tiny', 'exit 0 when the bundle is usable, 4 with the problem otherwise')
      .example('$0 models check hf:kyutai/CASA-Qwen2_5-VL-3B-LiveCC', 'start the Python worker, load the released model, caption a test frame')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { io }) => {
    const { runModelsCheck } = await import('./models.js');
    return runModelsCheck({ dir: String(a.dir), json: a.json === true }, io);
  },
};

const models: CommandDef = {
  command: 'models',
  describe: 'List the model bundles found (the embedded one, ./models, and --dir)',
  subcommands: [modelsCheck],
  builder: (y) =>
    y
      .option('dir', { type: 'string', array: true, describe: 'also look for bundles in DIR (repeatable)' })
      .option('json', { type: 'boolean', describe: 'print the list as JSON' })
      .example('$0 models', 'the installed bundles; * marks the default')
      .example('$0 models check ./my-bundle', 'validate one bundle')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { io }) => {
    const { runModelsList } = await import('./models.js');
    return runModelsList({ dirs: (a.dir as string[] | undefined) ?? [], json: a.json === true }, io);
  },
};

const serve: CommandDef = {
  command: 'serve',
  describe: 'Run the captioning daemon: many streams, WebSocket feed, overlay, health and metrics (docs/serve.md)',
  builder: (y) =>
    y
      .option('config', { alias: 'c', type: 'string', describe: 'config file (YAML)', demandOption: true, requiresArg: true })
      .example('$0 serve --config casa-live.yaml', 'start the daemon; SIGTERM stops it, SIGHUP reloads the config')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { io }) => {
    const { runServeCli } = await import('./serve.js');
    return runServeCli({ config: String(a.config) }, io);
  },
};

const bench: CommandDef = {
  command: 'bench',
  describe: 'Run the benchmarks (CASA vs insertion, engine vs PyTorch, capacity, latency, fan-out, soak): JSON, plots and SUMMARY.md in bench/results',
  builder: (y) =>
    y
      .option('quick', { type: 'boolean', describe: 'a short smoke version of every suite (results in bench/results/quick)' })
      .option('suite', { type: 'string', array: true, describe: 'run only these suites (b1, b2, …: see docs/benchmarks.md), comma-separated or repeated', defaultDescription: 'all' })
      .option('out', { type: 'string', describe: 'results directory', requiresArg: true, defaultDescription: 'bench/results (quick: bench/results/quick)' })
      .option('casa', { type: 'string', describe: 'CASA model bundle', requiresArg: true, defaultDescription: 'models/casa-tiny, else the dev bundle' })
      .option('insertion', { type: 'string', describe: 'its insertion twin', requiresArg: true, defaultDescription: 'models/casa-tiny-insertion, else the dev bundle' })
      .option('replot', { type: 'boolean', describe: 'measure nothing: redraw the plots and SUMMARY.md from the JSON files in the results directory' })
      .example('$0 bench', 'every suite, full length (about 40 minutes on 2 cores)')
      .example('$0 bench --quick', 'a short version (a few minutes)')
      .example('$0 bench --suite b1,b3', 'some suites; SUMMARY.md keeps the others\' last results')
      .epilogue(`See docs/benchmarks.md.\n\n${EXIT_CODES_HELP}`),
  run: async (a, { argv, io }) => {
    const { runBenchCli } = await import('./bench.js');
    const args = {
      quick: a.quick === true,
      ...(a.suite !== undefined ? { suite: a.suite as string[] } : {}),
      ...(typeof a.out === 'string' ? { out: a.out } : {}),
      ...(typeof a.casa === 'string' ? { casa: a.casa } : {}),
      ...(typeof a.insertion === 'string' ? { insertion: a.insertion } : {}),
      ...(a.replot === true ? { replot: true } : {}),
    };
    return runBenchCli(args, argv.slice(argv.indexOf('bench') + 1), io);
  },
};

const configCheck: CommandDef = {
  command: 'check <file>',
  describe: 'Validate a serve config file: every problem with its field path and line',
  builder: (y) =>
    y
      .positional('file', { type: 'string', describe: 'config file (YAML)', demandOption: true })
      .example('$0 config check casa-live.yaml', 'exit 0 when valid, 2 with every problem listed otherwise')
      .epilogue(EXIT_CODES_HELP),
  run: async (a, { io }) => {
    const { runConfigCheckCli } = await import('./serve.js');
    return runConfigCheckCli(String(a.file), io);
  },
};

const config: CommandDef = {
  command: 'config',
  describe: 'Config file tools',
  subcommands: [configCheck],
  builder: (y) =>
    y
      .demandCommand(1, 'Name a config subcommand: check.')
      .example('$0 config check casa-live.yaml', 'validate a serve config file')
      .epilogue(EXIT_CODES_HELP),
};

/** Every command, in the order --help lists them. */
export const COMMANDS: readonly CommandDef[] = [caption, frames, models, serve, bench, config];

/** The name of a command definition ("caption [input]" → "caption"). */
export function commandName(def: CommandDef): string {
  return def.command.split(' ')[0] ?? def.command;
}

/**
 * yargs turns a positional "-" (stdin) into ""; tell the two apart from the raw arguments
 * ("-" given as the value of an option, e.g. --jsonl -, does not count).
 */
function positionalDash(argv: string[]): boolean {
  const flags = new Set(['--demo', '--realtime', '--quiet', '-q', '--help', '-h']);
  return argv.some((a, i) => {
    if (a !== '-') return false;
    const prev = argv[i - 1] ?? '';
    const takesValue = /^--?[A-Za-z]/.test(prev) && !prev.includes('=') && !flags.has(prev) && !prev.startsWith('--no-');
    return !takesValue;
  });
}

/** yargs' parsed caption options → CaptionArgs (the flag each field comes from). */
const CAPTION_FLAGS: ReadonlyArray<[keyof CaptionArgs, string]> = [
  ['input', 'input'],
  ['demo', 'demo'],
  ['model', 'model'],
  ['fps', 'fps'],
  ['realtime', 'realtime'],
  ['maxFrames', 'max-frames'],
  ['retries', 'retries'],
  ['retryTimeout', 'retry-timeout'],
  ['seed', 'seed'],
  ['temperature', 'temperature'],
  ['maxTokens', 'max-tokens'],
  ['realtimeDeadline', 'realtime-deadline'],
  ['batch', 'batch'],
  ['prompt', 'prompt'],
  ['srt', 'srt'],
  ['vtt', 'vtt'],
  ['jsonl', 'jsonl'],
  ['burnIn', 'burn-in'],
  ['mqtt', 'mqtt'],
  ['youtube', 'youtube'],
  ['quiet', 'quiet'],
  ['lineLength', 'line-length'],
  ['subtitleStyle', 'subtitle-style'],
  ['fit', 'fit'],
  ['streamId', 'stream-id'],
  ['logLevel', 'log-level'],
];

function toCaptionArgs(a: Record<string, unknown>): CaptionArgs {
  const out: Record<string, unknown> = {};
  for (const [k, flag] of CAPTION_FLAGS) if (a[flag] !== undefined) out[k] = a[flag];
  // A flag given twice becomes an array: that is a usage error, not a silent pick.
  for (const [k, flag] of CAPTION_FLAGS) {
    if (Array.isArray(out[k])) throw new UsageError(`--${flag} was given more than once.`);
  }
  return out as CaptionArgs;
}
