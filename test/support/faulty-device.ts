import { writeThenSync, type BackingDevice, type ByteRange, type WriteRun } from '../../src/store/device.js';

/** Wraps a real device and fails chosen operations with a chosen errno (EIO, ENOSPC). */
export class FaultyDevice implements BackingDevice {
  failWritev: string | undefined;
  failDatasync: string | undefined;
  failRead: string | undefined;

  constructor(private readonly inner: BackingDevice) {}

  get kind(): 'file' | 'block' {
    return this.inner.kind;
  }

  get size(): number {
    return this.inner.size;
  }

  private fault(code: string, syscall: string): Error {
    return Object.assign(new Error(`${code}: injected fault, ${syscall}`), { code, syscall });
  }

  async read(into: Uint8Array, position: number): Promise<void> {
    if (this.failRead) throw this.fault(this.failRead, 'read');
    return this.inner.read(into, position);
  }

  readNow(into: Uint8Array, position: number): boolean {
    if (this.failRead) throw this.fault(this.failRead, 'read');
    return this.inner.readNow(into, position);
  }

  async writev(buffers: readonly Uint8Array[], position: number, sums?: Uint32Array): Promise<void> {
    if (this.failWritev) throw this.fault(this.failWritev, 'pwritev'); // as the real device names it
    return this.inner.writev(buffers, position, sums);
  }

  async datasync(): Promise<void> {
    if (this.failDatasync) throw this.fault(this.failDatasync, 'fdatasync');
    return this.inner.datasync();
  }

  writeAndSync(runs: readonly WriteRun[], sums: Uint32Array): Promise<void> {
    return writeThenSync(this, runs, sums); // through this device's writev and datasync, where faults are injected
  }

  deallocate(ranges: readonly ByteRange[]): Promise<void> {
    return this.inner.deallocate(ranges);
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}
