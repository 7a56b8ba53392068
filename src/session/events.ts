/**
 * Events a caption session produces. They are the stream events of src/events.ts without
 * `stream` and `seq`, which the pipeline's sequencer stamps on.
 */
import type { CaptionEvent, TokenEvent } from '../events.js';

/** One text piece, pushed as soon as it is sampled (complete UTF-8; complete words by default). */
export type SessionTokenEvent = Omit<TokenEvent, 'stream' | 'seq'>;
/** The committed caption of one frame. */
export type SessionCaptionEvent = Omit<CaptionEvent, 'stream' | 'seq'>;
export type SessionEvent = SessionTokenEvent | SessionCaptionEvent;
