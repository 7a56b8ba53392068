/**
 * The durable caption log: one directory per stream holding JSONL segments, one per UTC day
 * (`2025-06-01.jsonl`), each line one committed event (caption or status, DESIGN §6 schema).
 *
 * - An event is appended (and, with `fsync`, on disk) before the daemon broadcasts it.
 * - `seq` continues across restarts: the next seq is above both the last logged event and
 *   the reservation in `seq.json`, which the sequencer advances in blocks before it hands
 *   out seqs that are not logged (tokens). A client that saw token seq N before a crash
 *   never sees seq N reused.
 * - A torn last line (crash mid-write) is cut off when the log is opened (`tornBytes` says
 *   how much, for the daemon's warning).
 * - Segments older than the retention are deleted on open and by `prune()`.
 */
import { mkdir, open, readdir, readFile, rename, stat, truncate, unlink, writeFile, type FileHandle } from 'node:fs/promises';
import path from 'node:path';
import type { CaptionEvent, StatusEvent, StreamEvent } from '../events.js';

export type CommittedEvent = CaptionEvent | StatusEvent;

export interface CaptionLogOptions {
  /** Directory of this stream's log, e.g. `<dataDir>/captions/<stream>`. */
  dir: string;
  /** fdatasync after every append (and after each seq reservation). */
  fsync: boolean;
  /** Segments older than this many days are deleted. */
  retentionDays: number;
  /** How many of the most recent events `recent` holds after open. */
  tailEvents: number;
  /** Injected clock (tests). */
  now?: () => Date;
}

const SEGMENT_RE = /^(\d{4}-\d{2}-\d{2})\.jsonl$/;
const DAY_MS = 86_400_000;

function dayOf(d: Date): string {
  return d.toISOString().slice(0, 10);
}

export class CaptionLog {
  readonly dir: string;
  /** Highest seq in the log or the reservation file; the stream's next seq is this + 1. */
  private highWater = 0;
  /** The last `tailEvents` committed events found on open, oldest first. */
  recent: CommittedEvent[] = [];
  /** Seq of the newest logged event older than `recent` (0 when `recent` holds the whole log). */
  olderSeq = 0;
  /** Lines skipped on open because they did not parse. */
  skippedLines = 0;
  /** Bytes of a torn last line cut off on open (0: none), and the segment they were cut from. */
  tornBytes = 0;
  tornFile: string | undefined;

  private handle: FileHandle | undefined;
  private handleDay: string | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  private reserved = 0;

  private constructor(private readonly opts: CaptionLogOptions) {
    this.dir = opts.dir;
  }

  static async open(opts: CaptionLogOptions): Promise<CaptionLog> {
    const log = new CaptionLog(opts);
    await log.init();
    return log;
  }

  private now(): Date {
    return this.opts.now?.() ?? new Date();
  }

  /** Highest seq ever issued or logged (0 for a new stream). */
  get lastSeq(): number {
    return this.highWater;
  }

  /** The seq reserved in seq.json. */
  get reservedSeq(): number {
    return this.reserved;
  }

  private async segments(): Promise<string[]> {
    const names = await readdir(this.dir).catch(() => [] as string[]);
    return names.filter((n) => SEGMENT_RE.test(n)).sort();
  }

  private async init(): Promise<void> {
    await mkdir(this.dir, { recursive: true });
    await this.prune();
    try {
      const raw = JSON.parse(await readFile(path.join(this.dir, 'seq.json'), 'utf8')) as { reserved?: unknown };
      if (typeof raw.reserved === 'number' && Number.isSafeInteger(raw.reserved)) this.reserved = raw.reserved;
    } catch {
      // absent or unreadable: the log itself is the floor
    }
    const segs = await this.segments();
    // Repair a torn last line in the newest segment so the next append starts on a new line.
    const newest = segs[segs.length - 1];
    if (newest) {
      this.tornBytes = await repairTail(path.join(this.dir, newest));
      if (this.tornBytes > 0) this.tornFile = path.join(this.dir, newest);
    }
    // Read segments newest first until tailEvents (+1, to know what lies before) are found.
    const want = this.opts.tailEvents + 1;
    let collected: CommittedEvent[] = [];
    for (let i = segs.length - 1; i >= 0 && collected.length < want; i--) {
      const text = await readFile(path.join(this.dir, segs[i]!), 'utf8');
      const events: CommittedEvent[] = [];
      for (const line of text.split('\n')) {
        if (line === '') continue;
        try {
          const ev = JSON.parse(line) as StreamEvent;
          if ((ev.type === 'caption' || ev.type === 'status') && typeof ev.seq === 'number') events.push(ev);
          else this.skippedLines++;
        } catch {
          this.skippedLines++;
        }
      }
      collected = [...events.slice(Math.max(0, events.length - (want - collected.length))), ...collected];
    }
    let maxSeq = 0;
    for (const ev of collected) maxSeq = Math.max(maxSeq, ev.seq);
    const recent = collected.slice(Math.max(0, collected.length - this.opts.tailEvents));
    this.olderSeq = collected.length > recent.length ? (collected[collected.length - recent.length - 1]?.seq ?? 0) : 0;
    this.recent = recent;
    this.highWater = Math.max(maxSeq, this.reserved);
  }

  /**
   * Persists "seqs up to `upTo` may have been issued", so that a restart continues above it.
   * Written atomically (temp file + rename).
   */
  reserve(upTo: number): Promise<void> {
    return this.enqueue(async () => {
      if (upTo <= this.reserved) return;
      const file = path.join(this.dir, 'seq.json');
      const tmp = `${file}.tmp`;
      const fh = await open(tmp, 'w');
      try {
        await fh.writeFile(JSON.stringify({ reserved: upTo }) + '\n');
        if (this.opts.fsync) await fh.datasync();
      } finally {
        await fh.close();
      }
      await rename(tmp, file);
      this.reserved = upTo;
      this.highWater = Math.max(this.highWater, upTo);
    });
  }

  /** Appends one committed event; resolves once it is written (and synced with `fsync`). */
  append(ev: CommittedEvent): Promise<void> {
    const line = JSON.stringify(ev) + '\n';
    return this.enqueue(async () => {
      if (this.closed) throw new Error(`caption log ${this.dir} is closed`);
      const day = dayOf(this.now());
      if (this.handle === undefined || this.handleDay !== day) {
        await this.handle?.close();
        this.handle = await open(path.join(this.dir, `${day}.jsonl`), 'a');
        this.handleDay = day;
      }
      await this.handle.write(line);
      if (this.opts.fsync) await this.handle.datasync();
      this.highWater = Math.max(this.highWater, ev.seq);
    });
  }

  /** Reads every logged event with seq > `afterSeq` (oldest first), across segments. */
  async readAfter(afterSeq: number, limit = Infinity): Promise<CommittedEvent[]> {
    await this.chain.catch(() => undefined);
    const out: CommittedEvent[] = [];
    for (const name of await this.segments()) {
      const text = await readFile(path.join(this.dir, name), 'utf8').catch(() => '');
      for (const line of text.split('\n')) {
        if (line === '') continue;
        try {
          const ev = JSON.parse(line) as CommittedEvent;
          if (ev.seq > afterSeq) out.push(ev);
        } catch {
          // torn line: skipped
        }
        if (out.length >= limit) return out;
      }
    }
    return out;
  }

  /** Deletes segments older than the retention; returns how many were deleted. */
  async prune(): Promise<number> {
    const cutoff = dayOf(new Date(this.now().getTime() - this.opts.retentionDays * DAY_MS));
    const today = dayOf(this.now());
    let removed = 0;
    for (const name of await this.segments()) {
      const day = SEGMENT_RE.exec(name)?.[1];
      if (day === undefined || day >= cutoff || day === today || day === this.handleDay) continue;
      await unlink(path.join(this.dir, name)).catch(() => undefined);
      removed++;
    }
    return removed;
  }

  /** Waits for pending writes, syncs and closes the file. */
  close(): Promise<void> {
    return this.enqueue(async () => {
      if (this.closed) return;
      this.closed = true;
      if (this.handle) {
        if (this.opts.fsync) await this.handle.datasync().catch(() => undefined);
        await this.handle.close();
        this.handle = undefined;
      }
    });
  }

  private enqueue<T>(task: () => Promise<T>): Promise<T> {
    const run = this.chain.then(task, task);
    this.chain = run.catch(() => undefined);
    return run;
  }
}

/** Cuts a file back to its last complete line (after a crash mid-append); resolves with the bytes cut. */
async function repairTail(file: string): Promise<number> {
  const { size } = await stat(file);
  if (size === 0) return 0;
  const fh = await open(file, 'r');
  try {
    const chunk = 64 * 1024;
    let end = size;
    const last = Buffer.alloc(1);
    await fh.read(last, 0, 1, size - 1);
    if (last[0] === 0x0a) return 0;
    while (end > 0) {
      const start = Math.max(0, end - chunk);
      const buf = Buffer.alloc(end - start);
      await fh.read(buf, 0, buf.length, start);
      const nl = buf.lastIndexOf(0x0a);
      if (nl >= 0) {
        await fh.close();
        await truncate(file, start + nl + 1);
        return size - (start + nl + 1);
      }
      end = start;
    }
  } finally {
    await fh.close().catch(() => undefined);
  }
  await truncate(file, 0);
  return size;
}

/** Writes a whole file atomically (helper for small state files). */
export async function writeFileAtomic(file: string, data: string): Promise<void> {
  const tmp = `${file}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}
