/** What a suite gets from the runner: options, shared inputs, and a place for its plots. */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { BenchOptions, SuiteId, SuiteResult } from './common.js';
import { encodeClip, frameStream, type Clip, type ClipSpec, type FrameStream } from './inputs.js';

export interface SuiteContext {
  opts: BenchOptions;
  log: (line: string) => void;
  /** The long synthetic stream (2,000 frames; 200 for --quick), shared by every suite. */
  stream(): Promise<FrameStream>;
  /** A clip encoded from the stream (cached). */
  clip(o: ClipSpec): Promise<Clip>;
  /** The model's input size (from the CASA bundle's manifest). */
  imageSize: number;
  /** Results of suites run earlier in this invocation. */
  earlier: Partial<Record<SuiteId, SuiteResult>>;
}

export function makeContext(opts: BenchOptions, earlier: Partial<Record<SuiteId, SuiteResult>>): SuiteContext {
  const man = JSON.parse(readFileSync(path.join(opts.casa, 'casa.json'), 'utf8')) as { image: { width: number; height: number } };
  let stream: Promise<FrameStream> | undefined;
  const clips = new Map<string, Promise<Clip>>();
  const ctx: SuiteContext = {
    opts,
    log: opts.log,
    imageSize: man.image.width,
    earlier,
    stream() {
      stream ??= frameStream(opts.root, opts.quick ? 200 : 2000, man.image.width, opts.log);
      return stream;
    },
    async clip(o) {
      const key = JSON.stringify(o);
      let c = clips.get(key);
      if (!c) {
        c = (async () => encodeClip(await ctx.stream(), o, opts.log))();
        clips.set(key, c);
      }
      return c;
    },
  };
  return ctx;
}
