/**
 * The first video timestamp of an MPEG-TS segment (an HLS video segment ffmpeg wrote): the PTS
 * of the first PES packet of a video stream (stream_id 0xE0–0xEF), in 90 kHz ticks (33 bits).
 * Enough of ISO/IEC 13818-1 for that: 188-byte packets, the adaptation field skipped.
 */
const PACKET = 188;
const SYNC = 0x47;

export const MPEGTS_HZ = 90_000;
/** PTS values wrap at 2^33 ticks (about 26.5 hours). */
export const PTS_WRAP = 2 ** 33;

export function firstVideoPts(buf: Uint8Array): number | undefined {
  for (let at = 0; at + PACKET <= buf.length; at += PACKET) {
    if (buf[at] !== SYNC) return undefined;
    const unitStart = (buf[at + 1]! & 0x40) !== 0;
    const adaptation = (buf[at + 3]! >> 4) & 0x3;
    if (!unitStart || (adaptation & 0x1) === 0) continue;
    const payload = at + 4 + (adaptation & 0x2 ? 1 + buf[at + 4]! : 0);
    const pts = pesPts(buf, payload, at + PACKET);
    if (pts !== undefined) return pts;
  }
  return undefined;
}

/** The PTS of a video PES header starting at `p` (undefined for anything else). */
function pesPts(b: Uint8Array, p: number, end: number): number | undefined {
  if (p + 14 > end || b[p] !== 0 || b[p + 1] !== 0 || b[p + 2] !== 1) return undefined;
  const streamId = b[p + 3]!;
  if (streamId < 0xe0 || streamId > 0xef) return undefined;
  if ((b[p + 7]! & 0x80) === 0) return undefined; // no PTS
  const x = p + 9;
  // 33 bits spread over 5 bytes with marker bits: 3 | 15 | 15.
  return (((b[x]! >> 1) & 0x07) * 2 ** 30) + (b[x + 1]! << 22) + ((b[x + 2]! >> 1) << 15) + (b[x + 3]! << 7) + (b[x + 4]! >> 1);
}
