/**
 * B3's capacity search and confirmation as logic: the trial runner here is a stand-in that
 * passes below a threshold (a real trial takes a minute of the whole machine; the suite runs
 * real ones in bench.test.ts's smoke run and in `npm run bench`).
 */
import { describe, expect, it } from 'vitest';
import { CONFIRM_LEVELS, confirmCapacity, searchCapacity, type Trial } from '../../src/bench/suites/b3.js';

/** A runner whose trials pass up to `search` streams in the search and up to `confirm` in confirmations. */
function runner(limits: { search: number; confirm: number }) {
  const calls: Array<[number, string]> = [];
  const trial = async (n: number, phase: 'search' | 'confirm'): Promise<Trial> => {
    calls.push([n, phase]);
    return { streams: n, phase, pass: n <= (phase === 'search' ? limits.search : limits.confirm) } as Trial;
  };
  return { trial, calls };
}

describe('B3 capacity search', () => {
  it('doubles until a trial fails, then bisects to within 8 %', async () => {
    const { trial, calls } = runner({ search: 200, confirm: 200 });
    const found = await searchCapacity(trial, 32, 512);
    expect(found).toBeLessThanOrEqual(200);
    expect(found).toBeGreaterThanOrEqual(200 * 0.92);
    expect(calls.slice(0, 4).map(([n]) => n)).toEqual([32, 64, 128, 256]);
  });

  it('confirms at the level found when every run holds', async () => {
    const { trial, calls } = runner({ search: 200, confirm: 200 });
    const r = await confirmCapacity(200, 2, trial);
    expect(r.capacity).toBe(200);
    expect(r.confirm.map((t) => t.streams)).toEqual([200, 200]);
    expect(calls).toHaveLength(2);
  });

  it('steps down 8 % at a time past several failing levels until one holds', async () => {
    // The 2026-11-29 full run: the search found 200, the confirmations failed at 200, 184 and
    // 169; with three levels the suite reported 0 streams instead of going on down.
    const { trial } = runner({ search: 200, confirm: 150 });
    const r = await confirmCapacity(200, 2, trial);
    expect(r.capacity).toBe(143);
    expect(r.confirm.every((t) => t.pass && t.streams === 143)).toBe(true);
  });

  it('gives 0 when no level within CONFIRM_LEVELS holds, and keeps the last level tried', async () => {
    const { trial, calls } = runner({ search: 200, confirm: 10 });
    const r = await confirmCapacity(200, 2, trial);
    expect(r.capacity).toBe(0);
    expect(new Set(calls.map(([n]) => n)).size).toBe(CONFIRM_LEVELS);
    expect(r.confirm).toHaveLength(1);
    expect(r.confirm[0]?.pass).toBe(false);
  });
});
