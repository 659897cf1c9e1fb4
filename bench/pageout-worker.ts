/**
 * One client process of the under-load benchmark: writes 16 random pages of its 1,024-page
 * segment and forces them out (vm_writep + vms_iowait), over and over, until its parent says stop.
 *
 *   node pageout-worker.js SOCKET
 */
import { UIO_WRITE, V_WORKING, connect } from '../src/client/index.js';

const PAGE = 4096;
const PAGES = 1024;
let stop = false;
process.on('message', () => void (stop = true));

async function main(): Promise<number> {
  const c = await connect({ socket: process.argv[2], sharedFrames: false });
  const vmid = await c.vmsCreate(V_WORKING, PAGES * PAGE);
  const page = new Uint8Array(PAGE).fill(5);
  process.send!('ready');
  let cycles = 0;
  while (!stop) {
    for (let i = 0; i < 16; i++) await c.vmMove(vmid, Math.floor(Math.random() * PAGES) * PAGE, PAGE, UIO_WRITE, { iov: [page], offset: 0, resid: PAGE, segflg: 0 });
    await c.vmWritep(vmid, 0, PAGES);
    await c.vmsIowait(vmid);
    cycles++;
  }
  await c.vmsDelete(vmid);
  await c.close();
  return cycles;
}

void main().then((cycles) => {
  process.send!({ cycles });
  process.disconnect();
});
