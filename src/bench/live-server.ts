/**
 * B3's live cameras: an HTTP server (in a bench worker process of its own) that serves an
 * MPEG-TS clip to every client at the clip's own pace, from its start, as a camera or relay
 * delivers a live stream — so each ingest ffmpeg reads a live network input (no -re: it
 * blocks on the socket between frames) and decodes every frame as it arrives.
 *
 * Pacing: the clip's video packets (byte offset and pts from ffprobe) are sent when their
 * pts is due on the connection's clock (one timer for all connections); the response ends
 * with the clip.
 */
import { execFile } from 'node:child_process';
import { createServer, type Server, type ServerResponse } from 'node:http';
import { readFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { resolveFfmpeg } from '../ingest/index.js';

const run = promisify(execFile);

interface Conn {
  res: ServerResponse;
  startedAt: number;
  /** Next packet to send, and the byte offset sent up to. */
  next: number;
  sent: number;
}

let server: Server | undefined;
let timer: NodeJS.Timeout | undefined;
const conns = new Set<Conn>();
let clip: Buffer = Buffer.alloc(0);
/** Video packets in file order: [pts seconds from the first, byte offset]. */
let packets: Array<[number, number]> = [];
let served = 0;

/** The video packets' pts and byte offsets, in file order. */
async function packetIndex(path: string): Promise<Array<[number, number]>> {
  const ff = await resolveFfmpeg();
  const { stdout } = await run(ff.ffprobePath, ['-v', 'error', '-select_streams', 'v:0', '-show_entries', 'packet=pts_time,pos', '-of', 'csv=p=0', path], { maxBuffer: 64 << 20 });
  const rows = stdout
    .trim()
    .split('\n')
    .map((l) => l.split(',').map(Number) as [number, number])
    .filter(([t, p]) => Number.isFinite(t) && Number.isFinite(p))
    .sort((a, b) => a[1] - b[1]);
  const t0 = Math.min(...rows.map(([t]) => t));
  return rows.map(([t, p]) => [t - t0, p]);
}

function tick(): void {
  const now = performance.now();
  for (const c of conns) {
    const elapsed = (now - c.startedAt) / 1000;
    let i = c.next;
    while (i < packets.length && (packets[i] as [number, number])[0] <= elapsed) i++;
    if (i === c.next) continue;
    const upTo = i < packets.length ? (packets[i] as [number, number])[1] : clip.length;
    c.res.write(clip.subarray(c.sent, upTo));
    c.sent = upTo;
    c.next = i;
    if (i >= packets.length) {
      c.res.end();
      conns.delete(c);
    }
  }
}

export async function startLiveServer(t: { clip: string }): Promise<{ port: number; packets: number; seconds: number }> {
  clip = readFileSync(t.clip);
  packets = await packetIndex(t.clip);
  server = createServer((req, res) => {
    res.writeHead(200, { 'Content-Type': 'video/mp2t', 'Cache-Control': 'no-store' });
    // The stream's start: everything before the first video packet (PAT, PMT).
    const first = packets[0]?.[1] ?? 0;
    res.write(clip.subarray(0, first));
    const c: Conn = { res, startedAt: performance.now(), next: 0, sent: first };
    served++;
    conns.add(c);
    const drop = (): void => {
      conns.delete(c);
    };
    req.on('close', drop);
    res.on('error', drop);
  });
  server.keepAliveTimeout = 0;
  await new Promise<void>((resolve) => server?.listen(0, '127.0.0.1', resolve));
  timer = setInterval(tick, 20);
  const addr = server.address();
  return { port: typeof addr === 'object' && addr ? addr.port : 0, packets: packets.length, seconds: packets[packets.length - 1]?.[0] ?? 0 };
}

export async function stopLiveServer(): Promise<{ served: number; cpuMicros: number }> {
  if (timer) clearInterval(timer);
  for (const c of conns) c.res.destroy();
  conns.clear();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  const c = process.cpuUsage();
  return { served, cpuMicros: c.user + c.system };
}
