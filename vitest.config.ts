import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    // Tests start real ffmpeg children, servers and ONNX sessions; two cores only.
    pool: 'forks',
    poolOptions: { forks: { minForks: 1, maxForks: 2 } },
    reporters: ['default'],
  },
});
