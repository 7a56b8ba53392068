/**
 * Token authentication for the WebSocket upgrade and the HTTP API. A token comes as
 * `Authorization: Bearer <token>` or `?token=<token>` (browser sources cannot set headers).
 * Comparison is constant-time over SHA-256 digests.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

export type Role = 'admin' | 'viewer';

function digest(s: string): Buffer {
  return createHash('sha256').update(s, 'utf8').digest();
}

export class Authorizer {
  private readonly admin: Buffer[];
  private readonly viewer: Buffer[];

  constructor(private readonly auth: { required: boolean; tokens: string[]; adminTokens: string[] }) {
    this.admin = auth.adminTokens.map(digest);
    this.viewer = auth.tokens.map(digest);
  }

  get required(): boolean {
    return this.auth.required;
  }

  /** The role a token grants, or undefined when it grants none. */
  roleOf(token: string | undefined): Role | undefined {
    if (!this.auth.required) return 'admin';
    if (token === undefined || token === '') return undefined;
    const d = digest(token);
    let role: Role | undefined;
    // Check every token (no early exit) so timing does not tell which list matched.
    for (const t of this.admin) if (timingSafeEqual(t, d)) role = 'admin';
    for (const t of this.viewer) if (timingSafeEqual(t, d) && role === undefined) role = 'viewer';
    return role;
  }
}

/** The token of a request: Bearer header first, then `?token=`. */
export function tokenOf(req: IncomingMessage, url: URL): string | undefined {
  const header = req.headers.authorization;
  if (typeof header === 'string') {
    const m = /^Bearer\s+(.+)$/i.exec(header.trim());
    if (m) return m[1]!.trim();
  }
  return url.searchParams.get('token') ?? undefined;
}

export function satisfies(role: Role | undefined, needed: Role): boolean {
  if (role === undefined) return false;
  return needed === 'viewer' || role === 'admin';
}
