/**
 * Cuts ffmpeg's rawvideo stdout into frames of width*height*3 bytes. The sink may return a
 * promise: until it settles no more data is accepted, which (through the pipe) stops ffmpeg:
 * that is the backpressure a file source uses.
 */
import { Writable } from 'node:stream';

export type FrameSink = (rgb: Buffer) => void | Promise<void>;

export class FrameAssembler extends Writable {
  private readonly frameBytes: number;
  private readonly sink: FrameSink;
  private current: Buffer | undefined;
  private filled = 0;
  private discarding = false;
  /** Bytes of an incomplete last frame (a truncated output). */
  leftoverBytes = 0;
  framesOut = 0;

  constructor(frameBytes: number, sink: FrameSink) {
    // emitClose: false — fluent-ffmpeg kills ffmpeg when its output stream closes.
    super({ emitClose: false, autoDestroy: false, highWaterMark: 64 * 1024 });
    this.frameBytes = frameBytes;
    this.sink = sink;
  }

  /** From now on, swallow everything (stopping: let ffmpeg's last writes drain). */
  discard(): void {
    this.discarding = true;
    this.current = undefined;
    this.filled = 0;
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.consume(chunk, 0).then(
      () => callback(),
      (err: unknown) => callback(err instanceof Error ? err : new Error(String(err))),
    );
  }

  private async consume(chunk: Buffer, start: number): Promise<void> {
    let offset = start;
    while (offset < chunk.length) {
      if (this.discarding) return;
      if (!this.current) {
        this.current = Buffer.allocUnsafe(this.frameBytes);
        this.filled = 0;
      }
      const n = Math.min(this.frameBytes - this.filled, chunk.length - offset);
      chunk.copy(this.current, this.filled, offset, offset + n);
      this.filled += n;
      offset += n;
      if (this.filled === this.frameBytes) {
        const frame = this.current;
        this.current = undefined;
        this.filled = 0;
        this.framesOut++;
        const pending = this.sink(frame);
        if (pending) await pending;
      }
    }
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.leftoverBytes = this.discarding ? 0 : this.filled;
    this.current = undefined;
    callback();
  }
}
