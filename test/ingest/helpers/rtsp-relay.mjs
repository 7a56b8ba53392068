#!/usr/bin/env node
/**
 * A small RTSP relay over TCP (interleaved RTP), for tests only. A publisher (ffmpeg -f rtsp
 * -rtsp_transport tcp) ANNOUNCEs and RECORDs a path; players DESCRIBE/SETUP/PLAY it and get the
 * publisher's interleaved RTP/RTCP packets as they come. It runs as its own process so that a
 * test can SIGKILL it (server gone) or SIGSTOP it (server wedged).
 *
 *   node rtsp-relay.mjs PORT
 *
 * - paths starting with /secret answer DESCRIBE with 401 Unauthorized;
 * - a path nobody publishes answers 404 Not Found;
 * - UDP transport is refused with 461 (this relay is TCP only).
 * Prints "listening PORT" on stdout when ready, and "publishing PATH" when a publisher has
 * announced a path (from then on players get that stream).
 */
import net from 'node:net';

const port = Number(process.argv[2]);
/** path → { sdp, publisher, players: Set<Player> } */
const mounts = new Map();

function mountPath(uri) {
  let p;
  try {
    p = new URL(uri).pathname;
  } catch {
    p = uri;
  }
  return p.replace(/\/(streamid|trackID|track)=\d+$/, '').replace(/\/+$/, '') || '/';
}

function respond(sock, cseq, code, reason, headers = {}, body = '') {
  let out = `RTSP/1.0 ${code} ${reason}\r\nCSeq: ${cseq}\r\nServer: casa-test-relay\r\n`;
  for (const [k, v] of Object.entries(headers)) out += `${k}: ${v}\r\n`;
  if (body) out += `Content-Length: ${Buffer.byteLength(body)}\r\n`;
  out += `\r\n${body}`;
  if (!sock.destroyed) sock.write(out);
}

const server = net.createServer((sock) => {
  sock.setNoDelay(true);
  let buf = Buffer.alloc(0);
  const session = String(Math.floor(Math.random() * 1e9));
  const conn = { role: undefined, path: undefined, channelBase: 0 };

  sock.on('data', (chunk) => {
    buf = Buffer.concat([buf, chunk]);
    for (;;) {
      if (buf.length === 0) return;
      if (buf[0] === 0x24) {
        if (buf.length < 4) return;
        const len = buf.readUInt16BE(2);
        if (buf.length < 4 + len) return;
        const packet = buf.subarray(0, 4 + len);
        buf = buf.subarray(4 + len);
        if (conn.role === 'publisher') {
          const m = mounts.get(conn.path);
          if (m) {
            for (const player of m.players) {
              if (player.playing && !player.sock.destroyed) {
                const copy = Buffer.from(packet);
                copy[1] = player.channelBase + (packet[1] - conn.channelBase);
                player.sock.write(copy);
              }
            }
          }
        }
        continue;
      }
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.subarray(0, end).toString('latin1');
      const lines = head.split('\r\n');
      const [method, uri] = lines[0].split(' ');
      const headers = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      const length = Number(headers['content-length'] ?? 0);
      if (buf.length < end + 4 + length) return;
      const body = buf.subarray(end + 4, end + 4 + length).toString('latin1');
      buf = buf.subarray(end + 4 + length);
      handle(method, uri, headers, body);
    }
  });

  function handle(method, uri, headers, body) {
    const cseq = headers.cseq ?? '0';
    const path = mountPath(uri);
    switch (method) {
      case 'OPTIONS':
        return respond(sock, cseq, 200, 'OK', {
          Public: 'OPTIONS, DESCRIBE, ANNOUNCE, SETUP, PLAY, RECORD, TEARDOWN, GET_PARAMETER',
        });
      case 'ANNOUNCE':
        conn.role = 'publisher';
        conn.path = path;
        mounts.set(path, { sdp: body, publisher: sock, players: mounts.get(path)?.players ?? new Set() });
        process.stdout.write(`publishing ${path}\n`);
        return respond(sock, cseq, 200, 'OK');
      case 'DESCRIBE': {
        if (path.startsWith('/secret')) {
          return respond(sock, cseq, 401, 'Unauthorized', { 'WWW-Authenticate': 'Basic realm="casa-test"' });
        }
        const m = mounts.get(path);
        if (!m) return respond(sock, cseq, 404, 'Not Found');
        return respond(sock, cseq, 200, 'OK', { 'Content-Type': 'application/sdp', 'Content-Base': `${uri.replace(/\/$/, '')}/` }, m.sdp);
      }
      case 'SETUP': {
        const transport = headers.transport ?? '';
        const inter = /interleaved=(\d+)(?:-(\d+))?/.exec(transport);
        if (!/TCP/i.test(transport) || !inter) return respond(sock, cseq, 461, 'Unsupported Transport');
        conn.channelBase = Number(inter[1]);
        conn.path = path;
        if (conn.role !== 'publisher') {
          conn.role = 'player';
          const m = mounts.get(path);
          if (!m) return respond(sock, cseq, 404, 'Not Found');
          conn.player = { sock, playing: false, channelBase: conn.channelBase };
          m.players.add(conn.player);
        }
        return respond(sock, cseq, 200, 'OK', { Transport: transport, Session: `${session};timeout=60` });
      }
      case 'RECORD':
        return respond(sock, cseq, 200, 'OK', { Session: session });
      case 'PLAY':
        if (conn.player) conn.player.playing = true;
        return respond(sock, cseq, 200, 'OK', { Session: session, Range: 'npt=0.000-' });
      case 'GET_PARAMETER':
      case 'SET_PARAMETER':
        return respond(sock, cseq, 200, 'OK', { Session: session });
      case 'TEARDOWN':
        respond(sock, cseq, 200, 'OK', { Session: session });
        return sock.end();
      default:
        return respond(sock, cseq, 501, 'Not Implemented');
    }
  }

  const cleanup = () => {
    if (conn.role === 'publisher') {
      const m = mounts.get(conn.path);
      if (m && m.publisher === sock) {
        // The publisher left: players of this path see the stream end.
        for (const p of m.players) p.sock.destroy();
        mounts.delete(conn.path);
      }
    } else if (conn.player) {
      mounts.get(conn.path)?.players.delete(conn.player);
    }
  };
  sock.on('close', cleanup);
  sock.on('error', () => {});
});

server.listen(port, '127.0.0.1', () => {
  process.stdout.write(`listening ${port}\n`);
});
// Tests kill this process; never outlive the test run either.
process.on('disconnect', () => process.exit(0));
setTimeout(() => process.exit(0), Number(process.env.RELAY_LIFETIME_MS ?? 120_000)).unref();
