import { PagerError } from '../errors.js';
import type { ConnectionDevices } from '../server/handlers.js';
import type { ClientContext } from '../vm/context.js';
import type { VmServices } from '../vm/services.js';
import type { Vmm } from '../vm/vmm.js';
import type { DeviceOwner, PagingDevices } from './paging-devices.js';
import type { RoutingStore } from './routing-store.js';

/**
 * The paging device services of one connection (vm_mounte, vm_umount, vm_setdevid, and vms_create
 * of a segment bound to a device): devices it mounts are served by its strategy routine.
 */
export function connectionDevices(parts: { devices: PagingDevices; routing: RoutingStore; svc: VmServices; vmm: Vmm }, ctx: ClientContext, owner: DeviceOwner): ConnectionDevices {
  const { devices, routing, svc, vmm } = parts;
  const checkBound = (vmid: number, from: number): void => {
    const bound = devices.deviceOf(vmid) ?? 0;
    if (bound !== from) throw new PagerError('segment-rebound', `segment ${vmid} is bound to ${bound === 0 ? 'no device' : `device ${bound}`}, not ${from === 0 ? 'to none' : `device ${from}`}`);
  };
  return {
    mount(byReference) {
      if (byReference && owner.reader === undefined) throw new PagerError('shared-frames-not-offered', 'a device whose writes come by frame reference needs a peer the shared frames are offered to');
      return devices.mount(owner, byReference);
    },
    umount: (device) => devices.umount(owner, device),
    setdevid(vmid, device, from) {
      const seg = vmm.segments.get(vmid);
      if (seg === undefined || !ctx.maySee(seg)) throw new PagerError('no-such-segment');
      if (!routing.pagedByStrategy(vmid)) throw new PagerError('not-client-segment', 'only a client segment created on a paging device can be rebound');
      // Only the owner's uid (or root) rebinds, and only to a device of the owner's uid (or root's, by root).
      if (ctx.uid !== seg.uid && ctx.uid !== 0) throw new PagerError('no-write-access', "only the segment owner's uid, or root, may rebind it");
      if (from !== undefined) checkBound(vmid, from);
      devices.bind(vmid, seg.uid, device, ctx.uid === 0);
    },
    deleteFrom: (vmid, from) => svc.vmsDelete(ctx, vmid, () => checkBound(vmid, from)),
    async createOn(type, size, options, mode, device) {
      devices.bindable(device, ctx.uid); // checked before anything is created
      const vmid = await svc.vmsCreate(ctx, type, size, options, mode, true);
      try {
        devices.bind(vmid, ctx.uid, device);
      } catch (err) {
        await svc.vmsDelete(ctx, vmid); // the device went away while the segment was created
        throw err;
      }
      return vmid;
    },
    // A uid sees its own devices (root and the daemon's user, every one), and of their segments those it may see.
    list: () =>
      devices
        .list()
        .filter((d) => d.uid === ctx.uid || ctx.mayUseWholeStore)
        .map((d) => ({ ...d, segments: d.segments.filter((vmid) => { const seg = vmm.segments.get(vmid); return seg !== undefined && ctx.maySee(seg); }) })),
  };
}
