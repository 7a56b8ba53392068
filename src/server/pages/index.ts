/**
 * The daemon's pages beside the overlay: the index (`/`, for a browser: the streams with links
 * to watch and overlay them; for anything else the JSON summary it always was), the watch page,
 * the static assets those pages load (their scripts and styles, hls.js from node_modules: the
 * pages work offline), and a stream's HLS files (`/hls/<stream>/<file>`, viewer token).
 */
import { createReadStream } from 'node:fs';
import { readFile, stat } from 'node:fs/promises';
import { createRequire } from 'node:module';
import path from 'node:path';
import { STREAM_ID_RE } from '../../events.js';
import { hlsDir } from '../../config/schema.js';
import { HLS_VIDEO_SEGMENT } from '../../ingest/hls-output.js';
import { HLS_FILES, VTT_SEGMENT } from '../../sinks/hls-playlist.js';
import { VERSION } from '../../version.js';
import { HttpError, sendJson, type Route, type RouteRequest } from '../router.js';
import type { Streams } from '../stream-manager.js';
import { WS_PATH } from '../protocol.js';
import { pageHead } from './html.js';
import { WATCH_CSP, WATCH_CSS, WATCH_HTML, WATCH_JS } from './watch.js';

export interface PagesHost {
  readonly config: { readonly dataDir: string };
  readonly manager: Pick<Streams, 'list' | 'get'>;
}

const require = createRequire(import.meta.url);

/** Scripts and styles served under /assets/ (hls.js read once, from its package). */
const ASSETS: Record<string, { type: string; body: () => Promise<string> }> = {
  'watch.js': { type: 'text/javascript', body: async () => WATCH_JS },
  'watch.css': { type: 'text/css', body: async () => WATCH_CSS },
  'index.js': { type: 'text/javascript', body: async () => INDEX_JS },
  'hls.min.js': { type: 'text/javascript', body: once(() => readFile(path.join(path.dirname(require.resolve('hls.js/package.json')), 'dist', 'hls.min.js'), 'utf8')) },
};

/** What a stream's HLS directory may serve: the playlists and the segments, nothing else. */
const servable = (file: string): boolean => Object.values(HLS_FILES).includes(file as never) || HLS_VIDEO_SEGMENT.test(file) || VTT_SEGMENT.test(file);
const HLS_TYPES: Record<string, string> = { '.m3u8': 'application/vnd.apple.mpegurl', '.ts': 'video/mp2t', '.vtt': 'text/vtt; charset=utf-8' };

const PAGE_CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src data:; base-uri 'none'; form-action 'none'";

export function pageRoutes(host: PagesHost): Route[] {
  return [
    { methods: ['GET', 'HEAD'], pattern: /^\/watch\/([^/]+)$/, access: 'public', handler: watchPage },
    { methods: ['GET', 'HEAD'], pattern: /^\/assets\/([^/]+)$/, access: 'public', handler: asset },
    { methods: ['GET', 'HEAD'], pattern: /^\/hls\/([^/]+)\/([^/]+)$/, access: 'viewer', handler: (r) => hlsFile(host, r) },
  ];
}

function sendHtml({ res, method }: RouteRequest, html: string, csp: string): void {
  res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8', 'Content-Security-Policy': csp, 'Cache-Control': 'no-cache', 'Referrer-Policy': 'no-referrer' });
  res.end(method === 'HEAD' ? undefined : html);
}

function watchPage(r: RouteRequest): void {
  if (!STREAM_ID_RE.test(r.params[0]!)) throw new HttpError(404, 'not a valid stream id');
  sendHtml(r, WATCH_HTML, WATCH_CSP);
}

async function asset({ res, method, params }: RouteRequest): Promise<void> {
  const a = Object.hasOwn(ASSETS, params[0]!) ? ASSETS[params[0]!] : undefined;
  if (!a) throw new HttpError(404, `no asset ${params[0]}`);
  const body = await a.body();
  res.writeHead(200, { 'Content-Type': `${a.type}; charset=utf-8`, 'Cache-Control': 'no-cache', 'Content-Length': Buffer.byteLength(body) });
  res.end(method === 'HEAD' ? undefined : body);
}

/** `/`: a browser gets the page listing the streams; other clients the JSON summary. */
export function indexRoute(host: PagesHost, summary: () => unknown): Route['handler'] {
  return (r) => {
    if (!/text\/html/.test(String(r.req.headers.accept ?? ''))) return sendJson(r.res, 200, summary());
    sendHtml(r, indexHtml(host), PAGE_CSP);
  };
}

/** The stream list (ids are [A-Za-z0-9_-]: nothing to escape; /readyz shows them too). */
function indexHtml(host: PagesHost): string {
  const rows = host.manager.list().map((s) => {
    const video = s.config.hls?.enabled ? 'video + captions' : 'captions';
    return `<tr data-stream="${s.id}"><td>${s.id}</td><td class="state">${s.state}</td><td>${video}</td><td><a class="tok" href="/watch/${s.id}">watch</a> · <a class="tok" href="/overlay/${s.id}">overlay</a></td></tr>`;
  });
  return `${pageHead('casa-live', '<link rel="stylesheet" href="/assets/watch.css">\n')}
</head>
<body><header><span>casa-live ${VERSION}</span></header><main>
<table id="streams"><thead><tr><th>stream</th><th>state</th><th>output</th><th></th></tr></thead><tbody>
${rows.join('\n') || '<tr><td colspan="4">no streams</td></tr>'}
</tbody></table>
<p class="hint">Open this page with <code>?token=VIEWER_TOKEN</code>: the links carry it. API: <code>/v1/streams</code>, feed: <code>${WS_PATH}</code>.</p>
</main><script src="/assets/index.js"></script></body></html>
`;
}

/** The index page's script: the links carry the page's token. */
const INDEX_JS = `(function () {
  var token = new URLSearchParams(location.search).get("token");
  if (!token) return;
  document.querySelectorAll("a.tok").forEach(function (a) { a.href = a.getAttribute("href") + "?token=" + encodeURIComponent(token); });
})();
`;

/** A file of the stream's HLS; playlists asked for with ?token= name their files with it too (players that cannot send headers: Safari, VLC). */
async function hlsFile(host: PagesHost, { req, res, url, method, params }: RouteRequest): Promise<void> {
  const [stream, file] = params as [string, string];
  if (!STREAM_ID_RE.test(stream) || !servable(file)) throw new HttpError(404, 'no such HLS file');
  if (!host.manager.get(stream)) throw new HttpError(404, `stream "${stream}" does not exist`);
  const full = path.join(hlsDir(host.config.dataDir, stream), file);
  const info = await stat(full).catch(() => undefined);
  if (!info?.isFile()) throw new HttpError(404, `${file} is not there (yet): is hls.enabled set for "${stream}"?`);
  const ext = path.extname(file);
  const headers = { 'Content-Type': HLS_TYPES[ext]!, 'Cache-Control': ext === '.m3u8' ? 'no-cache' : 'max-age=60', 'Access-Control-Allow-Origin': '*' };
  const token = url.searchParams.get('token');
  if (ext === '.m3u8') {
    const text = await readFile(full, 'utf8');
    const body = token ? withToken(text, token) : text;
    res.writeHead(200, { ...headers, 'Content-Length': Buffer.byteLength(body) });
    res.end(method === 'HEAD' ? undefined : body);
    return;
  }
  res.writeHead(200, { ...headers, 'Content-Length': info.size });
  if (method === 'HEAD') return void res.end();
  const body = createReadStream(full);
  body.on('error', () => res.destroy());
  req.on('close', () => body.destroy());
  body.pipe(res);
}

/** The playlist's URIs (lines and URI="…" attributes) with `token=` added. */
export function withToken(playlist: string, token: string): string {
  const add = (uri: string): string => `${uri}${uri.includes('?') ? '&' : '?'}token=${encodeURIComponent(token)}`;
  return playlist
    .split('\n')
    .map((line) => (line === '' ? line : line.startsWith('#') ? line.replace(/URI="([^"]*)"/g, (_m, u: string) => `URI="${add(u)}"`) : add(line)))
    .join('\n');
}

function once<T>(load: () => Promise<T>): () => Promise<T> {
  let p: Promise<T> | undefined;
  return () => (p ??= load().catch((err: unknown) => {
    p = undefined;
    throw err;
  }));
}
