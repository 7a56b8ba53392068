// MQTT output against Debian's mosquitto, started by the test on 127.0.0.1 (installed by
// .ci/deps-server.sh): a subscriber (npm mqtt, persistent session, QoS 1) receives every caption
// of the daemon (stand-in pipeline) in order across a broker restart, the last caption and
// status are retained for late subscribers, `casa-live/available` is online while the daemon
// runs and offline (its last will) once it is killed. Then user name, password and TLS:
// mqtts:// with a CA made here by openssl.
import { spawnSync, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import type { MqttClient } from 'mqtt';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { silentLogger } from '../../src/logger.js';
import { MqttSink } from '../../src/sinks/mqtt.js';
import { DEV_MODEL, runCli, setupCliTests } from '../cli/helpers.js';
import { ensureBuilt, freePort, removeDir, sleep, startDaemon, tmpDir, until, writeConfig, type Daemon } from '../server/helpers.js';
import { startBroker as startMosquitto, stopBroker, subscriber as subscribe, type Received } from './mosquitto.js';

let dir: string;
const children: ChildProcess[] = [];
const clients: MqttClient[] = [];

beforeAll(async () => {
  await ensureBuilt();
  dir = await tmpDir('casa-mqtt-');
}, 120_000);

afterAll(async () => {
  for (const c of clients) c.end(true);
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  await removeDir(dir);
});

const startBroker = (name: string, port: number, conf: string[]): Promise<ChildProcess> => startMosquitto(dir, name, port, conf, children);
const subscriber = (url: string, topic: string, options: Parameters<typeof subscribe>[3] = {}): ReturnType<typeof subscribe> => subscribe(url, topic, clients, options);

/** The captions a subscriber got, first copy of each seq, in arrival order. */
function captions(got: Received[], stream: string): Array<{ seq: number; frame: number; text: string }> {
  const seen = new Set<number>();
  const out: Array<{ seq: number; frame: number; text: string }> = [];
  for (const m of got) {
    if (m.topic !== `casa-live/${stream}/caption`) continue;
    const ev = JSON.parse(m.payload) as { seq: number; frame: number; text: string };
    if (seen.has(ev.seq)) continue;
    seen.add(ev.seq);
    out.push(ev);
  }
  return out;
}

describe('MQTT output of the daemon', () => {
  let daemon: Daemon | undefined;
  afterAll(() => {
    if (daemon && daemon.child.exitCode === null) daemon.child.kill('SIGKILL');
  });

  it('every caption in order across a broker restart, retained caption and status, available online/offline', async () => {
    const port = await freePort();
    const url = `mqtt://127.0.0.1:${port}`;
    const brokerConf = [`listener ${port} 127.0.0.1`, 'allow_anonymous true', 'persistence true', `persistence_location ${dir}/`];
    let broker = await startBroker('plain', port, brokerConf);
    // A persistent session: what is published while this subscriber reconnects waits for it.
    const sub = await subscriber(url, 'casa-live/#', { clean: false, clientId: 'casa-test-sub' });
    const configPath = await writeConfig(dir, {
      streams: [{ id: 'stage', input: 'rtmp://127.0.0.1/live/stage' }],
      outputs: { mqtt: { url, qos: 1, tokens: true } },
    });
    daemon = await startDaemon(configPath, ['--frame-ms', '120', '--run', 'M']);
    await until(() => captions(sub.got, 'stage').length >= 8, 20_000, 'captions before the restart');
    expect(sub.got.some((m) => m.topic === 'casa-live/available' && m.payload === 'online')).toBe(true);
    expect(sub.got.some((m) => m.topic === 'casa-live/stage/token')).toBe(true);

    // A late subscriber gets the last caption and status as retained messages.
    const late = await subscriber(url, 'casa-live/stage/+');
    await until(() => late.got.filter((m) => m.retain).length >= 2, 5000, 'retained caption and status');
    const retained = late.got.filter((m) => m.retain);
    expect(retained.map((m) => m.topic).sort()).toEqual(['casa-live/stage/caption', 'casa-live/stage/status']);
    expect(JSON.parse(retained.find((m) => m.topic.endsWith('/caption'))!.payload)).toMatchObject({ type: 'caption', stream: 'stage', text: expect.stringMatching(/^stage frame \d+ run M$/) });
    expect(JSON.parse(retained.find((m) => m.topic.endsWith('/status'))!.payload)).toMatchObject({ type: 'status', state: 'live' });

    // Broker restart: the daemon's output reconnects with backoff and sends what waited.
    const before = captions(sub.got, 'stage').length;
    await stopBroker(broker);
    await sleep(1500);
    broker = await startBroker('plain', port, brokerConf);
    await until(() => captions(sub.got, 'stage').length >= before + 15, 30_000, 'captions after the restart');

    const got = captions(sub.got, 'stage');
    const frames = got.map((c) => c.frame);
    expect(frames).toEqual(frames.map((_, i) => frames[0]! + i)); // every frame, in order, none lost
    for (let i = 1; i < got.length; i++) expect(got[i]!.seq).toBeGreaterThan(got[i - 1]!.seq);

    // Killed: the broker publishes the daemon's last will.
    const killedAt = sub.got.length;
    daemon.child.kill('SIGKILL');
    await until(() => sub.got.slice(killedAt).some((m) => m.topic === 'casa-live/available' && m.payload === 'offline'), 10_000, 'the last will');
    await stopBroker(broker);
  });
});

describe('MQTT sink: credentials and TLS', () => {
  it('connects over mqtts:// with a CA, a user name and a password; a wrong password publishes nothing', async () => {
    const pki = path.join(dir, 'pki');
    const ssl = (args: string[]): void => {
      const r = spawnSync('openssl', args, { cwd: pki, encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr}`);
    };
    await import('node:fs/promises').then((fs) => fs.mkdir(pki, { recursive: true }));
    ssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=casa test CA', '-keyout', 'ca.key', '-out', 'ca.pem']);
    ssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', '/CN=localhost', '-keyout', 'server.key', '-out', 'server.csr']);
    await writeFile(path.join(pki, 'san.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
    ssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '2', '-extfile', 'san.ext', '-out', 'server.pem']);
    const passwd = path.join(pki, 'passwd');
    const r = spawnSync('mosquitto_passwd', ['-b', '-c', passwd, 'casa', 's3cret pass'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);

    const port = await freePort();
    const broker = await startBroker('tls', port, [
      `listener ${port} 127.0.0.1`,
      `cafile ${pki}/ca.pem`,
      `certfile ${pki}/server.pem`,
      `keyfile ${pki}/server.key`,
      'allow_anonymous false',
      `password_file ${passwd}`,
    ]);
    const url = `mqtts://localhost:${port}`;
    const tls = { ca: path.join(pki, 'ca.pem') };
    const sub = await subscriber(url, 'casa-live/#', { ca: await import('node:fs/promises').then((fs) => fs.readFile(tls.ca)), username: 'casa', password: 's3cret pass' });
    const good = new MqttSink({ url, tls, username: 'casa', password: 's3cret pass', logger: silentLogger() });
    const bad = new MqttSink({ url, tls, username: 'casa', password: 'wrong', topicPrefix: 'intruder', logger: silentLogger() });
    try {
      const ev = { type: 'caption' as const, stream: 'door', seq: 5, frame: 1, start: 0.5, end: 1, text: 'a person at the door', latencyMs: 300 };
      good.push(ev);
      bad.push(ev);
      await until(() => captions(sub.got, 'door').length === 1, 10_000, 'the caption over TLS');
      expect(captions(sub.got, 'door')[0]).toMatchObject({ seq: 5, text: 'a person at the door' });
      await sleep(500);
      expect(bad.connected).toBe(false);
      expect(sub.got.some((m) => m.topic.startsWith('intruder/'))).toBe(false);
    } finally {
      await good.close();
      await bad.close();
      await until(() => sub.got.some((m) => m.payload === 'offline'), 5000, 'offline').catch(() => undefined);
      await stopBroker(broker);
    }
    // A clean stop says offline (Frigate: published after it stops).
    expect(sub.got.filter((m) => m.topic === 'casa-live/available').map((m) => m.payload)).toEqual(['online', 'offline']);
  });
});

describe('casa-live caption --mqtt', () => {
  const tmp = setupCliTests('casa-mqtt-cli-', { 'clip.mp4': 3 });

  it("publishes the run's captions and status under casa-live/<stream-id>/", async () => {
    const port = await freePort();
    const broker = await startBroker('cli', port, [`listener ${port} 127.0.0.1`, 'allow_anonymous true']);
    const url = `mqtt://127.0.0.1:${port}`;
    const sub = await subscriber(url, 'casa-live/#');
    try {
      const run = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--seed', '1', '--quiet', '--stream-id', 'door', '--mqtt', url]);
      expect(run.code, run.stderr).toBe(0);
      await until(() => sub.got.some((m) => m.topic === 'casa-live/available' && m.payload === 'offline'), 5000, 'offline');
    } finally {
      await stopBroker(broker);
    }
    const caps = sub.got.filter((m) => m.topic === 'casa-live/door/caption').map((m) => JSON.parse(m.payload) as { seq: number; frame: number });
    expect(caps.length).toBeGreaterThan(2);
    expect(caps.map((c) => c.frame)).toEqual(caps.map((_, i) => i));
    expect(sub.got.some((m) => m.topic === 'casa-live/door/status')).toBe(true);
    const bad = await runCli(['caption', tmp.clip('clip.mp4'), '--model', DEV_MODEL, '--mqtt', 'http://broker']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('--mqtt must be a broker URL');
  });
});
