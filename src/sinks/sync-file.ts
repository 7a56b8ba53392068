/**
 * An output file that is valid at every moment: each piece is appended with one synchronous
 * write, and `close()` syncs and closes it synchronously, so a signal handler can finish it.
 */
import { closeSync, fsyncSync, openSync, writeSync } from 'node:fs';

export class SyncFile {
  private fd: number | undefined;

  /** Creates (or truncates) the file. */
  constructor(readonly path: string) {
    this.fd = openSync(path, 'w');
  }

  get isOpen(): boolean {
    return this.fd !== undefined;
  }

  /** Appends `text` whole; false (nothing written) once the file is closed. */
  write(text: string): boolean {
    if (this.fd === undefined) return false;
    writeSync(this.fd, text);
    return true;
  }

  /** Syncs to disk and closes. Idempotent. */
  close(): void {
    if (this.fd === undefined) return;
    const fd = this.fd;
    this.fd = undefined;
    try {
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  }
}
