/**
 * JSONL output of `casa-live caption --jsonl FILE|-`: one DESIGN §6 event per line (token,
 * caption, status), each written synchronously as one whole line, so the file is valid
 * JSONL at every moment (a reader never sees half a line unless the disk is full).
 */
import type { StreamEvent } from '../events.js';
import { SyncFile } from './sync-file.js';

export interface JsonlWriterOptions {
  /** Also write token events (default true). */
  tokens?: boolean;
}

export class JsonlWriter {
  readonly target: string;
  private readonly file: SyncFile | undefined;
  private readonly stdout: NodeJS.WritableStream | undefined;
  private readonly tokens: boolean;
  private _lines = 0;

  /** `target` is a file path, or "-" for standard output. */
  constructor(target: string, options: JsonlWriterOptions & { stdout?: NodeJS.WritableStream } = {}) {
    this.target = target;
    this.tokens = options.tokens ?? true;
    if (target === '-') this.stdout = options.stdout ?? process.stdout;
    else this.file = new SyncFile(target);
  }

  get lines(): number {
    return this._lines;
  }

  write(ev: StreamEvent): void {
    if (ev.type === 'token' && !this.tokens) return;
    const line = `${JSON.stringify(ev)}\n`;
    if (this.stdout) {
      // process.stdout is synchronous for files and pipes on Linux.
      this.stdout.write(line);
    } else if (!this.file?.write(line)) {
      return;
    }
    this._lines++;
  }

  /** Syncs and closes the file (standard output stays open). Idempotent. */
  close(): void {
    this.file?.close();
  }
}
