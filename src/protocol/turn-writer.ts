import type { Writable } from 'node:stream';

/**
 * Writes frames to a stream, corking it for the rest of the current turn of the event loop: the
 * frames written while handling one batch of events (many pipelined requests or replies) leave in
 * few syscalls instead of one each. Once `flushBytes` are held they leave at once, so the peer can
 * start on them while this side works on the rest of the batch (both sides busy, not taking turns).
 */
export class TurnWriter {
  private corked = false;
  private held = 0;

  constructor(
    private readonly stream: Writable,
    private readonly flushBytes = 16 * 1024,
  ) {}

  /** Hands on what is held now, so the peer can start on it while this turn goes on. */
  flush(): void {
    if (!this.corked || this.held === 0) return;
    this.held = 0;
    this.stream.uncork();
    this.stream.cork();
  }

  /** `written`, if given, is called once the stream has handed `frame` on (or failed to). */
  write(frame: Uint8Array, written?: () => void): void {
    if (!this.corked) {
      this.corked = true;
      this.stream.cork();
      process.nextTick(() => {
        this.corked = false;
        this.held = 0;
        this.stream.uncork();
      });
    }
    this.stream.write(frame, written);
    this.held += frame.length;
    if (this.held >= this.flushBytes) this.flush();
  }
}
