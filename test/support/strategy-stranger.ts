/**
 * Run as another uid (setpriv) by the isolation test: tries to use, unmount and rebind onto
 * another uid's paging device, and to rebind that uid's client segment, and prints what each
 * attempt answered, and the devices it is shown, as JSON.
 *
 *   node strategy-stranger.js SOCKET THEIR_DEVICE THEIR_VMID
 */
import { V_CLIENT, connect } from '../../src/client/index.js';

const [socket, deviceArg, vmidArg] = process.argv.slice(2);
const theirDevice = Number(deviceArg);
const theirVmid = Number(vmidArg);

async function outcome(work: () => Promise<unknown>): Promise<unknown> {
  try {
    return { ok: await work() };
  } catch (err) {
    const e = err as { code?: string; reason?: string };
    return { code: e.code, reason: e.reason };
  }
}

const c = await connect({ socket });
const mine = await c.vmMounte(() => undefined);
const myVmid = await c.vmsCreate(V_CLIENT, 4096, { device: mine });
process.stdout.write(
  `${JSON.stringify({
    createOnTheirs: await outcome(() => c.vmsCreate(V_CLIENT, 4096, { device: theirDevice })),
    unmountTheirs: await outcome(() => c.vmUmount(theirDevice)),
    rebindMineOntoTheirs: await outcome(() => c.vmSetdevid(myVmid, theirDevice)),
    rebindTheirsOntoMine: await outcome(() => c.vmSetdevid(theirVmid, mine)),
    devicesListedOfUids: (await c.devices()).map((d) => d.uid),
  })}\n`,
);
await c.close();
