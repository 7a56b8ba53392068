/**
 * The decoder side of a caption session: owns the stream's caches and runs the graphs.
 * Two implementations: CASA (image K/V swapped per frame, text-only self-attention cache)
 * and the insertion twin (image tokens written into the cache). The caption protocol
 * (src/session/caption-session.ts) and the parity harness drive both through this
 * interface.
 */
import type { Fusion } from '../model/manifest.js';

export interface BackendStats {
  /** Entries in the self-attention cache (text, plus image tokens for insertion). */
  kvTokens: number;
  /** Text tokens in the self-attention cache. */
  textKvTokens: number;
  /** Image tokens in the self-attention cache (always 0 for CASA). */
  imageKvTokens: number;
  /** Text tokens in the current CASA window (0 for insertion). */
  windowTokens: number;
  /** Image tokens whose K/V the CASA layers currently hold (0 before the first frame, and for insertion). */
  imageTokens: number;
  /** Position the next token takes (= kvTokens: positions stay contiguous). */
  nextPosition: number;
  /** Eviction rounds and tokens evicted so far. */
  evictions: number;
  evictedTokens: number;
  /** Bytes of K/V in use: self-attention cache, window and image K/V. */
  kvBytes: number;
  /** Bytes of K/V storage allocated. */
  kvCapacityBytes: number;
  /** Text tokens fed since the start (prompt, markers, sampled tokens, EOS). */
  textTokensFed: number;
}

export interface DecoderBackend {
  readonly fusion: Fusion;
  /** Feeds text tokens into the current window; returns their logits, [T, V] row-major. */
  feedText(ids: readonly number[]): Promise<Float32Array>;
  /**
   * Starts a new frame: encodes it (`pixels`: NCHW floats at the model's size), makes it
   * the current image and feeds the frame's marker ids (pre-image first). Returns the
   * logits of those ids, [ids.length, V].
   */
  startFrame(pixels: Float32Array, ids: readonly number[]): Promise<Float32Array>;
  /**
   * The frame's last step has been fed (EOS). The batched engine's gather rule stops
   * waiting for this stream's next step until its next frame; the unbatched engine has
   * nothing to do.
   */
  endFrame(): void;
  stats(): BackendStats;
  /** Cache indices of the frames' pre-image markers still cached (ascending). */
  frameStarts(): number[];
  /** Drops the caches. */
  close(): void;
}
