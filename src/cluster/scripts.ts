/**
 * The Lua scripts that make each cluster operation atomic in Redis: claiming a stream's lease
 * (with its fencing epoch and the stream's last seq), renewing and releasing it only while this
 * node holds it, appending events only under the current lease, trimming by age, the node
 * heartbeat and the stream registry's checked writes. Registered on a connection with
 * defineScripts(); ioredis loads them (EVALSHA, EVAL on NOSCRIPT), in pipelines too.
 */
import type { Redis, Result } from 'ioredis';

/**
 * KEYS lease, epoch, events · ARGV nodeId, leaseMs → nil when the lease is held, else
 * {epoch, last seq of the stream's log (0: none), the lease its last entry was written under}.
 * The last seq is the log's last generated ID, which trimming never lowers.
 */
const CLAIM = `
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. ':' .. epoch, 'PX', ARGV[2])
local last, by = 0, ''
if redis.call('EXISTS', KEYS[3]) == 1 then
  local info = redis.call('XINFO', 'STREAM', KEYS[3])
  for i = 1, #info, 2 do
    if info[i] == 'last-generated-id' then last = tonumber(string.match(info[i + 1], '%-(%d+)$')) or 0 end
  end
  local top = redis.call('XREVRANGE', KEYS[3], '+', '-', 'COUNT', 1)
  if top[1] then
    for i = 1, #top[1][2], 2 do
      if top[1][2][i] == 'o' then by = top[1][2][i + 1] end
    end
  end
end
return {epoch, last, by}
`;

/** KEYS lease · ARGV value, leaseMs → 1 renewed, 0 the lease is gone (expired), -1 another node holds it. */
const RENEW = `
local v = redis.call('GET', KEYS[1])
if v == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
if v then return -1 end
return 0
`;

/** KEYS lease · ARGV value, channel, stream id → 1 released (and announced), 0 not held. */
const RELEASE = `
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
`;

/**
 * KEYS lease, events · ARGV value, maxLen, then seq, json pairs → -1 when the lease is not
 * this value (fenced: nothing written), else {added, duplicates}. A seq not above the log's
 * last ID is refused by XADD itself: an event re-sent after an ambiguous failure, counted as a
 * duplicate. Any other error (OOM under maxmemory) is returned as an error.
 */
const APPEND = `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return -1 end
local added, dups = 0, 0
for i = 3, #ARGV, 2 do
  local r = redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], '0-' .. ARGV[i], 'e', ARGV[i + 1], 'o', ARGV[1])
  if type(r) == 'table' and r.err then
    if string.find(r.err, 'equal or smaller', 1, true) then dups = dups + 1 else return redis.error_reply(r.err) end
  else
    added = added + 1
  end
end
return {added, dups}
`;

/**
 * KEYS events, marks · ARGV now (ms), maxAge (ms) → 1. Records "the log's last seq at now",
 * then trims the log below the newest mark older than maxAge (IDs are seqs, not times).
 */
const TRIM_AGE = `
local last = redis.call('XREVRANGE', KEYS[1], '+', '-', 'COUNT', 1)
if not last[1] then return 0 end
redis.call('ZADD', KEYS[2], ARGV[1], string.match(last[1][1], '%-(%d+)$'))
local cutoff = tonumber(ARGV[1]) - tonumber(ARGV[2])
local old = redis.call('ZREVRANGEBYSCORE', KEYS[2], cutoff, '-inf', 'LIMIT', 0, 1)
if old[1] then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', '0-' .. old[1])
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. cutoff)
end
return 1
`;

/**
 * KEYS node, nodes · ARGV json (with .instance), ttlMs, nodeId, mode ('join' | 'beat') →
 * 1 written; 0 another instance holds this node id. 'join' writes only if the key is absent.
 */
const BEAT = `
local cur = redis.call('GET', KEYS[1])
if cur then
  if ARGV[4] == 'join' then return 0 end
  if cjson.decode(cur).instance ~= cjson.decode(ARGV[1]).instance then return 0 end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('SADD', KEYS[2], ARGV[3])
return 1
`;

/** KEYS node, nodes · ARGV instance, nodeId → 1 removed, 0 not ours. */
const LEAVE = `
local cur = redis.call('GET', KEYS[1])
if cur and cjson.decode(cur).instance == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('SREM', KEYS[2], ARGV[2])
  return 1
end
return 0
`;

/**
 * KEYS streams · ARGV id, record json, mode, channel, limit → 'ok' | 'same' | 'exists' |
 * 'missing' | 'config' | 'limit'. Modes: 'add' (API: refused when present or at the limit),
 * 'replace' (API: refused when absent or from a config file), 'seed' (config file: written
 * unless identical).
 */
const PUT_STREAM = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[3] == 'add' then
  if cur then return 'exists' end
  if redis.call('HLEN', KEYS[1]) >= tonumber(ARGV[5]) then return 'limit' end
elseif ARGV[3] == 'replace' then
  if not cur then return 'missing' end
  if cjson.decode(cur).source == 'config' then return 'config' end
elseif cur == ARGV[2] then
  return 'same'
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 'ok'
`;

/** KEYS streams · ARGV id, mode ('api' | 'config'), channel → 'ok' | 'missing' | 'config' (an API removal of a config-file stream). */
const DELETE_STREAM = `
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 'missing' end
if ARGV[2] == 'api' and cjson.decode(cur).source == 'config' then return 'config' end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[3], ARGV[1])
return 'ok'
`;

const SCRIPTS = {
  casaClaim: { numberOfKeys: 3, lua: CLAIM },
  casaRenew: { numberOfKeys: 1, lua: RENEW },
  casaRelease: { numberOfKeys: 1, lua: RELEASE },
  casaAppend: { numberOfKeys: 2, lua: APPEND },
  casaTrimAge: { numberOfKeys: 2, lua: TRIM_AGE },
  casaBeat: { numberOfKeys: 2, lua: BEAT },
  casaLeave: { numberOfKeys: 2, lua: LEAVE },
  casaPutStream: { numberOfKeys: 1, lua: PUT_STREAM },
  casaDeleteStream: { numberOfKeys: 1, lua: DELETE_STREAM },
} as const;

type ScriptName = keyof typeof SCRIPTS;
type ScriptArg = string | number;

declare module 'ioredis' {
  interface RedisCommander<Context> {
    casaClaim(lease: string, epoch: string, events: string, nodeId: string, leaseMs: number): Result<[number, number, string] | null, Context>;
    casaRenew(lease: string, value: string, leaseMs: number): Result<number, Context>;
    casaRelease(lease: string, value: string, channel: string, id: string): Result<number, Context>;
    casaAppend(lease: string, events: string, value: string, maxLen: number, ...seqAndJson: ScriptArg[]): Result<[number, number] | -1, Context>;
    casaTrimAge(events: string, marks: string, now: number, maxAgeMs: number): Result<number, Context>;
    casaBeat(node: string, nodes: string, json: string, ttlMs: number, nodeId: string, mode: 'join' | 'beat'): Result<number, Context>;
    casaLeave(node: string, nodes: string, instance: string, nodeId: string): Result<number, Context>;
    casaPutStream(streams: string, id: string, json: string, mode: 'add' | 'replace' | 'seed', channel: string, limit: number): Result<string, Context>;
    casaDeleteStream(streams: string, id: string, mode: 'api' | 'config', channel: string): Result<string, Context>;
  }
}

/** Registers every script on a connection (its pipelines get them too). */
export function defineScripts(redis: Redis): void {
  for (const [name, def] of Object.entries(SCRIPTS) as Array<[ScriptName, (typeof SCRIPTS)[ScriptName]]>) {
    redis.defineCommand(name, { numberOfKeys: def.numberOfKeys, lua: def.lua });
  }
}
