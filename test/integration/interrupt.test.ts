import { describe, expect, it } from 'vitest';
import { UIO_READ, V_CLIENT, V_INTRSEG, V_LGPAGE, V_WORKING } from '../../src/client/index.js';
import { startDaemon } from '../support/daemon.js';

const PAGE = 4096;

describe('V_INTRSEG', () => {
  it('a wait on a V_INTRSEG segment ends with EINTR when the request is cancelled; other waits are not interrupted', async () => {
    // One uid may pin the whole pool here: the waits below need every frame pinned.
    const daemon = await startDaemon({ memory: '1MiB', env: { PAGERD_MEMORY_ALLOC_TIMEOUT_MS: '3000', PAGERD_MEMORY_MAX_PINNED_SHARE: '1' } });
    const c = await daemon.client();
    const pinned = await c.vmsCreate(V_CLIENT, 256 * PAGE, V_LGPAGE); // fills the 256-frame pool
    await Promise.all(Array.from({ length: 256 }, (_, p) => c.vmMakep(pinned, p)));
    const interruptible = await c.vmsCreate(V_WORKING, PAGE, V_INTRSEG);
    const plain = await c.vmsCreate(V_WORKING, PAGE);
    const read = (vmid: number, signal: AbortSignal) =>
      c.vmMove(vmid, 0, PAGE, UIO_READ, { iov: [new Uint8Array(PAGE)], offset: 0, resid: PAGE, segflg: 0 }, { signal });

    const a = new AbortController();
    const started = Date.now();
    const waiting = read(interruptible, a.signal);
    setTimeout(() => a.abort(), 200);
    await expect(waiting).rejects.toMatchObject({ code: 'EINTR', errno: 4, reason: 'interrupted' });
    expect(Date.now() - started).toBeLessThan(2500);

    const b = new AbortController();
    const plainWait = read(plain, b.signal);
    setTimeout(() => b.abort(), 200);
    await expect(plainWait).rejects.toMatchObject({ code: 'ENOMEM', reason: 'no-frame' }); // waited its full time
    await c.close();
    expect(await daemon.stop()).toBe(0);
  });
});
