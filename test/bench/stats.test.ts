import { describe, expect, it } from 'vitest';
import { deliveryDelay } from '../../src/bench/stats.js';

describe('deliveryDelay', () => {
  it("counts each frame's lateness against its stream's fastest-delivered frame", () => {
    // Connecting took 900 ms (a constant, cancelled); frame 2 waited 120 ms more, frame 3 40 ms.
    const frames = [
      { pts: 0, at: 10_900 },
      { pts: 0.5, at: 11_400 },
      { pts: 1, at: 12_020 },
      { pts: 1.5, at: 12_440 },
    ];
    const delay = deliveryDelay(frames);
    expect(frames.map(delay)).toEqual([0, 0, 120, 40]);
  });

  it('takes the least offset, not the first frame, as zero', () => {
    const frames = [
      { pts: 0, at: 1_300 },
      { pts: 0.5, at: 1_500 },
    ];
    expect(frames.map(deliveryDelay(frames))).toEqual([300, 0]);
  });
});
