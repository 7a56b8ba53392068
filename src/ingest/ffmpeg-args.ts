/**
 * The ffmpeg command line of a frame source. Pure; see docs/ingest.md for the reasoning.
 *
 *   ffmpeg -hide_banner -nostdin -nostats -loglevel info [protocol options] [-re] -i INPUT
 *          -map 0:v:0 -an -sn -dn -vf "select=…,scale=…,format=rgb24,[crop|pad],setsar=1,showinfo@casa"
 *          -fps_mode passthrough -pix_fmt rgb24 -f rawvideo pipe:1
 *
 * - select keeps the first frame at or after each 1/fps grid point of the stream's own clock
 *   (the grid starts at the first frame):
 *   timestamps are the source frames' real ones, a gap in the stream leaves a gap (no burst of
 *   duplicated frames after a hiccup, unlike the fps filter), and a jump back of more than a
 *   second (timestamp reset) restarts the grid.
 * - showinfo@casa logs each output frame's pts on stderr, in output order; that is where the
 *   frame timestamps come from (rawvideo on a pipe carries none).
 */
import type { FfmpegFeatures } from './binaries.js';
import { hlsOutputArgs, type HlsOutputOptions } from './hls-output.js';
import type { ClassifiedInput } from './input.js';
import type { Fit } from './types.js';

/** Each output takes the input's first video stream, nothing else. */
const VIDEO_ONLY = ['-map', '0:v:0', '-an', '-sn', '-dn'];

/** The log prefix of the showinfo instance, matched on stderr. */
export const SHOWINFO_NAME = 'showinfo@casa';
/** Probe length (µs) for header-less live inputs. */
export const LIVE_ANALYZE_US = 1_000_000;
/**
 * RTSP probing: the SDP already describes the streams, so ffmpeg needs little more than the
 * first keyframe. Its defaults (5 MB / 5 s) kept it probing for about 2 s before the first
 * frame; 32 KB / 0.5 s brings connect → first frame to about 0.8 s (measured on the test
 * relay: H.264 with and without parameter sets in the SDP, MPEG-4, H.264 + AAC).
 */
export const RTSP_PROBE = { bytes: 32_768, us: 500_000 } as const;

/**
 * How ffmpeg decodes (docs/ingest.md, "Decoding CPU"). Every field absent: ffmpeg's defaults.
 * - threads: decoding (and filtering) threads per child; 0 = ffmpeg's choice (one per core).
 *   One per child suits many streams: ffmpeg's frame threads buy parallelism a machine full
 *   of children does not have, and cost CPU and memory.
 * - skipFrame: frames the decoder may skip (-skip_frame, ffmpeg's names): 'noref' (frames no other frame
 *   refers to, e.g. H.264 non-reference B frames), 'bidir' (all B frames), 'nokey' (all but
 *   keyframes). Sampling a 25 fps stream at 2 fps, most decoded frames are thrown away by the
 *   select filter; a skipped one is never decoded. What changes: a grid point that falls on
 *   a skipped frame takes the next decoded one instead (a sampled frame's time moves later by
 *   a frame interval or so; 'nokey' keeps only keyframes, so the rate drops to the
 *   keyframe rate when that is below fps).
 * - skipLoopFilter: the decoder skips its in-loop deblocking filter (-skip_loop_filter all;
 *   H.264, HEVC): every frame is still decoded and the same frames are sampled, but their
 *   pictures keep block edges the filter would have smoothed (invisible at the model's 64×64);
 *   about a sixth less decoding CPU (measured: 720p25 2.06 → 1.68 CPU-s per minute, 256²
 *   10 fps 0.38 → 0.31).
 * - hwaccel: a hardware decoder (-hwaccel, e.g. 'vaapi', 'cuda', 'auto'); ffmpeg falls back
 *   to software decoding when it cannot use it.
 * - nice: how much lower the child's priority is than the daemon's, 0–19 (started through
 *   `nice -n`, which adds it to the daemon's niceness, capped at 19; ignored on Windows). Above 0 the
 *   children yield the cores to the daemon: with many streams a frame's model runs no longer
 *   wait behind decoders, while a decoder's wait is short (the model's work per frame is
 *   small) and its input waits in the socket. It changes no frame; it cannot make a decoder
 *   keep up where the cores are full.
 */
export interface DecodeOptions {
  threads?: number;
  skipFrame?: SkipFrame;
  skipLoopFilter?: boolean;
  hwaccel?: string;
  nice?: number;
}

/** The niceness range of DecodeOptions.nice (lowering a child's priority needs no privilege). */
export const NICE_RANGE = { min: 0, max: 19 } as const;

export const SKIP_FRAME_MODES = ['default', 'noref', 'bidir', 'nokey'] as const;
export type SkipFrame = (typeof SKIP_FRAME_MODES)[number];
/** What an hwaccel name may look like (it goes on ffmpeg's command line). */
export const HWACCEL_RE = /^[a-z0-9_]{1,32}$/;

/** The decoder's input options (before -i). */
export function decodeInputOptions(d: DecodeOptions | undefined): string[] {
  if (!d) return [];
  const out: string[] = [];
  if (d.hwaccel) out.push('-hwaccel', d.hwaccel);
  if (d.threads !== undefined) out.push('-threads', String(d.threads), '-filter_threads', String(Math.max(1, d.threads)));
  if (d.skipFrame && d.skipFrame !== 'default') out.push('-skip_frame', d.skipFrame);
  if (d.skipLoopFilter) out.push('-skip_loop_filter', 'all');
  return out;
}

export interface FfmpegArgsParams {
  input: ClassifiedInput;
  width: number;
  height: number;
  fit: Fit;
  fps: number;
  /** Pass -re (files and stdin read at native speed). */
  readAtNativeRate: boolean;
  rtspTransport: 'tcp' | 'udp';
  ioTimeoutMs: number;
  features: FfmpegFeatures;
  inputFormat?: string;
  /** Let ffmpeg stop by itself after this many output frames (only where no frame is ever dropped). */
  maxOutputFrames?: number;
  /** A second output: the video as HLS, its timestamps offset by the attempt's place on the stream's clock. */
  hls?: { options: HlsOutputOptions; offsetSeconds: number };
  decode?: DecodeOptions;
}

export interface FfmpegArgs {
  /** What goes after -i. */
  input: string;
  inputOptions: string[];
  outputOptions: string[];
  /** The HLS output: where it goes and its options. */
  extraOutput?: { target: string; options: string[] };
}

export function buildFfmpegArgs(p: FfmpegArgsParams): FfmpegArgs {
  // -loglevel info: the showinfo lines (frame timestamps) are logged at that level.
  const inputOptions = ['-hide_banner', '-nostdin', '-nostats', '-loglevel', 'info'];
  const ioUs = String(Math.max(1, Math.round(p.ioTimeoutMs * 1000)));
  switch (p.input.scheme) {
    case 'rtsp':
    case 'rtsps':
      inputOptions.push('-rtsp_transport', p.rtspTransport, p.features.rtspTimeoutOption, ioUs);
      inputOptions.push('-probesize', String(RTSP_PROBE.bytes), '-analyzeduration', String(RTSP_PROBE.us));
      break;
    case 'rtmp':
    case 'rtmps':
    case 'http':
    case 'https':
    case 'srt':
    case 'udp':
      // FLV and MPEG-TS have no header, so ffmpeg would probe for the full 5 s default before
      // the first frame; 1 s is enough (it reads on past it until a keyframe gives the size).
      inputOptions.push('-rw_timeout', ioUs, '-analyzeduration', String(LIVE_ANALYZE_US));
      break;
    case 'v4l2':
      inputOptions.push('-f', 'v4l2');
      break;
    default:
      break;
  }
  if (p.inputFormat) inputOptions.push('-f', p.inputFormat);
  if (p.readAtNativeRate) inputOptions.push('-re');
  inputOptions.push(...decodeInputOptions(p.decode));

  const outputOptions = [
    ...VIDEO_ONLY,
    '-vf',
    buildFilterGraph(p.width, p.height, p.fit, p.fps),
    ...(p.features.fpsMode ? ['-fps_mode', 'passthrough'] : ['-vsync', 'passthrough']),
    ...(p.maxOutputFrames !== undefined ? ['-frames:v', String(p.maxOutputFrames)] : []),
    '-pix_fmt',
    'rgb24',
    '-f',
    'rawvideo',
  ];
  const hls = p.hls && hlsOutputArgs(p.hls.options, p.hls.offsetSeconds, p.features);
  const extraOutput = hls && { target: hls.target, options: [...VIDEO_ONLY, ...hls.options] };
  return { input: p.input.ffmpegInput, inputOptions, outputOptions, ...(extraOutput ? { extraOutput } : {}) };
}

/** The -vf graph: sample at fps, fit into width x height, rgb24, log pts. No spaces in it. */
export function buildFilterGraph(width: number, height: number, fit: Fit, fps: number): string {
  const W = String(width);
  const H = String(height);
  const F = num(fps);
  const jump = num(1 + 1 / fps);
  // State: ld(0) next sample time, ld(1) "a frame was selected", ld(2) grid anchor (the first
  // selected frame's time, so a live stream joined at t=0.13 samples 0.13, 0.63, … not 0.13, 0.5).
  // A frame is taken when it reaches the next grid time (1 ms slack), when it is the first, or
  // when time jumped back by more than a second (re-anchor). eval.c does not order the operands
  // of + or *, so the updates are sequenced through if() conditions, which are evaluated first.
  const first = `eq(ld(1),0)+lt(t,ld(0)-${jump})`;
  const anchor = `st(2,if(${first},t,ld(2)))`;
  const next = `st(0,if(isnan(${anchor}),0,ld(2)+(floor((t-ld(2)+0.001)*${F})+1)/${F}))`;
  const select = `select='if(isnan(t)+gte(t+0.001,ld(0))+${first},if(isnan(${next}),1,st(1,1)))'`;
  // dar = display aspect ratio (sample aspect ratio included), so anamorphic video fits right.
  let fitChain: string[];
  switch (fit) {
    case 'fill':
      fitChain = [`scale=w=${W}:h=${H}:flags=area`, 'format=rgb24'];
      break;
    case 'crop':
      fitChain = [
        `scale=w='max(${W},round(${H}*dar))':h='max(${H},round(${W}/dar))':flags=area`,
        'format=rgb24',
        `crop=w=${W}:h=${H}`,
      ];
      break;
    case 'letterbox':
      fitChain = [
        `scale=w='min(${W},max(1,round(${H}*dar)))':h='min(${H},max(1,round(${W}/dar)))':flags=area`,
        'format=rgb24',
        `pad=w=${W}:h=${H}:x=(ow-iw)/2:y=(oh-ih)/2:color=black`,
      ];
      break;
  }
  return [select, ...fitChain, 'setsar=1', SHOWINFO_NAME].join(',');
}

function num(x: number): string {
  // Plain decimal notation (ffmpeg's eval reads 1e-7 too, but keep the graph readable).
  return Number.isInteger(x) ? String(x) : x.toFixed(9).replace(/0+$/, '');
}
