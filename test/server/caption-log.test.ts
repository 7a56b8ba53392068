// The durable caption log: append, reopen (seq continues above anything issued), torn
// last line repaired, retention by day, history reads.
import { appendFile, readFile, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { afterEach, beforeEach, expect, it } from 'vitest';
import { CaptionLog } from '../../src/sinks/caption-log.js';
import { parseConfig } from '../../src/config/index.js';
import { createLogger } from '../../src/logger.js';
import { createMetrics } from '../../src/metrics.js';
import { StreamRunner } from '../../src/server/stream-runner.js';
import type { CaptionEvent, StatusEvent } from '../../src/events.js';
import { removeDir, tmpDir } from './helpers.js';

let dir: string;
beforeEach(async () => {
  dir = await tmpDir('casa-log-');
});
afterEach(async () => {
  await removeDir(dir);
});

const caption = (seq: number, frame = seq): CaptionEvent => ({ type: 'caption', stream: 's', seq, frame, start: frame / 2, end: frame / 2 + 0.5, text: `frame ${frame}`, latencyMs: 100 });
const status = (seq: number): StatusEvent => ({ type: 'status', stream: 's', seq, state: 'live', lagMs: 0, droppedFrames: 0 });
const open = (tailEvents = 100, now?: () => Date) => CaptionLog.open({ dir, fsync: true, retentionDays: 2, tailEvents, ...(now ? { now } : {}) });

it('appends JSONL and reopens with the last seq and the recent events', async () => {
  const log = await open();
  expect(log.lastSeq).toBe(0);
  await log.append(status(1));
  for (let s = 2; s <= 10; s++) await log.append(caption(s));
  await log.close();
  const [file] = await readdir(dir);
  expect(file).toMatch(/^\d{4}-\d{2}-\d{2}\.jsonl$/);
  const lines = (await readFile(path.join(dir, file!), 'utf8')).trim().split('\n').map((l) => JSON.parse(l));
  expect(lines[1]).toEqual(caption(2));
  expect(Object.keys(lines[1])).toEqual(['type', 'stream', 'seq', 'frame', 'start', 'end', 'text', 'latencyMs']);

  const again = await open(4);
  expect(again.lastSeq).toBe(10);
  expect(again.recent.map((e) => e.seq)).toEqual([7, 8, 9, 10]);
  expect(again.olderSeq).toBe(6);
  expect((await again.readAfter(8)).map((e) => e.seq)).toEqual([9, 10]);
  await again.close();
});

it('continues above the seq reservation, so unlogged (token) seqs are never reused', async () => {
  const log = await open();
  await log.append(caption(5));
  await log.reserve(1005);
  await log.close();
  const again = await open();
  expect(again.lastSeq).toBe(1005);
  expect(JSON.parse(await readFile(path.join(dir, 'seq.json'), 'utf8'))).toEqual({ reserved: 1005 });
  await again.close();
});

it('cuts a torn last line (crash mid-write) and keeps appending on a fresh line', async () => {
  const log = await open();
  await log.append(caption(1));
  await log.append(caption(2));
  await log.close();
  const [file] = await readdir(dir);
  const torn = '{"type":"caption","stream":"s","seq":3,"fr';
  await appendFile(path.join(dir, file!), torn);
  const again = await open();
  expect(again.lastSeq).toBe(2);
  expect([again.tornBytes, again.tornFile]).toEqual([torn.length, path.join(dir, file!)]);
  await again.append(caption(3));
  await again.close();
  const lines = (await readFile(path.join(dir, file!), 'utf8')).trim().split('\n');
  expect(lines.map((l) => JSON.parse(l).seq)).toEqual([1, 2, 3]);
});

it('writes one segment per UTC day and deletes those past the retention', async () => {
  let now = new Date('2025-03-01T12:00:00Z');
  const log = await open(100, () => now);
  await log.append(caption(1));
  now = new Date('2025-03-02T12:00:00Z');
  await log.append(caption(2));
  now = new Date('2025-03-05T12:00:00Z');
  await log.append(caption(3));
  expect((await readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort()).toEqual(['2025-03-01.jsonl', '2025-03-02.jsonl', '2025-03-05.jsonl']);
  expect(await log.prune()).toBe(2);
  expect((await readdir(dir)).filter((f) => f.endsWith('.jsonl'))).toEqual(['2025-03-05.jsonl']);
  await log.close();
  // Reading spans segments, oldest first.
  await writeFile(path.join(dir, '2025-03-04.jsonl'), JSON.stringify(caption(0)) + '\n');
  const again = await open(100, () => now);
  expect(again.recent.map((e) => e.seq)).toEqual([0, 3]);
  await again.close();
});

it('the daemon warns when it cuts a torn line, naming the byte count', async () => {
  const streamDir = path.join(dir, 'captions', 'cam');
  const log = await CaptionLog.open({ dir: streamDir, fsync: false, retentionDays: 2, tailEvents: 10 });
  await log.append(caption(1));
  await log.close();
  const [file] = await readdir(streamDir);
  await appendFile(path.join(streamDir, file!), '{"type":"capt');
  const lines: string[] = [];
  const logger = createLogger({ level: 'info', destination: { write: (l: string) => void lines.push(l) } });
  const stream = parseConfig(`auth: {required: false}\nstreams: [{id: cam, input: rtsp://h/x}]\n`).streams[0]!;
  const runner = await StreamRunner.create(stream, 'config', {
    factory: () => ({ events: (async function* () {})(), stop: async () => undefined }),
    publish: () => undefined,
    metrics: createMetrics({ defaultMetrics: false }),
    logger,
    dataDir: dir,
    captionLog: { retentionDays: 2, fsync: false },
    resumeWindow: 10,
    stopTimeoutMs: 1000,
  });
  await runner.close('test over');
  const warning = lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.level === 'warn');
  expect(warning).toMatchObject({ stream: 'cam', msg: 'caption log: cut a torn last line (13 bytes)', bytes: 13, file: path.join(streamDir, file!) });
});
