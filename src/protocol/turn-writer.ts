import type { Writable } from 'node:stream';

/**
 * Writes frames to a stream, corking it for the rest of the current turn of the event loop: the
 * frames written while handling one batch of events (many pipelined requests or replies) leave in
 * one syscall instead of one each.
 */
export class TurnWriter {
  private corked = false;

  constructor(private readonly stream: Writable) {}

  write(frame: Uint8Array): void {
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(() => {
        this.corked = false;
        this.stream.uncork();
      });
    }
    this.stream.write(frame);
  }
}
