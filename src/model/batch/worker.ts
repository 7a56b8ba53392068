/**
 * An inference worker thread of the batched engine (started by src/model/batch/pool.ts):
 * it loads the bundle's graphs, holds its streams' K/V and runs their steps in batches
 * (executor.ts) when the gather rule says so (scheduler.ts). Operations that arrive while a
 * round of graph runs is in progress wait for its end, so a stream's caches never change
 * under a run.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { openGraphs } from '../bundle.js';
import { CasaBatchDecoderGraph, graphSessions, type BundleGraphs } from '../graphs.js';
import { BatchExecutor, stepResult } from './executor.js';
import type { FromWorker, StepOp, ToWorker, WorkerInit, WorkerOp } from './protocol.js';
import { GatherRule } from './scheduler.js';

const port = parentPort;
if (!port) throw new Error('src/model/batch/worker.ts runs as a worker thread');
const init = workerData as WorkerInit;
const post = (msg: FromWorker): void => port.postMessage(msg);

let graphs: BundleGraphs;
try {
  graphs = await openGraphs(init.manifest, init.files, init.load);
  if (graphs.fusion !== 'casa' || !(graphs.decoder instanceof CasaBatchDecoderGraph)) {
    throw new Error(`${init.files.decoder}: not a batched CASA decoder (format version 2, fusion casa)`);
  }
} catch (err) {
  post({ type: 'failed', message: err instanceof Error ? err.message : String(err) });
  process.exit(0);
}

const executor = new BatchExecutor(init.manifest, graphs, init.batch.maxSize, init.poolSegment);
const rule = new GatherRule(init.batch.maxSize, init.batch.gatherMs, init.batch.frameGatherMs);
let pending: WorkerOp[] = [];
let busy = false;
let releasing = false;
let timer: NodeJS.Timeout | undefined;

function apply(ops: WorkerOp[]): void {
  for (const op of ops) {
    switch (op.op) {
      case 'open':
        executor.open(op.sid, op.maxTokens, op.windowCapacity, op.chain);
        break;
      case 'step':
        rule.withdrawChained(op.sid);
        rule.submit(op);
        break;
      case 'end':
        rule.end(op.sid);
        break;
      case 'close':
        rule.drop(op.sid); // the main thread has already rejected its waiting step
        executor.close(op.sid);
        break;
    }
  }
}

async function runRound(steps: StepOp[]): Promise<void> {
  busy = true;
  try {
    await executor.round(steps, (results) => post({ type: 'results', results, stats: executor.stats }));
    for (const chained of executor.takeChained()) rule.submit(chained);
  } catch (err) {
    // A bug rather than an onnxruntime failure: fail the round's steps (answered ones are ignored).
    // The round's chained steps are not run: their streams wait for them too (a result sent
    // before the error may have announced one), so they get the error as well.
    const lost = executor.takeChained();
    const error = `internal error in the inference worker: ${err instanceof Error ? err.message : String(err)}`;
    post({ type: 'results', results: [...steps, ...lost].map((s) => stepResult(s, { error })), stats: executor.stats });
  } finally {
    busy = false;
  }
}

/**
 * Runs rounds while the gather rule has steps ready; a message or the gather timer starts it
 * again. A loop, not a recursion: under a backlog that never empties, each awaited recursive
 * call would keep the one before it alive.
 */
async function pump(): Promise<void> {
  if (busy) return;
  for (;;) {
    if (timer) clearTimeout(timer);
    timer = undefined;
    apply(pending);
    pending = [];
    if (releasing) return release();
    const decision = rule.decide(executor.stats.streams);
    if (!decision) return;
    if ('waitMs' in decision) {
      timer = setTimeout(() => void pump(), Math.max(1, Math.ceil(decision.waitMs)));
      return;
    }
    await runRound(decision.run);
  }
}

async function release(): Promise<void> {
  await Promise.allSettled(graphSessions(graphs).map((s) => s.release()));
  process.exit(0);
}

port.on('message', (msg: ToWorker) => {
  if (msg.type === 'release') releasing = true;
  else pending.push(...msg.ops);
  void pump();
});
post({ type: 'ready' });
