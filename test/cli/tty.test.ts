// On a terminal: captions appear token by token with their time stamps above a redrawn
// progress line (frames done / total, frames per second, real-time factor). Checked twice:
// the display driven directly with a fake terminal, and the real CLI under a pseudo-terminal
// (util-linux `script`).
import { execFile, spawn } from 'node:child_process';
import path from 'node:path';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { CaptionDisplay } from '../../src/cli/display.js';
import { freePort } from '../ingest/helpers/media.js';
import { RtspServer } from '../ingest/helpers/rtsp-server.js';
import { BIN, DEV_MODEL, ffmpeg, setupCliTests, waitFor } from './helpers.js';

const run = promisify(execFile);
const tmp = setupCliTests('casa-cli-tty-', { 'clip.mp4': 3 });
const clip = tmp.clip('clip.mp4');

class FakeTerminal extends Writable {
  data = '';
  columns = 80;
  isTTY = true;
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.data += chunk.toString();
    cb();
  }
}

/** What a terminal shows after `data`: handles \r, \n, ESC[1A (up) and ESC[J (clear below). */
function screen(data: string): string[] {
  const lines: string[] = [''];
  let row = 0;
  let col = 0;
  for (let i = 0; i < data.length; i++) {
    const ch = data[i]!;
    if (ch === '\x1b') {
      const m = /^\x1b\[(\d*)([A-Za-z])/.exec(data.slice(i));
      if (!m) continue;
      i += m[0].length - 1;
      if (m[2] === 'A') row = Math.max(0, row - Number(m[1] || 1));
      else if (m[2] === 'J') {
        lines[row] = lines[row]!.slice(0, col);
        lines.length = row + 1;
      }
      continue;
    }
    if (ch === '\r') col = 0;
    else if (ch === '\n') {
      row++;
      col = 0;
      if (lines[row] === undefined) lines[row] = '';
    } else {
      const line = lines[row]!;
      lines[row] = line.slice(0, col) + ch + line.slice(col + 1);
      col++;
    }
  }
  return lines;
}

describe('terminal display', () => {
  it('shows the caption in progress token by token, then commits it above the progress line', () => {
    const term = new FakeTerminal();
    const d = new CaptionDisplay({ mode: 'tty', out: term as unknown as NodeJS.WriteStream, err: term, redrawMs: 0 });
    d.progress({ frames: 0, total: 4, elapsedMs: 100, streamSeconds: 0, dropped: 0, lagMs: 0, live: false });
    d.token({ frame: 0, pts: 0, text: 'a red' });
    expect(screen(term.data)).toEqual(['00:00:00.000  a red', expect.stringMatching(/░+ 0\/4 frames {2}0\.0 fps {2}0\.0× real time$/)]);
    d.token({ frame: 0, pts: 0, text: ' circle' });
    expect(screen(term.data)[0]).toBe('00:00:00.000  a red circle');
    d.caption({ frame: 0, start: 0, text: 'a red circle' });
    d.progress({ frames: 1, total: 4, elapsedMs: 1000, streamSeconds: 0.5, dropped: 0, lagMs: 0, live: false });
    d.caption({ frame: 1, start: 0.5, text: '' }); // silent: no line
    d.token({ frame: 2, pts: 1, text: 'it stops' });
    let s = screen(term.data);
    expect(s[0]).toBe('00:00:00.000  a red circle');
    expect(s[1]).toBe('00:00:01.000  it stops');
    expect(s[2]).toMatch(/█+░+ 1\/4 frames {2}1\.0 fps {2}0\.5× real time {2}eta 0:03$/);
    expect(s).toHaveLength(3);
    d.caption({ frame: 2, start: 1, text: 'it stops' });
    d.status({ state: 'reconnecting', reason: 'connection lost', droppedFrames: 0 });
    d.close();
    s = screen(term.data);
    expect(s).toEqual(['00:00:00.000  a red circle', '00:00:01.000  it stops', 'reconnecting: connection lost', '']);
  });

  it('live inputs show frames, rate, lag and drops; an outage shows as reconnecting… and how long', () => {
    const d = new CaptionDisplay({ mode: 'tty', out: new FakeTerminal() as unknown as NodeJS.WriteStream, err: new FakeTerminal() });
    const live = { frames: 40, elapsedMs: 20_000, streamSeconds: 20, dropped: 3, lagMs: 450, live: true };
    expect(d.formatProgress(live)).toBe('live  40 frames  2.0 fps  lag 0.5 s  3 dropped');
    expect(d.formatProgress({ ...live, outageMs: 3400 })).toBe('reconnecting… 3 s  40 frames  2.0 fps  lag 0.5 s  3 dropped');
    expect(d.formatProgress({ ...live, outageMs: 65_000 })).toMatch(/^reconnecting… 1:05 {2}/);
  });

  it('says when an outage starts and when it ends, not at every retry', () => {
    const term = new FakeTerminal();
    const d = new CaptionDisplay({ mode: 'plain', out: term as unknown as NodeJS.WriteStream, err: term });
    d.status({ state: 'live', droppedFrames: 0 });
    d.status({ state: 'reconnecting', reason: 'dropped; retrying in 0.2 s (retry 1)', droppedFrames: 0 });
    d.status({ state: 'reconnecting', reason: 'refused; retrying in 0.5 s (retry 2)', droppedFrames: 0 });
    d.status({ state: 'live', droppedFrames: 0 });
    expect(term.data.split('\n').filter(Boolean)).toEqual(['casa-live: reconnecting: dropped; retrying in 0.2 s (retry 1)', 'casa-live: live again after 0 s']);
  });

  it('the real CLI on a live RTSP stream that drops: it keeps reconnecting, the progress line shows the outage', async () => {
    const clipLive = path.join(tmp.dir, 'live.mp4');
    await ffmpeg(['-f', 'lavfi', '-i', 'testsrc2=size=160x120:rate=10:duration=6', '-c:v', 'libx264', '-preset', 'ultrafast', '-g', '5', '-pix_fmt', 'yuv420p', clipLive]);
    const server = new RtspServer(await freePort(), clipLive);
    await server.start();
    const cmd = `${process.execPath} ${BIN} caption ${server.url} --model ${DEV_MODEL} --seed 1`;
    const pty = spawn('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, NO_COLOR: '1', CASA_LIVE_MODEL: '' }, stdio: ['pipe', 'pipe', 'ignore'] });
    let out = '';
    pty.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    const exited = new Promise<number | null>((resolve) => pty.once('exit', (code) => resolve(code)));
    try {
      await waitFor(() => /live {2}([2-9]|\d\d+) frames/.test(out), 60_000, 'frames from the live stream');
      await server.stop();
      await waitFor(() => /reconnecting… [2-9] s {2}\d+ frames/.test(out), 30_000, 'the outage in the progress line');
      await server.start();
      await waitFor(() => /live again after \d+ s/.test(out), 30_000, 'the stream to come back');
      pty.stdin!.write('\x03'); // Ctrl-C
      expect(await exited).toBe(130);
    } finally {
      pty.kill('SIGKILL');
      await server.stop();
    }
    const shown = screen(out.replace(/\r\n/g, '\n'));
    expect(shown.filter((l) => l.startsWith('reconnecting: '))).toHaveLength(1);
    expect(shown.filter((l) => /^live again after \d+ s$/.test(l))).toHaveLength(1);
  }, 180_000);

  it('the real CLI under a pseudo-terminal: ANSI redraws, time stamps, a progress bar', async () => {
    const cmd = `${process.execPath} ${BIN} caption ${clip} --model ${DEV_MODEL} --seed 1`;
    const { stdout } = await run('script', ['-qec', cmd, '/dev/null'], { env: { ...process.env, NO_COLOR: '1', CASA_LIVE_MODEL: '' }, timeout: 60_000 });
    expect(stdout).toMatch(/\x1b\[J/); // the live region is redrawn in place
    expect(stdout).toMatch(/\d+\/6 frames {2}\d+\.\d fps {2}\d+\.\d× real time/);
    const shown = screen(stdout.replace(/\r\n/g, '\n'));
    const captionLines = shown.filter((l) => /^00:00:0\d\.\d{3} {2}\S/.test(l));
    expect(captionLines.length).toBeGreaterThan(0);
    expect(shown.some((l) => /^done: 6 frames in /.test(l))).toBe(true);
    expect(shown.some((l) => /frames {2}.*real time/.test(l))).toBe(false); // the bar is gone at the end
  });
});
