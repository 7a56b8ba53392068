/** Cluster mode (docs/cluster.md): several nodes share the streams through Redis. */
export { ClusterNode, type ClusterNodeOptions, type ClusterStatus } from './node.js';
export type { OwnedStreamSink, OwnershipHandler, StopMode } from './ownership.js';
export type { StreamRecord, PutResult, DeleteResult } from './registry.js';
export type { RecentEvents } from './eventlog.js';
export { RedisUnavailableError, NodeIdTakenError } from './errors.js';
