/** The caption pipeline (ingest → caption session), model resolution and the daemon's hooks. */
export { createCaptionPipeline, type CaptionPipelineOptions, type CaptionPipelineHandle, type StopOptions } from './pipeline.js';
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
