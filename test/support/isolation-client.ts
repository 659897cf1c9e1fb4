/**
 * Run as another uid (setpriv) by the isolation test: tries everything on a segment it should not
 * see and on one that does not exist, and prints what each attempt answered, as JSON.
 *
 *   node isolation-client.js SOCKET HIDDEN_VMID MISSING_VMID
 */
import { UIO_READ, UIO_WRITE, connect } from '../../src/client/index.js';
import { SharedFrameReader } from '../../src/client/shared-frame-reader.js';

const [socket, hiddenArg, missingArg] = process.argv.slice(2);

async function outcome(work: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await work() };
  } catch (err) {
    const e = err as { code?: string; errno?: number; reason?: string; detail?: string };
    return { code: e.code, errno: e.errno, reason: e.reason, detail: e.detail };
  }
}

async function attempts(c: Awaited<ReturnType<typeof connect>>, vmid: number): Promise<Record<string, unknown>> {
  const buf = new Uint8Array(16);
  const uio = () => ({ iov: [buf], offset: 0, resid: 16, segflg: 0 });
  return {
    attachRead: await outcome(() => c.vmAtt(vmid, 0, 'read')),
    attachWrite: await outcome(() => c.vmAtt(vmid, 0, 'write')),
    read: await outcome(() => c.vmMove(vmid, 0, 16, UIO_READ, uio())),
    write: await outcome(() => c.vmMove(vmid, 0, 16, UIO_WRITE, uio())),
    qpages: await outcome(() => c.vmQpages(vmid)),
    writep: await outcome(() => c.vmWritep(vmid, 0, 1)),
    release: await outcome(() => c.vmReleasep(vmid, 0, 1)),
    iowait: await outcome(() => c.vmsIowait(vmid)),
    remove: await outcome(() => c.vmsDelete(vmid)),
  };
}

async function main(): Promise<void> {
  let c;
  try {
    c = await connect({ socket });
  } catch (err) {
    console.log(JSON.stringify({ connect: (err as NodeJS.ErrnoException).code }));
    return;
  }
  const hidden = await attempts(c, Number(hiddenArg));
  const missing = await attempts(c, Number(missingArg));
  const segments = await c.segments();
  // Shared frames: whether the daemon offered them, what asking anyway answered, and what the
  // mapping gives for the hidden segment (nothing: its access was never granted through the daemon).
  const asked = await SharedFrameReader.open(socket, 2000).then(
    () => 'mapped',
    (err: { code?: string; reason?: string }) => `${err.code} ${err.reason}`,
  );
  const frames = { offered: await c.sharedFramesReady(), asked, hiddenRead: c.tryReadResident(Number(hiddenArg), 0, new Uint8Array(16)) };
  console.log(JSON.stringify({ connect: 'ok', hidden, missing, segments, frames }));
  await c.close();
}

void main();
