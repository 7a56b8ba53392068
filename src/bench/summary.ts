/**
 * bench/results/SUMMARY.md: written from the suite JSON files found in the results
 * directory (so a run of some suites keeps the others' sections).
 */
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { percentile } from './stats.js';
import { f, SUITE_FILES, SUITE_IDS, type SuiteId, type SuiteResult, type Target } from './common.js';
import { mdTable } from './markdown.js';
import { b7Headline, b7Section } from './report-b7.js';

// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = Record<string, any>;

function mib(bytes: unknown, digits = 1): string {
  return typeof bytes === 'number' ? `${(bytes / 2 ** 20).toFixed(digits)} MiB` : '—';
}


function targetCells(t: Target): string[] {
  const v = t.value === null || t.value === undefined ? '—' : `${t.value}${t.unit && typeof t.value === 'number' ? ` ${t.unit}` : ''}`;
  const met = t.met === null ? 'reported' : t.met ? '**met**' : '**missed**';
  return [t.name, t.target, v, met];
}

function plotLinks(r: SuiteResult): string {
  return r.plots.map((p) => `![${p}](${p})`).join('\n\n');
}

function section(r: SuiteResult, body: string[]): string {
  const lines = [`## ${r.title}`, ''];
  if (r.skipped) {
    lines.push(`Not run: ${r.skipped}`, '');
    return lines.join('\n');
  }
  lines.push(...body, '');
  if (r.targets.length) {
    lines.push(...mdTable(['check', 'target', 'measured', null], r.targets.map(targetCells)), '');
  }
  const misses = r.targets.filter((t) => t.met === false && t.note);
  for (const t of misses) lines.push(`**Missed — ${t.name}.** ${t.note}`, '');
  if (r.plots.length) lines.push(plotLinks(r), '');
  if (r.notes.length) lines.push('Method:', '', ...r.notes.map((n) => `- ${n}`), '');
  lines.push(`Raw data: [${SUITE_FILES[r.suite]}.json](${SUITE_FILES[r.suite]}.json) (${r.quick ? 'quick run' : 'full run'} \`${r.command}\`, finished ${r.finishedAt}, ${f(r.durationSeconds, 0)} s; load average at start ${r.machine.loadAverageAtStart.join(', ')}).`, '');
  return lines.join('\n');
}

/** The token-compressed variants B1 ran (one run each), for its opening sentence. */
function compressedIntro(r: SuiteResult): string {
  const ks = Object.values((r.results.compressed as Record<string, Any> | undefined) ?? {}).map((q) => q.imageTokensPerFrame as number);
  return ks.length ? `, and one run each of the twin compressed to ${ks.join(', ')} image tokens per frame (a random Q-Former-style connector, instead of ${(r.config as Any).insertion?.imageTokensPerFrame})` : '';
}

function b1(r: SuiteResult): string[] {
  const c = r.results.casa as Any;
  const i = r.results.insertion as Any;
  const N = (r.config as Any).frames as number;
  return [
    `CASA bundle \`${(r.config as Any).casa?.name}\` and its insertion twin \`${(r.config as Any).insertion?.name}\` (${(r.config as Any).casa?.weights}) on the same ${N}-frame synthetic stream, ${(r.config as Any).tokensPerFrame} tokens per frame, one thread, ${(r.config as Any).casaRepeats} CASA and ${(r.config as Any).insertionRepeats} insertion runs alternated in fresh processes${compressedIntro(r)}.`,
    '',
    ...mdTable(
      [null, 'per-frame time at 50 frames', `at ${N} frames`, 'ratio', `KV bytes in use at ${N}`, `RSS growth 50→${N}`],
      [
        ['CASA', `${f(c.frameMsAt50, 2)} ms`, `${f(c[`frameMsAt${N}`], 2)} ms`, `**${f(c.ratio, 3)}×**`, `≤ ${mib(c.maxKvBytes, 2)} (allocated ${mib(c.kvCapacityBytes, 2)}, fixed)`, mib(c.rssGrowthBytes50toN)],
        ['insertion', `${f(i.frameMsAt50, 2)} ms`, `${f(i[`frameMsAt${N}`], 2)} ms`, `**${f(i.growth, 2)}×**`, `${mib(i[`kvBytesAt${N}`])} (+${f(i.kvBytesPerFrame / 1024, 1)} KiB/frame)`, mib(i.rssGrowthBytes50toN)],
        ...Object.values((r.results.compressed as Record<string, Any> | undefined) ?? {}).map((q) => [
          `insertion, ${q.imageTokensPerFrame} image token${q.imageTokensPerFrame === 1 ? '' : 's'}/frame (compressed)`,
          `${f(q.frameMsAt50, 2)} ms`,
          `${f(q[`frameMsAt${N}`], 2)} ms`,
          `**${f(q.growth, 2)}×**`,
          `${mib(q[`kvBytesAt${N}`])} (+${f(q.kvBytesPerFrame / 1024, 1)} KiB/frame; budget at frame ${q.kvBudgetCrossedAtFrame}, ${q.kvBudgetCrossedHow})`,
          mib(q.rssGrowthBytes50toN),
        ]),
      ],
    ),
    '',
    `- Insertion can no longer keep real time (${(r.config as Any).realtimeMs} ms per frame at 2 fps) from frame **${i.realtimeLostAtFrame}** (${f(i.realtimeLostAtStreamMinutes, 1)} min of stream) — **${i.realtimeLostHow}**: ${i.realtimeLostDetail}.`,
    `- Insertion passes the ${mib((r.config as Any).kvBudgetBytes, 0)} KV budget at frame **${i.kvBudgetCrossedAtFrame}** (${i.kvBudgetCrossedHow}${i.kvBudgetCrossedHow === 'extrapolated' ? ' from the measured, exactly linear growth' : ''})${i.kvAllocatedReachedBudgetAtFrame ? `; its allocated KV storage (doubling) reached that size at frame ${i.kvAllocatedReachedBudgetAtFrame}` : ''}.`,
    ...(casaSpread(r) ? [casaSpread(r) as string] : []),
    `- CASA at ${N} frames runs at ${f(c.ratio, 3)}× its per-frame time at 50 frames (per run: ${(c.ratioPerRun as number[]).map((x) => f(x, 3)).join(', ')}${c.runsUsed && (c.runsUsed as number[]).length < (c.ratioPerRun as number[]).length ? `; headline from run${(c.runsUsed as number[]).length > 1 ? 's' : ''} ${(c.runsUsed as number[]).join(', ')}, the others were disturbed by other processes on the machine` : ''}), with ${c.maxKvTokens} KV tokens at most and ${(c.evictions as number[])[0] ?? 0} evictions per run.`,
  ];
}

/** Per-run median frame time of the CASA runs, and the most CPU other processes took meanwhile. */
function casaSpread(r: SuiteResult): string | undefined {
  const runs = (r.samples.casa as Any[] | undefined) ?? [];
  if (runs.length < 2) return undefined;
  const med = runs.map((x) => percentile(x.frameMs as number[], 50));
  const others = runs.flatMap((x) => ((x.cpuSegments as Any[] | undefined) ?? []).map((g) => (g.othersPercent as number | null) ?? 0));
  return (
    `- The CASA runs do identical work; their median frame times over the whole stream were ${med.map((x) => f(x, 1)).join(', ')} ms` +
    (others.length ? ` while other processes used at most ${f(Math.max(...others), 0)}% of a core` : '') +
    ': run-to-run speed varies on this virtual machine, which is why runs are repeated and medians quoted, and why a ratio can come out below 1 (a run that was slow early and fast late).'
  );
}

function b2(r: SuiteResult): string[] {
  const x = r.results as Any;
  return [
    `Same model (\`${(r.config as Any).bundle?.name}\`, ${x.modelParameters?.toLocaleString?.('en-US') ?? '?'} parameters), same ${(r.config as Any).frames} frames, ${(r.config as Any).tokensPerFrame} tokens per frame, ${(r.config as Any).threads} thread, ${(r.config as Any).repeats} runs each:`,
    '',
    ...mdTable(
      [null, 'frames/s (median)', 'ms per frame (p50)'],
      [
        [`casa-live (onnxruntime-node ${r.versions.onnxruntimeNode}), one thread (batch: false)`, `**${f(x.casaLiveFps, 1)}**`, f(x.casaLiveFrameMsP50, 2)],
        ...(x.casaLiveBatchedFps !== undefined ? [[`casa-live, default batched engine (one stream: a round trip to the inference worker per step)`, f(x.casaLiveBatchedFps, 1), f(x.casaLiveBatchedFrameMsP50, 2)]] : []),
        [`PyTorch ${x.pytorchVersions?.torch ?? ''} eager (tools/casa_model/stream.py)`, `**${f(x.pytorchFps, 1)}**`, f(x.pytorchFrameMsP50, 2)],
      ],
    ),
    '',
    `Speed-up **${f(x.speedup, 2)}×**. The PyTorch model was rebuilt from the bundle's ONNX weights and reproduces its parity fixtures to ${Number(x.pytorchFixtureMaxAbsDiff).toExponential(1)} (tolerance ${x.pytorchFixtureTolerance}). casa-live spends ${f(x.casaLiveOrtShare * 100, 0)}% of its frame time inside onnxruntime (${f(x.casaLiveGraphRunsPerFrame, 1)} runs per frame, ${f(x.casaLiveOrtUsPerRun, 0)} µs each).`,
  ];
}

function b3(r: SuiteResult): string[] {
  const x = r.results as Any;
  const rows = ((x.trials as Any[]) ?? []).map((t) => [
    t.phase,
    t.streams,
    t.pass ? 'pass' : 'fail',
    f(t.p50CaptionMs, 0),
    f(t.p99CaptionMs, 0),
    f(t.p99DeliveryMs, 0),
    f(t.p99LiveToCaptionMs, 0),
    t.dropped,
    `${f(t.nodeCpuPercent, 0)}%`,
    `${t.machineCpuPercent ?? '—'}%`,
    t.reasons.join('; '),
  ]);
  return [
    `Capacity: **${x.capacityIsLowerBound ? '≥ ' : ''}${x.capacity} concurrent real-time 2-fps streams** with p99 frame→caption latency ≤ 500 ms and no dropped frames (confirmed by ${(x.atCapacity as Any[]).length} longer run(s)).`,
    ...(x.ingestCeiling !== undefined
      ? [
          '',
          `Ingest-only ceiling (the same ffmpeg children, no model): **${x.ingestCeiling} streams**; capacity is **${f((x.capacityShareOfIngestCeiling ?? NaN) * 100, 0)}%** of it. Event-loop delay p99 at the capacity: ${f(x.eventLoopDelayP99AtCapacityMs?.batched, 1)} ms with the batched engine, ${f(x.eventLoopDelayP99AtCapacityMs?.mainThread, 1)} ms with the engine on the main thread (batch: false${x.eventLoopDelayP99AtCapacityMs?.mainThreadTrial ? `; that trial: ${x.eventLoopDelayP99AtCapacityMs.mainThreadTrial.pass ? 'passed' : `failed — ${x.eventLoopDelayP99AtCapacityMs.mainThreadTrial.reasons.join('; ')}`}` : ''}).`,
        ]
      : []),
    '',
    ...mdTable(['phase', 'streams', 'result', 'p50 ms', 'p99 ms', 'delivery p99 ms', 'live→caption p99 ms', 'dropped', 'node CPU', 'machine CPU', 'why'], rows),
    ...b3Ingest(x),
  ];
}

/** B3's ingest-only trials and the decode CPU table. */
function b3Ingest(x: Any): string[] {
  const ingest = ((x.ingestTrials as Any[]) ?? []).map((t) => [t.streams, t.pass ? 'pass' : 'fail', `${t.framesArrived}/${t.framesExpected}`, f(t.latenessP99Ms, 0), f(t.latenessDriftMs, 0), `${f(t.ffmpegCpuPercent, 0)}% (${f(t.ffmpegCpuPercentPerStream, 2)}%)`, `${t.machineCpuPercent ?? '—'}%`, t.reasons.join('; ')]);
  const decode = ((x.decodeCpu as Any[]) ?? []).map((d) => [
    d.input,
    d.delivery,
    d.variant,
    `**${f(d.cpuPercentPerStream, 2)}%**`,
    `${d.framesArrived}/${d.framesExpected}`,
    d.sampledChanged ? `${d.sampledChanged.changed} of ${d.sampledChanged.compared}${d.sampledChanged.changed ? ` (up to ${d.sampledChanged.maxShiftS} s later${d.sampledChanged.missing ? `, ${d.sampledChanged.missing} missing` : ''})` : ''}` : '(reference)',
  ]);
  return [
    ...(ingest.length ? ['', 'Ingest-only trials:', '', ...mdTable(['streams', 'result', 'frames', 'lateness p99 − p50 ms', 'drift ms', 'ffmpeg CPU (per stream)', 'machine CPU', 'why'], ingest)] : []),
    ...(decode.length ? ['', 'Decode CPU per stream (ffmpeg children\'s CPU, % of one core), sampling 2 fps:', '', ...mdTable(['input', 'delivery', 'decode options', 'CPU per stream', 'frames', 'sampled frames changed'], decode)] : []),
  ];
}

function b4(r: SuiteResult): string[] {
  const x = r.results as Any;
  const q = (o: Any | undefined): string => (o ? `${f(o.p50, 0)} / ${f(o.p95, 0)} / ${f(o.p99, 0)}` : '—');
  return mdTable(
    ['streams', 'arrival → first token, p50 / p95 / p99 (ms)', 'arrival → caption committed, p50 / p95 / p99 (ms)', 'frames'],
    [
      ...(x.oneStreamByEngine
        ? Object.entries(x.oneStreamByEngine as Record<string, Any>).map(([name, e]) => [`1 (${name} engine)`, q(e.firstTokenMs), q(e.captionMs), e.captionMs?.n ?? 0])
        : [[1, q(x.oneStream?.firstTokenMs), q(x.oneStream?.captionMs), x.oneStream?.captionMs?.n ?? 0]]),
      x.atCapacity
        ? [`${x.atCapacity.streams} (capacity)`, q(x.atCapacity.firstTokenMs), q(x.atCapacity.captionMs), x.atCapacity.captionMs?.n ?? 0]
        : ['capacity', 'not measured (run B3)', null, null],
    ],
  );
}

function b5(r: SuiteResult): string[] {
  const x = r.results as Any;
  const rows = ((x.variants as Any[]) ?? []).map((v) => [
    v.name,
    `${f(v.captionMs.p50, 1)} / ${f(v.captionMs.p95, 1)} / **${f(v.captionMs.p99, 1)}**`,
    f(v.tokenMs.p99, 1),
    (v.serverCpuPercent as number[]).map((c) => `${f(c, 0)}%`).join(', '),
    (v.captionsPerClient as Any[]).map((c) => `${c.min}–${c.max}`).join(', '),
    (v.closedClients as number[]).reduce((a, b) => Math.max(a, b), 0),
  ]);
  return [
    `${(r.config as Any).clients} WebSocket subscribers on 127.0.0.1 to one stream (2 fps, ${(r.config as Any).tokensPerFrame} token events + 1 caption per frame), the real daemon in its own process:`,
    '',
    ...mdTable(['server config', 'caption delivery p50 / p95 / p99 (ms)', 'token p99 (ms)', 'server CPU per window', 'captions per client per window', 'clients dropped'], rows),
  ];
}

function b6(r: SuiteResult): string[] {
  const x = r.results as Any;
  return [
    `${f(x.streamHours, 2)} h of stream (${x.frames} frames) in ${f(x.wallSeconds, 0)} s: **${f(x.speedVsRealTime, 1)}× real time**. RSS at the end of warm-up ${f(x.rssAtWarmupEndMiB, 1)} MiB, then between ${f(x.rssMinMaxAfterWarmupMiB?.[0], 1)} and ${f(x.rssMinMaxAfterWarmupMiB?.[1], 1)} MiB (×${f(x.rssRatioRange?.[0], 3)} … ×${f(x.rssRatioRange?.[1], 3)}; trend ${f(x.rssSlopeMiBPerStreamHour, 2)} MiB per stream hour; second half of the stream ${f(x.rssSecondHalfMinMaxMiB?.[0], 1)}–${f(x.rssSecondHalfMinMaxMiB?.[1], 1)} MiB). KV tokens ≤ ${x.maxKvTokens} (cap ${x.cap}), ${x.evictions} evictions. File descriptors ${x.fds?.before} before → ${x.fds?.after} after (after restarts: ${(x.fds?.afterRestarts as number[] | undefined)?.join(', ') || '—'}); child processes during ≤ ${x.children?.duringMax}, after: ${(x.children?.after as string[] | undefined)?.length ?? '?'}; dropped frames ${x.droppedFrames}.`,
  ];
}

function worker(r: SuiteResult): string[] {
  const rows = ((r.results as Any).table as Any[] | undefined) ?? [];
  return [
    `${(r.config as Any).tokensPerFrame} tokens per frame; the worker runs ${(r.config as Any).workerModel ?? 'the CASA bundle rebuilt in PyTorch (torch:)'}, one process serving every session:`,
    '',
    ...mdTable(
      ['engine', 'streams', 'frames/s', 'ms per frame in captionFrame', 'ms inside the worker', 'protocol ms per frame'],
      rows.map((x) => [x.engine, x.streams, f(x.fps, 1), f(x.frameMs, 2), f(x.workerFrameMs, 2), f(x.protocolMsPerFrame, 3)]),
    ),
  ];
}

/** Milliseconds as seconds ("—" for none). */
function secs(ms: unknown): string {
  return typeof ms === 'number' ? `${f(ms / 1000, 2)} s` : '—';
}

function b8(r: SuiteResult): string[] {
  const c = r.config as Any;
  const fo = r.results.failover as Any;
  const fan = r.results.fanout as Any;
  const mem = r.results.redisLogMemory as Any | undefined;
  const s = secs;
  return [
    `${c.nodes} cluster nodes (the real daemon with a scripted pipeline, each its own process) and ${c.streams} streams on a real redis-server, leaseMs ${c.leaseMs}: ${fo.kills} times the node holding the most streams was killed with SIGKILL and replaced.`,
    '',
    ...mdTable(
      ['streams moved', 'failover p50', 'p90', 'max', 'target', 'not resumed', 'seq gaps'],
      [[fo.streamsMoved, s(fo.p50Ms), s(fo.p90Ms), `**${s(fo.maxMs)}**`, `≤ ${s(fo.targetMs)}`, fo.timedOut, fo.seqGaps]],
    ),
    '',
    ...(mem ? [`The streams' event logs in Redis held ${mem.entries} events in ${mib(mem.bytes, 2)}: **${f(mem.bytesPerEntry, 0)} bytes per event** (tokens, captions and statuses).`, ''] : []),
    `${c.viewers} WebSocket viewers split over ${c.viewerNodes} nodes, one stream (2 fps, ${c.tokensPerFrame} token events + 1 caption per frame) owned by one of them; every node serves it from Redis:`,
    '',
    ...mdTable(
      ['viewers on', 'caption delivery p50 / p95 / p99 (ms)', 'node CPU per window'],
      ((fan.nodes as Any[]) ?? []).map((n) => [`${n.id}${n.owner ? ' (owner)' : ''}`, `${f(n.captionMs.p50, 1)} / ${f(n.captionMs.p95, 1)} / **${f(n.captionMs.p99, 1)}**`, (n.cpuPercent as number[]).map((x) => `${f(x, 0)}%`).join(', ')]),
    ),
  ];
}

const RENDER: Record<SuiteId, (r: SuiteResult) => string[]> = { b1, b2, b3, b4, b5, b6, b7: b7Section, b8, worker };

export function headline(r: SuiteResult): string {
  const x = r.results as Any;
  switch (r.suite) {
    case 'b1': {
      const N = (r.config as Any).frames;
      return `CASA ${f(x.casa?.ratio, 2)}× per-frame time at ${N} vs 50 frames, KV ≤ ${mib(x.casa?.maxKvBytes, 2)}; insertion ${f(x.insertion?.growth, 1)}× slower at ${N} frames, loses real time at frame ${x.insertion?.realtimeLostAtFrame} (${x.insertion?.realtimeLostHow})`;
    }
    case 'b2':
      return `${f(x.speedup, 2)}× PyTorch (${f(x.casaLiveFps, 1)} vs ${f(x.pytorchFps, 1)} frames/s, 1 thread)`;
    case 'b3':
      return `${x.capacityIsLowerBound ? '≥ ' : ''}${x.capacity} concurrent real-time 2-fps streams`;
    case 'b4':
      return `1 stream: p99 first token ${f(x.oneStream?.firstTokenMs?.p99, 0)} ms, caption ${f(x.oneStream?.captionMs?.p99, 0)} ms${x.atCapacity ? `; at ${x.atCapacity.streams} streams: ${f(x.atCapacity.firstTokenMs?.p99, 0)} / ${f(x.atCapacity.captionMs?.p99, 0)} ms` : ''}`;
    case 'b5':
      return `p99 caption delivery ${f(x.headline?.captionP99Ms, 1)} ms to ${(r.config as Any).clients} subscribers, server CPU ${f(x.headline?.serverCpuPercent, 0)}% of a core`;
    case 'b7':
      return b7Headline(r);
    case 'worker': {
      const rows = (x.table as Any[] | undefined) ?? [];
      const fps = (engine: string, n: number) => f(rows.find((r) => r.engine === engine && r.streams === n)?.fps, 1);
      return `protocol ${f(x.protocolMsPerFrame, 2)} ms per frame; frames/s worker vs ONNX: ${fps('worker', 1)} vs ${fps('onnx', 1)} (1 stream), ${fps('worker', 16)} vs ${fps('onnx', 16)} (16 streams)`;
    }
    case 'b8':
      return `failover p50 ${secs(x.failover?.p50Ms)}, max ${secs(x.failover?.maxMs)} over ${x.failover?.kills} kills (leaseMs ${(r.config as Any).leaseMs}); p99 caption delivery ${f(x.fanout?.captionMs?.p99, 1)} ms to ${(r.config as Any).viewers} viewers over ${(r.config as Any).viewerNodes} nodes`;
    case 'b6':
      return `${f(x.streamHours, 2)} h of stream at ${f(x.speedVsRealTime, 1)}× real time: RSS ×${f(x.rssRatioRange?.[0], 3)}…×${f(x.rssRatioRange?.[1], 3)}, KV ≤ ${x.maxKvTokens}/${x.cap} tokens, fds ${x.fds?.before}→${x.fds?.after}, children left ${(x.children?.after as string[] | undefined)?.length ?? '?'}`;
  }
}

export function readResults(outDir: string): SuiteResult[] {
  const out: SuiteResult[] = [];
  for (const id of SUITE_IDS) {
    const file = path.join(outDir, `${SUITE_FILES[id]}.json`);
    if (existsSync(file)) out.push(JSON.parse(readFileSync(file, 'utf8')) as SuiteResult);
  }
  return out;
}

export function writeSummary(outDir: string): string {
  const results = readResults(outDir);
  const first = results[0];
  const lines: string[] = ['# casa-live benchmark results', ''];
  if (!first) {
    lines.push('No results yet: run `npm run bench`.', '');
  } else {
    const quick = results.some((r) => r.quick);
    const m = first.machine;
    lines.push(
      `Reproduce: \`${quick ? 'npm run bench:quick' : 'npm run bench'}\` (or \`casa-live bench${quick ? ' --quick' : ''}\`; one suite: \`casa-live bench --suite b3\`; redraw the plots and this file from the JSON: \`casa-live bench --replot\`). Each section names the command and time of its run.`,
      '',
      `Machine: ${m.cpuModel}, ${m.cpus} cores${m.affinity ? ` (allowed: ${m.affinity})` : ''}, ${(m.totalMemoryBytes / 2 ** 30).toFixed(0)} GiB, ${m.platform} ${m.release}. Node ${first.versions.node}, onnxruntime-node ${first.versions.onnxruntimeNode}, casa-live ${first.versions.casaLive}.` +
        (quick ? ' **Quick run: short smoke figures, not the published ones.**' : ''),
      '',
      'Methodology (docs/benchmarks.md): every measurement runs in a fresh worker process; runs are repeated and medians quoted; the CASA/insertion comparison alternates its runs in the same invocation. Every engine run generates exactly 5 tokens per frame (EOS suppressed, then fed), so the work per frame is the same whatever the weights say.',
      '',
      ...mdTable(
        ['suite', 'headline', 'targets'],
        results.map((r) => {
          const t = r.targets.filter((x) => x.met !== null);
          const verdict = r.skipped ? `not run: ${r.skipped}` : t.length ? t.map((x) => `${x.met ? 'met' : 'missed'}: ${x.name} (${x.target})`).join('; ') : '—';
          return [`[${r.title}](#${anchor(r.title)})`, r.skipped ? '—' : headline(r), verdict];
        }),
      ),
      '',
    );
    for (const r of results) lines.push(section(r, r.skipped ? [] : RENDER[r.suite](r)));
  }
  const text = lines.join('\n');
  writeFileSync(path.join(outDir, 'SUMMARY.md'), text);
  return text;
}

function anchor(title: string): string {
  return title
    .toLowerCase()
    .replace(/[^\p{L}\p{N} -]/gu, '')
    .trim()
    .replace(/ /g, '-');
}

