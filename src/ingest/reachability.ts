/**
 * Before each attempt of an RTSP input, a plain TCP connect to its server. While the server is down and refuses connections, an attempt then costs a socket
 * instead of an ffmpeg start (a fraction of a CPU-second, seconds on a loaded machine), so the
 * quick retries after a drop stay cheap and a stream comes back as soon as its server does.
 * Anything but a refusal (it connected, a timeout, a DNS failure) lets ffmpeg try, and say
 * what is wrong.
 */
import net from 'node:net';
import type { ClassifiedInput } from './input.js';

/**
 * RTSP servers that players pull from take any number of connections, so a connection that
 * only checks costs them nothing. Not RTMP: a one-client server (`ffmpeg -listen 1`) would
 * take the check for its client and be gone. Not http(s): proxy settings may apply.
 */
const TCP_SCHEMES: ReadonlySet<string> = new Set(['rtsp', 'rtsps']);

/** A connect in progress; `cancel()` ends it at once (stop()). */
export interface RefusalCheck {
  /** True when the server refused the connection. */
  readonly refused: Promise<boolean>;
  cancel(): void;
}

/** Whether refusedCheck() can say something about this input. */
export function canCheckRefusal(input: ClassifiedInput): boolean {
  return TCP_SCHEMES.has(input.scheme) && input.host !== undefined && input.port !== undefined;
}

/** Connects to the input's server and hangs up: refused or not, within `timeoutMs`. */
export function refusalCheck(input: ClassifiedInput, timeoutMs: number): RefusalCheck {
  let settle!: (refused: boolean) => void;
  const refused = new Promise<boolean>((resolve) => (settle = resolve));
  const host = (input.host ?? '').replace(/^\[(.*)\]$/, '$1');
  const socket = net.connect({ host, port: input.port ?? 0 });
  const done = (result: boolean): void => {
    clearTimeout(timer);
    socket.destroy();
    settle(result);
  };
  const timer = setTimeout(() => done(false), timeoutMs);
  socket.once('connect', () => done(false));
  socket.once('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED'));
  return { refused, cancel: () => done(false) };
}
