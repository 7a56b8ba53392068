/**
 * Frame ingestion (DESIGN §1, source side): one ffmpeg child per stream delivering frames at
 * the configured rate, scaled to the model's input size, with stream timestamps. See docs/ingest.md.
 */
export { FIT_MODES } from './types.js';
export type {
  Fit,
  Frame,
  FrameSource,
  IngestLogger,
  ReconnectOptions,
  SourceKind,
  SourceOptions,
  SourceStatus,
} from './types.js';
export { openFrameSource } from './source.js';
export { DEFAULTS as SOURCE_DEFAULTS } from './source-options.js';
export { backoffDelay } from './backoff.js';
export {
  ingestRetryPolicy,
  nextRetry,
  retryingReason,
  gaveUpReason,
  FAST_RETRY,
  RESTART_MODES,
  type RestartMode,
  type RetrySettings,
  type RetryPolicy,
  type RetryDecision,
  type AttemptFailure,
  type FailureStreak,
} from './retry-policy.js';
export { ffmpegStarts, StartQueue, defaultStartSlots, type StartTicket } from './start-queue.js';
export { SOURCE_STATES, SOURCE_TRANSITIONS, canTransition, IllegalTransitionError, type SourceState } from './source-state.js';
export { resolveFfmpeg, clearFfmpegCache, type ResolvedFfmpeg, type ResolveFfmpegOptions, type BinarySource } from './binaries.js';
export { isLiveKind } from './types.js';
export { SKIP_FRAME_MODES, HWACCEL_RE, NICE_RANGE, type DecodeOptions, type SkipFrame } from './ffmpeg-args.js';
export { validateInput, classifyInput, redactUrl, SUPPORTED_SCHEMES, type ClassifiedInput } from './input.js';
export { runFramesCommand, type FramesCommandOptions, type FramesCommandResult } from './frames-command.js';
export * from './errors.js';
