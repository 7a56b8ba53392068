// Debian's mosquitto for the tests (installed by .ci/deps-server.sh), on 127.0.0.1, and MQTT
// subscribers that record what they receive. Used by the MQTT output tests and the cluster's.
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import net from 'node:net';
import { userInfo } from 'node:os';
import path from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { until } from '../server/helpers.js';

export const MOSQUITTO = process.env.CASA_LIVE_MOSQUITTO ?? '/usr/sbin/mosquitto';

export interface Received {
  topic: string;
  payload: string;
  retain: boolean;
}

function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

/** Starts mosquitto with `conf` (lines) written to `<dir>/<name>.conf`; resolves once it accepts connections on `port`. */
export async function startBroker(dir: string, name: string, port: number, conf: string[], children: ChildProcess[]): Promise<ChildProcess> {
  const file = path.join(dir, `${name}.conf`);
  // Run as root, mosquitto would switch to its own user, who cannot read the test's files.
  await writeFile(file, [`user ${userInfo().username}`, ...conf, ''].join('\n'));
  const child = spawn(MOSQUITTO, ['-c', file], { stdio: ['ignore', 'ignore', 'pipe'] });
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  children.push(child);
  await until(async () => (child.exitCode !== null ? Promise.reject(new Error(`mosquitto exited: ${err}`)) : portOpen(port)), 10_000, 'mosquitto to listen');
  return child;
}

export async function stopBroker(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  await exited;
}

/** A subscriber recording every message of `topic` (plus whether it came as a retained one). */
export async function subscriber(url: string, topic: string, clients: MqttClient[], options: mqtt.IClientOptions = {}): Promise<{ client: MqttClient; got: Received[] }> {
  const got: Received[] = [];
  const client = await mqtt.connectAsync(url, { reconnectPeriod: 300, ...options });
  clients.push(client);
  client.on('message', (t, payload, packet) => got.push({ topic: t, payload: payload.toString(), retain: packet.retain }));
  await client.subscribeAsync(topic, { qos: 1 });
  return { client, got };
}
