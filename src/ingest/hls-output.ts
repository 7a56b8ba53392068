/**
 * The stream's low-latency HLS (docs/outputs.md): a second output of the source's own ffmpeg,
 * so the camera is read and decoded once. The decoded video is scaled down (to `height`),
 * encoded with x264 (zero-latency tuning, a keyframe at every segment boundary) and written as
 * MPEG-TS segments of `segmentSeconds` with a sliding playlist of `listSize` segments into
 * `dir`. Its timestamps are the stream's own clock: `offsetSeconds` (the attempt's place on it,
 * StreamClock) is added and the muxer adds no delay, so a frame's caption time (its pts) is its
 * video timestamp — which the WebVTT rendition (src/sinks/hls-subtitles.ts) relies on. A
 * reconnect appends to the same playlist after a discontinuity.
 */
import type { FfmpegFeatures } from './binaries.js';

export interface HlsOutputOptions {
  /** Directory of the playlist and segments (it is created when missing). */
  dir: string;
  segmentSeconds: number;
  listSize: number;
  /** Height of the encoded video; 0 keeps the source's (never scaled up). */
  height: number;
  /** x264 preset. */
  preset: string;
}

/** The names ffmpeg writes: the media playlist and the segments (v0.ts, v1.ts, …). */
export const HLS_VIDEO_PLAYLIST = 'video.m3u8';
export const HLS_VIDEO_SEGMENT = /^v\d+\.ts$/;

/** The HLS output's target and options after its stream selection (ffmpeg-args.ts maps the video only). */
export function hlsOutputArgs(o: HlsOutputOptions, offsetSeconds: number, features: FfmpegFeatures): { target: string; options: string[] } {
  const dir = o.dir.replace(/\/+$/, '');
  const scale = o.height > 0 ? `scale=w=-2:h='min(${o.height},trunc(ih/2)*2)',` : '';
  const seg = String(o.segmentSeconds);
  return {
    target: `${dir}/${HLS_VIDEO_PLAYLIST}`,
    options: [
      '-vf',
      `${scale}format=yuv420p`,
      ...(features.fpsMode ? ['-fps_mode', 'passthrough'] : []),
      '-c:v',
      'libx264',
      '-preset',
      o.preset,
      '-tune',
      'zerolatency',
      '-crf',
      '23',
      '-force_key_frames',
      `expr:gte(t,n_forced*${seg})`,
      '-muxdelay',
      '0',
      '-output_ts_offset',
      offsetSeconds.toFixed(6),
      '-f',
      'hls',
      '-hls_time',
      seg,
      '-hls_list_size',
      String(o.listSize),
      '-hls_flags',
      'delete_segments+independent_segments+append_list+omit_endlist+temp_file',
      '-hls_segment_type',
      'mpegts',
      // A % in the directory would read as the segment number's format.
      '-hls_segment_filename',
      `${dir.replace(/%/g, '%%')}/v%d.ts`,
    ],
  };
}
