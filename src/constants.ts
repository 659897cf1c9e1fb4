/** AIX constants, with their AIX values, as clients pass them. */

// uio_rw
export const UIO_READ = 0;
export const UIO_WRITE = 1;
// uio_segflg
export const UIO_USERSPACE = 0;
export const UIO_SYSSPACE = 1;
export const UIO_XMEM = 3;

// vms_create types
export const V_WORKING = 0x1;
export const V_CLIENT = 0x2;
export const V_PERSISTENT = 0x4;
// vms_create options
export const V_INTRSEG = 0x400;
export const V_LARGE = 0x8000;
export const V_LGPAGE = 0x10000000;
/**
 * pagerd's own option bit, not AIX's: the segment's pages are paged by a client file system's
 * strategy routine (vmMounte), never by pagerd's store. Set by the daemon, never by a caller.
 */
export const V_STRATEGY = 0x40000000;

// vm_ioaccessp modifiers
export const VM_IOACCESSP_MAKE = 0x1;
export const VM_IOACCESSP_FLUSH = 0x2;
export const VM_IOACCESSP_PGINWAIT = 0x4;
export const VM_IOACCESSP_PGOUTWAIT = 0x8;
export const VM_IOACCESSP_WAITONLY = 0x10;

// vm_readp flags
export const V_IOWAIT = 0x1;
// vms_iowaitf flags
export const V_WAITERR = 0;
export const V_WAITALL = 1;

/** The byte range vm_att maps into one region of an address space (2^28). */
export const REGION_BYTES = 0x10000000;
/** Largest extent of an ordinary segment (2 GiB). */
export const MAX_EXTENT = 0x80000000;
/** Largest extent of a V_LARGE segment is 2^44 − page size. */
export const MAX_LARGE_EXTENT = 2 ** 44;
