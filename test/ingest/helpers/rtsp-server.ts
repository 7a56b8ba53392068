/**
 * A real RTSP server for tests that take it down and bring it back: the TCP relay
 * (rtsp-relay.mjs, its own process so that it can be SIGKILLed) and an ffmpeg publisher
 * looping a clip into it. `start()` resolves once the stream is served.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { FFMPEG, waitFor } from './media.js';

const RELAY = fileURLToPath(new URL('./rtsp-relay.mjs', import.meta.url));

export class RtspServer {
  readonly url: string;
  private relay: ChildProcess | undefined;
  private publisher: ChildProcess | undefined;
  /** Date.now() when the relay last listened, and when it last served the stream. */
  listeningAt = 0;
  servingAt = 0;

  constructor(
    readonly port: number,
    private readonly clip: string,
    readonly path = '/live',
  ) {
    this.url = `rtsp://127.0.0.1:${port}${path}`;
  }

  /** The pids of the relay and publisher (not children of the code under test). */
  get pids(): number[] {
    return [this.relay?.pid, this.publisher?.pid].filter((p): p is number => p !== undefined);
  }

  /** Starts the relay, then the publisher; resolves once the relay says the stream is published. */
  async start(): Promise<void> {
    let out = '';
    const relay = spawn(process.execPath, [RELAY, String(this.port)], { stdio: ['ignore', 'pipe', 'ignore'], env: { ...process.env, RELAY_LIFETIME_MS: '600000' } });
    this.relay = relay;
    relay.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    await waitFor(() => out.includes('listening') || relay.exitCode !== null, 20_000, 'the RTSP relay to listen');
    this.listeningAt = Date.now();
    const args = ['-hide_banner', '-loglevel', 'error', '-nostdin', '-re', '-stream_loop', '-1', '-i', this.clip, '-an', '-c', 'copy', '-f', 'rtsp', '-rtsp_transport', 'tcp', this.url];
    this.publisher = spawn(FFMPEG, args, { stdio: 'ignore' });
    await waitFor(() => out.includes(`publishing ${this.path}`), 20_000, `the publisher to announce ${this.path}`);
    this.servingAt = Date.now();
  }

  /** SIGKILLs the relay and the publisher: the server is gone. */
  async stop(): Promise<void> {
    await Promise.all([this.relay, this.publisher].map(killAndWait));
  }
}

async function killAndWait(p: ChildProcess | undefined): Promise<void> {
  if (!p || p.exitCode !== null || p.signalCode !== null) return;
  const gone = new Promise((resolve) => p.once('exit', resolve));
  p.kill('SIGKILL');
  await gone;
}
