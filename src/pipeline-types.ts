import type { UnsequencedEvent } from './events.js';

/**
 * A running caption pipeline for one stream (ingest → caption session). The CLI and the
 * daemon consume it; the daemon stamps each event with the stream id and seq.
 */
export interface CaptionPipeline {
  /** Events in order; the iterator ends when the stream ends or the pipeline is stopped. */
  readonly events: AsyncIterable<UnsequencedEvent>;
  /** Stops ingest after the frame in hand and resolves once every child process is gone. */
  stop(): Promise<void>;
}
