/** The caption pipeline (ingest → caption session), its contract, model resolution and the daemon's hooks. */
export { createCaptionPipeline, type CaptionPipelineOptions } from './pipeline.js';
export type {
  CaptionPipeline,
  CaptionPipelineHandle,
  CaptionPipelineStats,
  CaptionPipelineWithStats,
  PipelineFactory,
  PipelineContext,
  PipelineStats,
  PrepareHook,
  StopOptions,
} from './types.js';
export {
  EMBEDDED_MODEL_NAME,
  ModelRegistry,
  describeBundle,
  embeddedModelDir,
  listBundles,
  loadModelDir,
  packageModelsDir,
  packageRoot,
  resolveModelRef,
  type BundleListing,
  type ModelRegistryOptions,
} from './models.js';
export { createDaemonHooks, sessionOptionsFrom, type DaemonHooks, type DaemonHooksOptions } from './daemon.js';
export { AsyncQueue } from './queue.js';
