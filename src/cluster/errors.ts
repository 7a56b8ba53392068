/** The cluster's typed errors (src/errors.ts): one sentence with what to do. */
import { CasaLiveError, ConfigError } from '../errors.js';

/** Redis could not be reached when the node started (a running node rides out outages instead). */
export class RedisUnavailableError extends CasaLiveError {
  constructor(message: string, options?: { cause?: unknown }) {
    super('internal', message, options);
  }
}

/** Another live node already uses this node's id. */
export class NodeIdTakenError extends ConfigError {}
