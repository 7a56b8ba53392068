// Backpressure: a client that stops reading gets its tokens coalesced, then is closed with
// 4008 ("resume from your last seq"), while a client that keeps reading keeps being served;
// the slow one then resumes with no gap and no duplicate. The pipeline is the scripted
// stand-in (fixtures/scripted-pipeline.mjs), producing ~1.5 MB/s of large captions.
// Coalescing and the hard limit byte by byte: client.test.ts. Delivery latency is measured
// by the benchmark (B5), not asserted here: a loaded machine would break any threshold.
import { afterAll, beforeAll, expect, it } from 'vitest';
import { runServe, type ServeHandle } from '../../src/server/index.js';
import { silentLogger } from '../../src/logger.js';
import { scriptedFactory } from './fixtures/scripted-pipeline.mjs';
import { TOKEN, TestClient, removeDir, seqsOf, sleep, tmpDir, until, writeConfig } from './helpers.js';

let dir: string;
let handle: ServeHandle;

beforeAll(async () => {
  dir = await tmpDir();
  const configPath = await writeConfig(dir, {
    limits: { clientSoftBufferBytes: 32 * 1024, clientBufferBytes: 512 * 1024, resumeWindow: 5000 },
    streams: [{ id: 'firehose', input: 'srt://127.0.0.1:9000' }],
  });
  handle = await runServe({
    configPath,
    pipelineFactory: scriptedFactory({ frameMs: 10, tokensPerFrame: 8, tokenMs: 0, textBytes: 8000, stampText: true }),
    logger: silentLogger(),
  });
  await handle.ready;
});

afterAll(async () => {
  await handle?.close();
  await removeDir(dir);
});

async function metric(name: string): Promise<number> {
  const text = await fetch(`http://127.0.0.1:${handle.port}/metrics`).then((r) => r.text());
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

it('coalesces then closes a client that never reads, without slowing the others', async () => {
  const fast = await TestClient.connect(handle.port);
  const slow = await TestClient.connect(handle.port);
  await fast.subscribe(['firehose']);
  await slow.subscribe(['firehose']);
  const latencies: number[] = [];
  fast.ws.on('message', (data) => {
    const m = /"type":"caption".*@(\d+)/.exec(data.toString().slice(0, 200));
    if (m) latencies.push(Date.now() - Number(m[1]));
  });
  await slow.waitFor((m) => m.some((x) => x.type === 'caption'));
  // The slow client stops reading its socket: kernel buffers fill, then the server's.
  (slow.ws as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
  const pausedAt = Date.now();
  const fastAtPause = latencies.length;
  await until(async () => (await metric('casa_live_websocket_slow_closes_total')) >= 1, 30_000, 'the slow client to be closed');
  const closedAfter = Date.now() - pausedAt;
  const fastWhileStuck = latencies.length - fastAtPause;
  expect(await metric('casa_live_websocket_tokens_coalesced_total')).toBeGreaterThan(0);

  // The fast client was served while the slow one was stuck: the slow one is closed only
  // once 512 KiB (32 frames of ~16 KB) waited for it, and the fast client had received
  // those frames' captions by then (with a slow client holding the others up, none).
  expect(fastWhileStuck).toBeGreaterThanOrEqual(16);
  expect(fast.ws.readyState).toBe(fast.ws.OPEN);
  const during = latencies.slice(5).sort((a, b) => a - b);
  const p50 = during[Math.floor(during.length / 2)];
  const p99 = during[Math.floor(during.length * 0.99)];

  // The slow client reads again: what was buffered, then the close frame with 4008.
  (slow.ws as unknown as { _socket: { resume(): void } })._socket.resume();
  const closed = await slow.closed;
  expect(closed).toEqual({ code: 4008, reason: 'slow consumer: resume from your last seq' });
  const slowSeqs = seqsOf(slow.messages, 'firehose');
  for (let i = 1; i < slowSeqs.length; i++) expect(slowSeqs[i]).toBeGreaterThan(slowSeqs[i - 1]!);

  // It resumes from its last seq: every caption after it, once.
  const resumeFrom = slow.lastSeq('firehose');
  const again = await TestClient.connect(handle.port);
  await again.subscribe(['firehose'], { resume: { firehose: resumeFrom } });
  await sleep(200);
  await fast.close();
  await again.close();
  const fastCaptions = seqsOf(fast.messages, 'firehose', 'caption');
  const lastCommon = Math.min(fastCaptions.at(-1)!, seqsOf(again.messages, 'firehose', 'caption').at(-1)!);
  const slowAll = [...seqsOf(slow.messages, 'firehose', 'caption'), ...seqsOf(again.messages, 'firehose', 'caption')].filter((s) => s <= lastCommon);
  expect(new Set(slowAll).size).toBe(slowAll.length);
  const firstSlow = slowAll[0]!;
  expect(slowAll).toEqual(fastCaptions.filter((s) => s >= firstSlow && s <= lastCommon));
  console.log(`slow client closed ${closedAfter} ms after it stopped reading; fast client got ${fastWhileStuck} captions meanwhile, p50 ${p50} ms, p99 ${p99} ms over ${during.length} captions`);
});
