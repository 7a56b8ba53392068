#!/usr/bin/env node
/**
 * rtsp-streaming-server (UDP only) in its own process, for tests:
 *   node rtsp-udp-server.mjs PUBLISH_PORT CLIENT_PORT RTP_PORT_START
 * Prints "listening" when ready; exits by itself after two minutes.
 */
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const RtspServer = require('rtsp-streaming-server').default;
const [serverPort, clientPort, rtpPortStart] = process.argv.slice(2).map(Number);
const server = new RtspServer({ serverPort, clientPort, rtpPortStart, rtpPortCount: 40 });
await server.start();
process.stdout.write('listening\n');
setTimeout(() => process.exit(0), 120_000).unref();
