/** The input's duration from ffprobe, for progress bars (files and http inputs only). */
import type { ChildProcess } from 'node:child_process';
import { resolveFfmpeg, type ResolveFfmpegOptions } from './binaries.js';
import { killAndWait, runCapture } from './children.js';
import type { ClassifiedInput } from './input.js';
import type { IngestLogger } from './types.js';

export interface DurationProbeOptions {
  input: ClassifiedInput;
  binaries: ResolveFfmpegOptions;
  ioTimeoutMs: number;
  log: IngestLogger;
}

export class DurationProbe {
  private readonly o: DurationProbeOptions;
  private readonly children = new Set<ChildProcess>();
  private result: Promise<number | undefined> | undefined;
  /** closed: the source is stopping; no new ffprobe, and the running ones are killed. */
  private state: 'open' | 'closed' = 'open';

  constructor(o: DurationProbeOptions) {
    this.o = o;
  }

  private get isHttp(): boolean {
    return this.o.input.scheme === 'http' || this.o.input.scheme === 'https';
  }

  /** Runs ffprobe once; undefined for live inputs, stdin, devices, and when ffprobe fails. */
  duration(): Promise<number | undefined> {
    if (this.o.input.kind !== 'file' && !this.isHttp) return Promise.resolve(undefined);
    this.result ??= this.probe();
    return this.result;
  }

  /** Kills every ffprobe still running; resolves once they are reaped. */
  close(): Promise<void> {
    this.state = 'closed';
    return Promise.all([...this.children].map((c) => killAndWait(c))).then(() => undefined);
  }

  private async probe(): Promise<number | undefined> {
    const { input, ioTimeoutMs, log } = this.o;
    try {
      const bin = await resolveFfmpeg(this.o.binaries);
      if (this.state === 'closed') return undefined;
      const args = [
        '-v',
        'error',
        ...(this.isHttp ? ['-rw_timeout', String(Math.round(ioTimeoutMs * 1000))] : []),
        '-show_entries',
        'format=duration',
        '-of',
        'default=noprint_wrappers=1:nokey=1',
        input.ffmpegInput,
      ];
      const res = await runCapture(bin.ffprobePath, args, {
        timeoutMs: Math.max(20_000, ioTimeoutMs * 2),
        onChild: (c) => this.track(c),
      });
      const d = Number.parseFloat(res.stdout.trim());
      return Number.isFinite(d) && d > 0 ? d : undefined;
    } catch (err) {
      log.debug({ input: input.display, err: (err as Error).message }, 'ffprobe failed');
      return undefined;
    }
  }

  private track(c: ChildProcess): void {
    this.children.add(c);
    c.once('exit', () => this.children.delete(c));
    if (this.state === 'closed') void killAndWait(c);
  }
}
