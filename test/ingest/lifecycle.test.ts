/** The frame source's lifecycle (src/ingest/source-state.ts): the legal moves, and only those. */
import { describe, expect, it } from 'vitest';
import { canTransition, IllegalTransitionError, SOURCE_STATES, type SourceState } from '../../src/ingest/index.js';
import { SourceLifecycle } from '../../src/ingest/source-state.js';

/** Written out here independently of the table, with what triggers each move (docs/ingest.md). */
const LEGAL: Array<[SourceState, SourceState, string]> = [
  ['idle', 'starting', 'the first next()'],
  ['idle', 'stopping', 'stop() before any next()'],
  ['starting', 'connecting', 'ffmpeg found (and the file checked): the first attempt starts'],
  ['starting', 'failed', 'no ffmpeg; a file missing, unreadable or empty'],
  ['starting', 'stopping', 'stop()'],
  ['connecting', 'live', "the attempt's first frame"],
  ['connecting', 'retrying', 'the attempt failed and the retry policy tries again'],
  ['connecting', 'ended', 'a file that gives no frame at all'],
  ['connecting', 'failed', 'the attempt failed for good'],
  ['connecting', 'halting', 'the consumer took the maxFrames-th frame (from an earlier attempt)'],
  ['connecting', 'stopping', 'stop()'],
  ['live', 'retrying', 'a live input dropped or stalled'],
  ['live', 'ended', 'end of input'],
  ['live', 'failed', 'a file failed; retries used up; protocol-unavailable'],
  ['live', 'halting', 'the maxFrames-th frame handed out'],
  ['live', 'stopping', 'stop()'],
  ['retrying', 'connecting', 'the backoff delay is over: the next attempt starts'],
  ['retrying', 'halting', 'the consumer took the maxFrames-th frame during the wait'],
  ['retrying', 'stopping', 'stop() cuts the wait short'],
  ['halting', 'ended', "the run loop exited ('maxFrames reached')"],
  ['stopping', 'ended', "the children are reaped ('stopped')"],
];
const legal = (from: SourceState, to: SourceState): boolean => LEGAL.some(([a, b]) => a === from && b === to);

describe('source lifecycle', () => {
  it('allows exactly the documented moves', () => {
    for (const from of SOURCE_STATES) {
      for (const to of SOURCE_STATES) expect(canTransition(from, to), `${from} → ${to}`).toBe(legal(from, to));
    }
  });

  it('reaches every state from idle, and ended or failed (both terminal) from every state', () => {
    const reachable = (from: SourceState): Set<SourceState> => {
      const seen = new Set<SourceState>([from]);
      for (const s of seen) for (const to of SOURCE_STATES) if (canTransition(s, to)) seen.add(to);
      return seen;
    };
    expect([...reachable('idle')].sort()).toEqual([...SOURCE_STATES].sort());
    for (const s of SOURCE_STATES) {
      const ends = reachable(s);
      expect(ends.has('ended') || ends.has('failed'), s).toBe(true);
    }
    for (const terminal of ['ended', 'failed'] as const) {
      expect(SOURCE_STATES.filter((to) => canTransition(terminal, to))).toEqual([]);
    }
  });

  it('follows legal moves, and refuses an illegal one without moving', () => {
    const life = new SourceLifecycle();
    expect(life.state).toBe('idle');
    expect(() => life.transition('live')).toThrow(IllegalTransitionError);
    expect(() => life.transition('live')).toThrow('frame source: illegal state change idle → live');
    expect(life.state).toBe('idle');
    for (const to of ['starting', 'connecting', 'live', 'retrying', 'connecting', 'live', 'halting', 'ended'] as const) {
      life.transition(to);
      expect(life.state).toBe(to);
    }
    expect(() => life.transition('stopping')).toThrow(IllegalTransitionError);
    expect(life.state).toBe('ended');
  });

  it('groups the states: active, attempting, winding down, over', () => {
    const pathTo: Record<SourceState, SourceState[]> = {
      idle: [],
      starting: ['starting'],
      connecting: ['starting', 'connecting'],
      live: ['starting', 'connecting', 'live'],
      retrying: ['starting', 'connecting', 'retrying'],
      halting: ['starting', 'connecting', 'live', 'halting'],
      stopping: ['stopping'],
      ended: ['stopping', 'ended'],
      failed: ['starting', 'failed'],
    };
    const groups = (s: SourceState): string[] => {
      const life = new SourceLifecycle();
      for (const to of pathTo[s]) life.transition(to);
      expect(life.state).toBe(s);
      return (['active', 'attempting', 'windingDown', 'over'] as const).filter((g) => life[g]);
    };
    expect(Object.fromEntries(SOURCE_STATES.map((s) => [s, groups(s)]))).toEqual({
      idle: [],
      starting: ['active'],
      connecting: ['active', 'attempting'],
      live: ['active', 'attempting'],
      retrying: ['active'],
      halting: ['windingDown'],
      stopping: ['windingDown'],
      ended: ['over'],
      failed: ['over'],
    });
  });
});
