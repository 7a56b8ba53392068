/**
 * casa-live's side of the worker protocol (docs/worker-protocol.md; the worker's side is
 * tools/casa_worker/protocol.py): frames of a 4-byte big-endian length and a msgpack map
 * with a string field `t`; the message types and their required fields; the error codes
 * and the typed error each becomes.
 */
import { decode, encode } from '@msgpack/msgpack';
import { CasaLiveError, InputError, ModelError, UsageError } from '../errors.js';
import type { Fit } from '../ingest/types.js';

export const PROTOCOL_VERSION = 1;
/** Largest frame either side accepts. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024;

// ------------------------------------------------------------------ messages from the worker

export interface WorkerModelInfo {
  name: string;
  adapter: 'torch' | 'hf';
  fusion: 'casa' | 'insertion';
  image: { width: number; height: number; fit: Fit; tokensPerFrame: number };
  fps: number;
  stopIds: number[];
  device: string;
  dtype: string;
  acceptsPrompt: boolean;
  promptTokens: number;
  frameOpeningTokens: number;
  vocabSize: number;
  /** Generation and context defaults (SessionOptions names; maxContextTokens null = unbounded). */
  defaults: Record<string, unknown>;
}

/** Worker statistics of one session (BackendStats fields plus its own). */
export type WorkerSessionStats = Record<string, number>;

export type WorkerMessage =
  | { t: 'hello'; protocol: number; worker: string; pid: number; python?: string; torch?: string; cuda?: boolean }
  | { t: 'ready'; model: WorkerModelInfo }
  | { t: 'fatal'; code: string; message: string }
  | { t: 'opened'; id: number; session: number }
  | { t: 'token'; id: number; session: number; text: string }
  | {
      t: 'caption';
      id: number;
      session: number;
      text: string;
      ids: number[];
      stop: number;
      end: 'stop' | 'length' | 'deadline' | 'cut';
      timings: { prefillMs: number; frameMs: number; tokens: number };
      stats: WorkerSessionStats;
    }
  | { t: 'closed'; id: number; session: number }
  | { t: 'stats'; id: number; sessions: number; frames: number; uptimeS: number; maxRssKiB: number; stats?: WorkerSessionStats }
  | { t: 'pong'; id: number }
  | { t: 'error'; id?: number; session?: number; code: string; message: string };

/** A request: every message casa-live sends. */
export type WorkerRequest =
  | { t: 'open'; id: number; options: Record<string, unknown> }
  | { t: 'frame'; id: number; session: number; index: number; pts: number; width: number; height: number; rgb: Uint8Array }
  | { t: 'cut'; session: number }
  | { t: 'close'; id: number; session: number }
  | { t: 'stats'; id: number; session?: number }
  | { t: 'ping'; id: number }
  | { t: 'shutdown' };

type FieldKind = 'number' | 'string' | 'boolean' | 'object' | 'array';

/** Required fields of each message type the worker sends. */
const FIELDS: Record<WorkerMessage['t'], Record<string, FieldKind>> = {
  hello: { protocol: 'number', worker: 'string', pid: 'number' },
  ready: { model: 'object' },
  fatal: { code: 'string', message: 'string' },
  opened: { id: 'number', session: 'number' },
  token: { id: 'number', session: 'number', text: 'string' },
  caption: { id: 'number', session: 'number', text: 'string', ids: 'array', stop: 'number', end: 'string', timings: 'object', stats: 'object' },
  closed: { id: 'number', session: 'number' },
  stats: { id: 'number', sessions: 'number', frames: 'number' },
  pong: { id: 'number' },
  error: { code: 'string', message: 'string' },
};

/** Required fields of the `ready` message's model description. */
const MODEL_FIELDS: Record<string, FieldKind> = {
  name: 'string',
  adapter: 'string',
  fusion: 'string',
  image: 'object',
  fps: 'number',
  stopIds: 'array',
  device: 'string',
  dtype: 'string',
  acceptsPrompt: 'boolean',
  promptTokens: 'number',
  defaults: 'object',
};

/** The worker broke the protocol (garbage on the socket, an unknown message, a missing field). */
export class WorkerProtocolError extends ModelError {}

function kindOf(v: unknown): FieldKind | 'other' {
  if (Array.isArray(v)) return 'array';
  if (v !== null && typeof v === 'object') return 'object';
  if (typeof v === 'number' || typeof v === 'string' || typeof v === 'boolean') return typeof v as FieldKind;
  return 'other';
}

function checkFields(what: string, v: Record<string, unknown>, fields: Record<string, FieldKind>): void {
  for (const [name, kind] of Object.entries(fields)) {
    if (kindOf(v[name]) !== kind) throw new WorkerProtocolError(`the model worker sent ${what} whose field "${name}" is not a ${kind}`);
  }
}

export function checkWorkerMessage(v: unknown): WorkerMessage {
  if (kindOf(v) !== 'object' || typeof (v as { t?: unknown }).t !== 'string') {
    throw new WorkerProtocolError('the model worker sent a message that is not a map with a string field "t"');
  }
  const m = v as Record<string, unknown> & { t: string };
  const fields = (FIELDS as Record<string, Record<string, FieldKind>>)[m.t];
  if (!fields) throw new WorkerProtocolError(`the model worker sent an unknown message type "${m.t.slice(0, 40)}"`);
  checkFields(`a "${m.t}" message`, m, fields);
  if (m.t === 'ready') checkFields('a model description', m.model as Record<string, unknown>, MODEL_FIELDS);
  return m as unknown as WorkerMessage;
}

export function encodeRequest(req: WorkerRequest): Buffer {
  const body = encode(req);
  if (body.length > MAX_FRAME_BYTES) throw new UsageError(`a ${req.t} message of ${body.length} bytes exceeds the worker protocol's ${MAX_FRAME_BYTES}-byte limit`);
  const header = Buffer.alloc(4);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, Buffer.from(body.buffer, body.byteOffset, body.byteLength)]);
}

/** Splits the byte stream from the worker into messages; throws WorkerProtocolError on garbage. */
export class FrameReader {
  private chunks: Buffer[] = [];
  private buffered = 0;

  push(chunk: Buffer): WorkerMessage[] {
    this.chunks.push(chunk);
    this.buffered += chunk.length;
    const out: WorkerMessage[] = [];
    for (;;) {
      if (this.buffered < 4) return out;
      const head = this.take(4, false);
      const length = head.readUInt32BE(0);
      if (length === 0 || length > MAX_FRAME_BYTES) {
        throw new WorkerProtocolError(`the model worker sent a frame of length ${length} (outside 1..${MAX_FRAME_BYTES}): not the casa-live worker protocol`);
      }
      if (this.buffered < 4 + length) return out;
      this.take(4, true);
      const body = this.take(length, true);
      let value: unknown;
      try {
        value = decode(body);
      } catch (err) {
        throw new WorkerProtocolError(`the model worker sent a frame that is not msgpack (${(err as Error).message})`);
      }
      out.push(checkWorkerMessage(value));
    }
  }

  /** The first n buffered bytes (consumed when `consume`). */
  private take(n: number, consume: boolean): Buffer {
    const all = this.chunks.length === 1 ? (this.chunks[0] as Buffer) : Buffer.concat(this.chunks);
    this.chunks = [all];
    const head = all.subarray(0, n);
    if (consume) {
      this.chunks = [all.subarray(n)];
      this.buffered -= n;
    }
    return head;
  }
}

// ------------------------------------------------------------------ errors

/** What each error code of the worker becomes (docs/worker-protocol.md §Errors). */
const ERROR_KINDS: Record<string, (message: string) => CasaLiveError> = {
  bad_options: (m) => new UsageError(m),
  bad_frame: (m) => new InputError(m),
};

/** The typed error for a worker `error` or `fatal` message: ModelError (exit code 4) unless listed above. */
export function workerError(code: string, message: string): CasaLiveError {
  const sentence = /[.!?]$/.test(message) ? message : `${message}.`;
  const make = ERROR_KINDS[code];
  const err = make ? make(sentence) : new ModelError(sentence);
  (err as CasaLiveError & { code?: string }).code = code;
  return err;
}
