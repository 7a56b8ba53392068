/**
 * The batched engine's gather rule on its own, with a hand-driven clock: when steps run and
 * how long frames wait for other streams' frames. (The rule inside real worker threads with
 * the real graphs: scheduler.test.ts and batch.test.ts.)
 */
import { describe, expect, it } from 'vitest';
import type { StepOp } from '../../src/model/batch/protocol.js';
import { FRAME_GATHER_MIN_STREAMS, GatherRule } from '../../src/model/batch/scheduler.js';

let req = 0;
function step(sid: number, frame = false): StepOp {
  return { op: 'step', sid, req: req++, ids: frame ? [4, 5] : [7], position: 0, ...(frame ? { pixels: new Float32Array(1) } : {}) };
}

function rule(frameGatherMs: number, maxSize = 64) {
  const clock = { t: 0 };
  return { clock, r: new GatherRule(maxSize, 2, frameGatherMs, () => clock.t) };
}

const sids = (d: ReturnType<GatherRule['decide']>): number[] => (d && 'run' in d ? d.run.map((s) => s.sid) : []);
const MANY = FRAME_GATHER_MIN_STREAMS;

describe('frames wait for other streams\' frames', () => {
  it('a stream alone, or fewer streams than the threshold: a frame starts at once', () => {
    const { r } = rule(80);
    r.submit(step(1, true));
    expect(sids(r.decide(1))).toEqual([1]);
    r.end(1);
    r.submit(step(2, true));
    expect(sids(r.decide(MANY - 1))).toEqual([2]);
  });

  it('with many streams a frame waits up to frameGatherMs, and the frames that came meanwhile go with it', () => {
    const { clock, r } = rule(80);
    r.submit(step(1, true));
    expect(r.decide(MANY)).toEqual({ waitMs: 80 });
    clock.t = 30;
    r.submit(step(2, true));
    expect(r.decide(MANY)).toEqual({ waitMs: 50 });
    clock.t = 80;
    expect(sids(r.decide(MANY))).toEqual([1, 2]);
    expect(r.waiting).toBe(0);
  });

  it('frameGatherMs 0: frames start at once whatever the number of streams', () => {
    const { r } = rule(0);
    r.submit(step(1, true));
    expect(sids(r.decide(1000))).toEqual([1]);
  });

  it('frames go as soon as no other stream could still bring one (all in a frame or waiting)', () => {
    const { r } = rule(80);
    const n = MANY;
    for (let sid = 0; sid < n - 1; sid++) r.submit(step(sid, true));
    expect(r.decide(n)).toEqual({ waitMs: 80 });
    r.submit(step(n - 1, true));
    expect(sids(r.decide(n))).toHaveLength(n);
  });

  it('maxSize frames go at once', () => {
    const { r } = rule(80, 3);
    for (let sid = 0; sid < 3; sid++) r.submit(step(sid, true));
    expect(sids(r.decide(MANY))).toEqual([0, 1, 2]);
  });

  it('steps of streams already inside a frame are not held by a waiting frame', () => {
    const { clock, r } = rule(80);
    r.submit(step(1, true));
    clock.t = 80;
    expect(sids(r.decide(MANY))).toEqual([1]); // stream 1 is inside its frame now
    clock.t = 90;
    r.submit(step(2, true)); // another stream's frame starts waiting
    r.submit(step(1)); // stream 1's next token
    expect(sids(r.decide(MANY))).toEqual([1]);
    expect(r.decide(MANY)).toEqual({ waitMs: 80 });
  });

  it('a stream closed while its frame waits: the frame is dropped and returned', () => {
    const { r } = rule(80);
    const s = step(5, true);
    r.submit(s);
    expect(r.drop(5)).toEqual([s]);
    expect(r.decide(MANY)).toBeUndefined();
  });
});

describe('steps inside frames (unchanged by frame gathering)', () => {
  it('run at once when every stream inside a frame has one waiting, else wait at most gatherMs', () => {
    const { clock, r } = rule(0);
    r.submit(step(1, true));
    r.submit(step(2, true));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.submit(step(1));
    expect(r.decide(2)).toEqual({ waitMs: 2 });
    clock.t = 1;
    r.submit(step(2));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.end(2);
    r.submit(step(1));
    expect(sids(r.decide(2))).toEqual([1]);
  });
});

describe('chained steps (the worker feeds a greedy stream\'s guessed step)', () => {
  const chained = (sid: number, closes = false): StepOp => ({ ...step(sid), chained: true, ...(closes ? { closes: true } : {}) });

  it('a step of the main thread\'s withdraws the stream\'s waiting chained step, and only that', () => {
    const { r } = rule(0);
    r.submit(step(1, true));
    r.submit(step(2, true));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    const mine = step(1);
    r.submit(chained(1));
    r.submit(chained(2));
    r.withdrawChained(1);
    r.submit(mine);
    const d = r.decide(2);
    expect(d && 'run' in d ? d.run : []).toEqual([expect.objectContaining({ sid: 2, chained: true }), mine]);
  });

  it('a chained closing step ends its stream\'s frame when it runs: the others no longer wait for it', () => {
    const { r } = rule(0);
    r.submit(step(1, true));
    r.submit(step(2, true));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.submit(chained(1, true));
    r.submit(chained(2));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.submit(chained(2));
    expect(sids(r.decide(2))).toEqual([2]); // stream 1's frame is closed: not waited for
  });
});

describe('a chained closing step the main thread did not take', () => {
  it('puts its stream back inside the frame when the main thread\'s own step comes: the others wait for it again', () => {
    const { r } = rule(0);
    r.submit(step(1, true));
    r.submit(step(2, true));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.submit({ ...step(1), chained: true, closes: true });
    r.submit(step(2));
    expect(sids(r.decide(2))).toEqual([1, 2]); // stream 1's frame looks closed now
    r.withdrawChained(1);
    r.submit(step(1)); // its sampler chose otherwise: stream 1 goes on with its frame
    expect(r.decide(2)).toEqual({ waitMs: 2 }); // waits for stream 2, inside its frame
    r.submit(step(2));
    expect(sids(r.decide(2))).toEqual([1, 2]);
    r.submit(step(2));
    expect(r.decide(2)).toEqual({ waitMs: 2 }); // stream 2 waits for stream 1 again
    r.end(1);
    expect(sids(r.decide(2))).toEqual([2]);
  });
});
