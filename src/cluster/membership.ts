/**
 * Which nodes are live, and how loaded: each node keeps a heartbeat key with an expiry (its
 * lease time) holding how many streams it owns and whether it takes more. A node id is held by
 * one process at a time: a second process with the same id waits for the first one's
 * heartbeat to expire (a restart after a crash), and gives up if it keeps being renewed.
 */
import { randomUUID } from 'node:crypto';
import type { Redis } from 'ioredis';
import { NodeIdTakenError } from './errors.js';
import type { ClusterKeys } from './keys.js';

/** A node as its heartbeat describes it. */
export interface NodeLoad {
  id: string;
  /** Streams it owns now. */
  owned: number;
  /** Its cluster.maxStreams. */
  maxStreams: number;
  /** It claims streams (model loaded, not leaving, below its maximum). */
  accepting: boolean;
}

export class Membership {
  /** This process's instance of the node id. */
  readonly instance = randomUUID();

  constructor(
    private readonly redis: Redis,
    private readonly keys: ClusterKeys,
    readonly nodeId: string,
    private readonly ttlMs: number,
  ) {}

  /**
   * Takes the node id: at once when free, else once the holder's heartbeat expires (it died);
   * throws NodeIdTakenError when another live process keeps renewing it past `waitMs`.
   */
  async join(load: Omit<NodeLoad, 'id'>, waitMs = this.ttlMs * 2 + 1000): Promise<void> {
    const deadline = Date.now() + waitMs;
    while ((await this.write(load, 'join')) !== 1) {
      if (Date.now() > deadline) {
        throw new NodeIdTakenError(`another casa-live node with cluster.nodeId "${this.nodeId}" is running; give each node its own cluster.nodeId`);
      }
      await new Promise((r) => setTimeout(r, Math.min(250, this.ttlMs / 4)));
    }
  }

  /** Renews the heartbeat; false when another process took this node id. */
  async beat(load: Omit<NodeLoad, 'id'>): Promise<boolean> {
    return (await this.write(load, 'beat')) === 1;
  }

  /** The live nodes (this one included) as their last heartbeats say. */
  async live(): Promise<NodeLoad[]> {
    const ids = await this.redis.smembers(this.keys.nodes);
    if (ids.length === 0) return [];
    const values = await this.redis.mget(...ids.map((id) => this.keys.node(id)));
    const out: NodeLoad[] = [];
    ids.forEach((id, i) => {
      const v = values[i];
      if (!v) return;
      try {
        const d = JSON.parse(v) as Partial<NodeLoad>;
        out.push({ id, owned: Number(d.owned ?? 0), maxStreams: Number(d.maxStreams ?? 0), accepting: d.accepting === true });
      } catch {
        // a heartbeat that does not parse counts as no node
      }
    });
    return out;
  }

  /** Removes the heartbeat (graceful stop). */
  async leave(): Promise<void> {
    await this.redis.casaLeave(this.keys.node(this.nodeId), this.keys.nodes, this.instance, this.nodeId);
  }

  private write(load: Omit<NodeLoad, 'id'>, mode: 'join' | 'beat'): Promise<number> {
    const json = JSON.stringify({ instance: this.instance, ...load });
    return this.redis.casaBeat(this.keys.node(this.nodeId), this.keys.nodes, json, this.ttlMs, this.nodeId, mode);
  }
}

/**
 * The spreading rule: a node claims an unowned stream only while it owns no more than the
 * least-loaded other node that takes streams, so the nodes end within one stream of each
 * other (nodes at their maximum, starting or leaving do not count).
 */
export function mayClaim(self: NodeLoad, nodes: readonly NodeLoad[]): boolean {
  if (!self.accepting || self.owned >= self.maxStreams) return false;
  const others = nodes.filter((n) => n.id !== self.id && n.accepting && n.owned < n.maxStreams);
  return others.every((n) => self.owned <= n.owned);
}

/**
 * The rebalancing rule: a node hands a stream over when it owns two or more streams more than
 * another node that takes streams (a node that joined late, or came back).
 */
export function shouldShed(self: NodeLoad, nodes: readonly NodeLoad[]): boolean {
  const others = nodes.filter((n) => n.id !== self.id && n.accepting && n.owned < n.maxStreams);
  return others.some((n) => self.owned > n.owned + 1);
}
