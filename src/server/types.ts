/**
 * The daemon's own types. The pipeline contract it consumes (CaptionPipeline, its stats,
 * PipelineFactory, PrepareHook) is owned by the layer below: src/pipeline/types.ts.
 */
import type { ServeConfig, StreamConfig } from '../config/schema.js';

export type { StreamConfig, ServeConfig };

/** The shared model as /readyz reports it. */
export type ModelState =
  | { state: 'loading'; name: string }
  | { state: 'loaded'; name: string; loadedAt: string }
  | { state: 'failed'; name: string; error: string };
