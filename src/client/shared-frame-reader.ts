import { closeFd, exchangeForFds, mapShared } from '../native/addon.js';
import { decodeReply, decodeWelcome, encodeHello, encodeRequestFrame } from '../protocol/codec.js';
import { encodeFrame } from '../protocol/frame.js';
import { BUCKET_ENTRIES, bucketOf, HEADER_BYTES, HeaderWord, SHARED_FRAMES_MAGIC, SHARED_FRAMES_VERSION } from '../shared-frames/layout.js';
import { IovCursor } from '../uio.js';

/**
 * A client's read-only view of the daemon's frame pool (src/shared-frames/layout.ts): copies
 * resident pages without a round trip. A copy counts only if the frame's seq was even and the
 * same before and after it, and the frame held the page asked for (segment and page number read
 * between the two): the daemon makes the seq odd around every change of a frame's bytes or owner,
 * so a copy that raced one is thrown away, never returned. Anything in doubt answers "not here",
 * and the caller goes through the socket.
 *
 * The mapping is PROT_READ: this class never writes to it (a write would kill the process). It
 * writes only to the access map: a byte per frame copied from, which the daemon's clock hand
 * reads as a reference.
 */
export class SharedFrameReader {
  private readonly seq: Uint32Array;
  private readonly vmid: Uint32Array;
  private readonly pno: Uint32Array;
  private readonly directory: Uint32Array;
  private readonly frames: Uint8Array;
  private readonly buckets: number;
  readonly pageSize: number;

  private constructor(
    memory: SharedArrayBuffer,
    private readonly accessed: Uint8Array,
  ) {
    const header = new Uint32Array(memory, 0, HEADER_BYTES / 4);
    if (header[HeaderWord.MAGIC] !== SHARED_FRAMES_MAGIC || header[HeaderWord.VERSION] !== SHARED_FRAMES_VERSION) throw new Error('the shared frames are of a layout this client does not know');
    const count = header[HeaderWord.COUNT];
    this.pageSize = header[HeaderWord.PAGE_SIZE];
    this.buckets = header[HeaderWord.BUCKETS];
    this.seq = new Uint32Array(memory, header[HeaderWord.SEQ], count);
    this.vmid = new Uint32Array(memory, header[HeaderWord.VMID], count);
    this.pno = new Uint32Array(memory, header[HeaderWord.PNO], count);
    this.directory = new Uint32Array(memory, header[HeaderWord.DIRECTORY], BUCKET_ENTRIES * this.buckets);
    this.frames = new Uint8Array(memory, header[HeaderWord.FRAMES], this.pageSize * count);
  }

  /**
   * Asks the daemon at `socketPath` for its frames on a connection of its own (the reply carries
   * the descriptors, which Node's sockets cannot receive) and maps them. Rejects with the daemon's
   * refusal, or a system error.
   */
  static async open(socketPath: string, timeoutMs: number): Promise<SharedFrameReader> {
    const request = Buffer.concat([encodeFrame(encodeHello()), encodeRequestFrame({ id: 1, op: 'sharedFrames', args: [] })]);
    const { frames, fds } = await exchangeForFds(socketPath, request, 2, timeoutMs);
    try {
      decodeWelcome(frames[0].subarray(4));
      const reply = decodeReply(frames[1].subarray(4));
      if (reply.error !== undefined) throw Object.assign(new Error(`${reply.error.code} (${reply.error.reason}): ${reply.error.detail}`), { code: reply.error.code, reason: reply.error.reason });
      if (fds.length !== 2) throw new Error(`the daemon passed ${fds.length} descriptors, not 2`);
      const [framesBytes, accessBytes] = reply.results as number[];
      return new SharedFrameReader(mapShared(fds[0], framesBytes, false), new Uint8Array(mapShared(fds[1], accessBytes, true)));
    } finally {
      for (const fd of fds) closeFd(fd); // the mappings stay
    }
  }

  /**
   * Views of `frames`, in order, a run of adjacent frames each, for a write by frame reference
   * (the daemon holds them unchanged until it is answered, so no seq check). Read-only memory.
   * Undefined if a frame number is past the pool.
   */
  frameRuns(frames: readonly number[]): Uint8Array[] | undefined {
    const ps = this.pageSize;
    const count = this.seq.length;
    const runs: Uint8Array[] = [];
    for (let first = 0; first < frames.length; ) {
      let end = first + 1;
      while (end < frames.length && frames[end] === frames[end - 1] + 1) end++;
      if (!(frames[end - 1] < count)) return undefined; // the run's last is its highest
      runs.push(this.frames.subarray(frames[first] * ps, (frames[end - 1] + 1) * ps));
      first = end;
    }
    return runs;
  }

  /**
   * Copies bytes [offset, offset + length) of segment `vmid` into the iovecs at `cursor`, a page
   * at a time, as far as the pages are resident and stable; answers how many bytes it copied
   * (whole pieces only: a page that fails its check is not counted, though its bytes may have
   * been written to the iovecs).
   */
  copy(vmid: number, offset: number, length: number, cursor: IovCursor): number {
    const ps = this.pageSize;
    let done = 0;
    while (done < length) {
      const pos = offset + done;
      const pno = Math.floor(pos / ps);
      const inPage = pos - pno * ps;
      const len = Math.min(ps - inPage, length - done);
      if (!this.copyPiece(vmid, pno, inPage, len, cursor)) break;
      done += len;
    }
    return done;
  }

  private copyPiece(vmid: number, pno: number, inPage: number, len: number, cursor: IovCursor): boolean {
    const base = bucketOf(vmid, pno, this.buckets) * BUCKET_ENTRIES;
    for (let i = base; i < base + BUCKET_ENTRIES; i++) {
      const f = this.directory[i] - 1;
      if (f < 0) continue;
      const before = Atomics.load(this.seq, f);
      if ((before & 1) !== 0 || this.vmid[f] !== vmid || this.pno[f] !== pno) continue;
      const mark = cursor.mark();
      cursor.writeFrom(this.frames, f * this.pageSize + inPage, len);
      if (Atomics.load(this.seq, f) === before) {
        this.accessed[f] = 1;
        return true;
      }
      cursor.reset(mark);
      return false;
    }
    return false;
  }
}
