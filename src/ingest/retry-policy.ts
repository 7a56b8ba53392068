/**
 * The retry policy of a stream, in one place: whether a failed attempt is followed by another,
 * after how long, and what the status says about it. A stream has ONE policy (its `restart`
 * block in the serve config, the CLI's --retries / --retry-timeout): the ingest's reconnects
 * (retry-loop.ts) and the daemon's pipeline restarts (src/server/stream-runner.ts) both ask
 * nextRetry() with the same settings, so to a user they are the same thing.
 *
 * The delays are backoffDelay()'s (backoff.ts), with a fast path: when an input that was up
 * (delivering frames) drops, the first retries come quickly (0.25 s, 0.5 s, then every second
 * at most) for FAST_RETRY.retries attempts, because such an outage is usually short (a server
 * restart, a network blip); a retry whose server refuses connections costs no ffmpeg start
 * (reachability.ts). The failures in a row, and with them the delay, start
 * again from 0 once frames flow again.
 */
import { backoffDelay } from './backoff.js';
import { isLiveKind, type SourceKind } from './types.js';

export const RESTART_MODES = ['always', 'on-failure', 'never'] as const;
/** always: retry failures and restart an input that ended; on-failure: retry failures only; never. */
export type RestartMode = (typeof RESTART_MODES)[number];

/** A stream's retry policy, resolved (no field left out). */
export interface RetrySettings {
  policy: RestartMode;
  /** First delay of the backoff. */
  initialDelayMs: number;
  /** Hard maximum of every delay (jitter included). */
  maxDelayMs: number;
  /** Failed attempts in a row tolerated before giving up (Infinity: no limit). */
  maxRetries: number;
  /**
   * Give up when no attempt has delivered a frame this long after the start (all attempts
   * together; undefined: no limit). Once a frame came, only maxRetries bounds the retries.
   */
  firstFrameDeadlineMs?: number;
}

/** The fast path after an input that was up drops: first delay, cap, and for how many failures in a row. */
export const FAST_RETRY = { firstDelayMs: 250, maxDelayMs: 1000, retries: 30 } as const;

/** A run of failed attempts, as the policy sees it. */
export interface FailureStreak {
  /** Failed attempts in a row, this one included. */
  consecutive: number;
  /** The run began with the drop of an input that was delivering frames. */
  wasUp: boolean;
}

export type RetryDecision = { retry: true; delayMs: number } | { retry: false; gaveUp?: string };

/**
 * The delay before the next attempt, or the end: maxRetries failures in a row used up. The
 * one rule for the ingest's reconnects and the daemon's restarts.
 */
export function nextRetry(s: RetrySettings, streak: FailureStreak, random: () => number = Math.random): RetryDecision {
  const n = streak.consecutive;
  // maxRetries 0 (no retry at all) gives up on the failure itself; more, on the run of them.
  if (n > s.maxRetries) return n > 1 ? { retry: false, gaveUp: `gave up after ${n} failed attempts` } : { retry: false };
  if (streak.wasUp && n <= FAST_RETRY.retries) {
    const first = Math.min(FAST_RETRY.firstDelayMs, s.initialDelayMs);
    return { retry: true, delayMs: backoffDelay(n, first, Math.min(FAST_RETRY.maxDelayMs, s.maxDelayMs), random) };
  }
  const step = streak.wasUp ? n - FAST_RETRY.retries : n;
  return { retry: true, delayMs: backoffDelay(step, s.initialDelayMs, s.maxDelayMs, random) };
}

/** A failed ingest attempt, as the source's retry policy sees it. */
export interface AttemptFailure extends FailureStreak {
  /** The failure's code (an IngestError code). */
  code: string;
  /** The source's kind when the attempt failed. */
  kind: SourceKind;
  /** Milliseconds since the source started. */
  elapsedMs: number;
  /** Some attempt of the source has delivered a frame. */
  everLive: boolean;
}

/** Whether, and when, a failed ingest attempt is followed by another. */
export interface RetryPolicy {
  decide(failure: AttemptFailure): RetryDecision;
}

/**
 * The ingest's policy: live inputs and devices retry every failure but protocol-unavailable
 * (this ffmpeg cannot read the scheme), unless the policy is `never`; files and stdin never
 * retry (they end, and the daemon's runner restarts them per the same policy).
 */
export function ingestRetryPolicy(s: RetrySettings, random: () => number = Math.random): RetryPolicy {
  return {
    decide(f) {
      if (!isLiveKind(f.kind) || f.code === 'protocol-unavailable' || s.policy === 'never') return { retry: false };
      const d = nextRetry(s, f, random);
      const deadline = s.firstFrameDeadlineMs;
      if (d.retry && deadline !== undefined && !f.everLive && f.elapsedMs + d.delayMs >= deadline) {
        return { retry: false, gaveUp: `gave up: no frame within ${formatSeconds(deadline)} (${f.consecutive} attempt${f.consecutive === 1 ? '' : 's'})` };
      }
      return d;
    },
  };
}

/** "Connection refused by h:554 for input X; retrying in 0.4 s (retry 2)": the status reason of a retry. */
export function retryingReason(reason: string, delayMs: number, retry: number): string {
  return `${sentence(reason)}; retrying in ${(delayMs / 1000).toFixed(1)} s (retry ${retry})`;
}

/** "… refused …; gave up after 3 failed attempts": the reason when the policy gives up. */
export function gaveUpReason(reason: string, gaveUp: string): string {
  return `${sentence(reason)}; ${gaveUp}`;
}

/** A message without its closing full stop (or "…)."), so that a clause can follow. */
function sentence(text: string): string {
  return text.trim().replace(/[.;,\s]+$/, '');
}

function formatSeconds(ms: number): string {
  return `${Math.round(ms / 100) / 10} s`;
}
