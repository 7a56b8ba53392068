/**
 * The HTTP side's plumbing: a route table ({methods, pattern, access, handler}), matching a
 * request against it (404 / 405 with Allow), JSON bodies in and out, and HttpError (a
 * status, a message for the client, extra fields for the JSON error body).
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Role } from './auth.js';

const MAX_BODY_BYTES = 64 * 1024;

export class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

/** Who may call a route: anyone ('public'), or a token granting the role. */
export type Access = 'public' | Role;

export interface RouteRequest {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  method: string;
  /** The pattern's capture groups, URL-decoded. */
  params: string[];
}

export interface Route {
  methods: readonly string[];
  /** Matched against the whole path. */
  pattern: RegExp;
  /** Checked once per request by the dispatcher; a function decides it per request (e.g. from the config). */
  access: Access | (() => Access);
  handler: (r: RouteRequest) => Promise<void> | void;
}

/**
 * The route for a method and path, with its decoded parameters. No route has the path:
 * 404; routes have it but not the method: 405 with the methods they allow.
 */
export function matchRoute(routes: readonly Route[], method: string, path: string): { route: Route; params: string[] } {
  const allowed: string[] = [];
  for (const route of routes) {
    const m = route.pattern.exec(path);
    if (!m) continue;
    if (route.methods.includes(method)) return { route, params: m.slice(1).map((p) => decodeURIComponent(p)) };
    for (const x of route.methods) if (!allowed.includes(x)) allowed.push(x);
  }
  if (allowed.length === 0) throw new HttpError(404, `no route for ${path}`);
  throw new HttpError(405, `method ${method} not allowed`, { allow: allowed.join(', ') });
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const data = JSON.stringify(body) + '\n';
  res.writeHead(status, { 'Content-Type': 'application/json; charset=utf-8', 'Cache-Control': 'no-store' });
  res.end(data);
}

/** The request body as JSON (at most 64 KiB): 413 when larger, 400 when not JSON. */
export async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk as Buffer);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new HttpError(400, 'request body is not valid JSON');
  }
}
