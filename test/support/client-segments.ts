import type { RunningDaemon } from './daemon.js';

/**
 * Deletes every client segment (one bound to a paging device) the daemon still has: tests leave
 * some with modified pages no file system can take any more (their device failed on purpose),
 * which would make the daemon's stop lossy (exit 74).
 */
export async function deleteClientSegments(daemon: RunningDaemon): Promise<void> {
  const c = await daemon.client();
  try {
    for (const segment of await c.segments()) if (segment.device !== null) await c.vmsDelete(segment.vmid);
  } finally {
    await c.close();
  }
}
