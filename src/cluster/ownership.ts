/**
 * A stream this node holds the lease of, as one declared state with its legal moves:
 *
 *   (not owned) ──claimed──▶ starting ──the daemon started it──▶ running
 *   starting, running ──handed over (SIGTERM, removed, disabled, rebalancing)──▶ releasing
 *   releasing ──stopped, its last events written, lease released──▶ (not owned)
 *   starting, running, releasing ──lease lost (expired unrenewed, or another node holds it)──▶ (not owned)
 *
 * And the contract between the node and the daemon that runs the owned streams.
 */
import type { StreamEvent, StreamState } from '../events.js';
import type { StreamRecord } from './registry.js';

export type OwnershipState = 'starting' | 'running' | 'releasing';

/** `none`: not owned. Every move is checked against this table. */
export const OWNERSHIP_MOVES: Readonly<Record<OwnershipState | 'none', ReadonlyArray<OwnershipState | 'none'>>> = {
  none: ['starting'],
  starting: ['running', 'releasing', 'none'],
  running: ['releasing', 'none'],
  releasing: ['none'],
};

export class IllegalOwnershipMoveError extends Error {}

export interface Owned {
  readonly id: string;
  state: OwnershipState;
  record: StreamRecord;
  /** The lease value, "<nodeId>:<epoch>": the fencing token of every append. */
  readonly lease: string;
  /** Until when the lease is surely held (the last renewal's send time + leaseMs). */
  safeUntil: number;
  /** The running hand-over, while releasing. */
  work?: Promise<void>;
}

export function move(owned: Owned, to: OwnershipState | 'none'): void {
  if (!OWNERSHIP_MOVES[owned.state].includes(to)) throw new IllegalOwnershipMoveError(`stream ${owned.id}: ownership cannot move from ${owned.state} to ${to}`);
  if (to !== 'none') owned.state = to;
}

/** Where an owned stream's events go: the node's fenced writer, under this lease only. */
export interface OwnedStreamSink {
  /** The stream's last seq when this node took it: its events continue above. */
  readonly startSeq: number;
  /** Queues one event (seq above startSeq, in order); refused (counted) once the lease is gone. */
  append(ev: StreamEvent): void;
}

/** How an owned stream stops: handed over (a final status is written first), or at once (the lease is gone). */
export type StopMode =
  | { graceful: true; final: { state: Extract<StreamState, 'ended' | 'reconnecting'>; reason: string } }
  | { graceful: false; reason: string };

/** What the node asks of the daemon (src/server/cluster-streams.ts): run the streams it holds. */
export interface OwnershipHandler {
  /** This node took the stream's lease: start its pipeline, its events to `sink`. */
  start(record: StreamRecord, sink: OwnedStreamSink): Promise<void>;
  /** Stop the stream's pipeline (graceful: its last events, then `final`, go to the sink). */
  stop(id: string, mode: StopMode): Promise<void>;
  /** The stream's config changed while owned here: restart its pipeline with it (seq continues). */
  reconfigure(record: StreamRecord): Promise<void>;
}
