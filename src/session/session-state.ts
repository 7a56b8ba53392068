/**
 * What both engines' caption sessions share (src/session/caption-session.ts in process,
 * src/worker/session.ts over the model worker): the states of the session state machine,
 * the refusal of a call made outside `ready`, and `caption()` as the collected events of
 * `captionFrame()`.
 */
import { CasaLiveError, UsageError } from '../errors.js';
import type { FrameResult } from './caption-session.js';
import type { SessionCaptionEvent, SessionEvent, SessionTokenEvent } from './events.js';

/** The states of a caption session (either engine's). */
export type SessionState = 'ready' | 'in-frame' | 'failed' | 'closed';

/** Throws the UsageError for a call made in a state other than ready. */
export function assertSessionReady(state: SessionState, failure: unknown): void {
  switch (state) {
    case 'ready':
      return;
    case 'in-frame':
      throw new UsageError('a frame is already being captioned in this session; read its events to the end first');
    case 'closed':
      throw new UsageError('the session is closed');
    case 'failed':
      throw new UsageError(`the session failed earlier and cannot continue (${(failure as Error)?.message ?? String(failure)})`, { cause: failure });
  }
}

/** A frame's events collected: the token events, the caption, and the ids sampled. */
export async function collectFrame(events: AsyncIterable<SessionEvent>, ids: () => number[]): Promise<FrameResult> {
  const tokens: SessionTokenEvent[] = [];
  let caption: SessionCaptionEvent | undefined;
  for await (const ev of events) {
    if (ev.type === 'token') tokens.push(ev);
    else caption = ev;
  }
  if (!caption) throw new CasaLiveError('internal', 'the frame ended without a caption event; this is a casa-live bug, please report it');
  return { caption, tokens, ids: ids() };
}
