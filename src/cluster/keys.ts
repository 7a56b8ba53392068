/**
 * The Redis keys and channels of a cluster, in one place (docs/cluster.md lists them). Every
 * name starts with the cluster's `keyPrefix`, so several clusters can share one Redis.
 */
export interface ClusterKeys {
  /** Hash: stream id → its record (JSON: source and resolved config). */
  readonly streams: string;
  /** Channel: a stream id whose record was added, changed or removed. */
  readonly changes: string;
  /** Channel: a stream id whose lease was released (a node handed it over). */
  readonly released: string;
  /** Set: the ids of nodes that have joined (a node is live while its `node` key exists). */
  readonly nodes: string;
  /** String with expiry: a node's heartbeat (JSON: instance, streams owned, capacity). */
  node(nodeId: string): string;
  /** String with expiry: a stream's lease, "<nodeId>:<epoch>". */
  lease(id: string): string;
  /** Counter: a stream's lease epoch (INCR on every claim: the fencing token). */
  epoch(id: string): string;
  /** Redis Stream: a stream's events, entry ID `0-<seq>`. */
  events(id: string): string;
  /** Sorted set: seq by time, for trimming a stream's events by age. */
  marks(id: string): string;
}

export function clusterKeys(prefix: string): ClusterKeys {
  return {
    streams: `${prefix}:streams`,
    changes: `${prefix}:changes`,
    released: `${prefix}:released`,
    nodes: `${prefix}:nodes`,
    node: (nodeId) => `${prefix}:node:${nodeId}`,
    lease: (id) => `${prefix}:lease:${id}`,
    epoch: (id) => `${prefix}:epoch:${id}`,
    events: (id) => `${prefix}:events:${id}`,
    marks: (id) => `${prefix}:marks:${id}`,
  };
}

/** The entry ID of a seq in a stream's event log. */
export function entryId(seq: number): string {
  return `0-${seq}`;
}

/** The seq of an entry ID (`0-<seq>`); NaN for an ID not written by casa-live. */
export function seqOfEntryId(id: string): number {
  const m = /^0-(\d+)$/.exec(id);
  return m ? Number(m[1]) : Number.NaN;
}
