import type { Server, Socket } from 'node:net';
import type { Logger } from 'pino';
import { peerCred } from '../native/addon.js';
import type { Admissions } from '../server/admission.js';
import { listen, socketFd } from '../server/listener.js';
import type { VmServices } from '../vm/services.js';
import type { Vmm } from '../vm/vmm.js';
import { HandshakeRefused, negotiate, type ExportCatalog } from './handshake.js';
import { NbdExport, type PageMapped } from './nbd-export.js';
import { NbdSession, RequestError, type RequestObserver, type SessionLimits } from './nbd-session.js';
import { ConnectionEnded, SocketReader } from './socket-reader.js';

export interface NbdServerOptions {
  path: string;
  mode: number;
  vmm: Vmm;
  svc: VmServices;
  mapped: PageMapped;
  /** The daemon's connection caps, shared with the native socket. */
  admissions: Admissions;
  handshakeTimeoutMs: number;
  limits: SessionLimits;
  log: Logger;
  observe: RequestObserver;
}

/**
 * Serves segments as NBD exports on a Unix socket (docs/nbd.md): each connection's peer
 * credentials decide what it may see and write, as on the native socket, under the same caps
 * and handshake timeout. A connection that breaks the protocol is closed; nothing else is touched.
 */
export class NbdServer {
  private readonly sockets = new Set<Socket>();

  private constructor(
    private readonly server: Server,
    private readonly o: NbdServerOptions,
  ) {}

  static async start(o: NbdServerOptions): Promise<NbdServer> {
    let self: NbdServer | undefined;
    const server = await listen(o.path, o.mode, (socket) => self?.accept(socket), { inherit: false });
    self = new NbdServer(server, o);
    server.on('error', (err) => o.log.warn({ err }, 'accepting an NBD connection failed'));
    return self;
  }

  /** NBD connections open now. */
  get connections(): number {
    return this.sockets.size;
  }

  /** Stops accepting and ends every connection (the daemon pages out what they wrote after). */
  stop(): void {
    this.server.close();
    for (const s of this.sockets) s.destroy();
  }

  private accept(socket: Socket): void {
    socket.on('error', () => undefined); // a peer gone mid-reply: 'close' follows
    let cred: { pid: number; uid: number; gid: number };
    try {
      cred = peerCred(socketFd(socket));
    } catch (err) {
      this.o.log.warn({ err }, 'could not read an NBD peer credentials; closing the connection');
      socket.destroy();
      return;
    }
    const log = this.o.log.child({ nbd: true, peer: { pid: cred.pid, uid: cred.uid } });
    const admission = this.o.admissions.admit(cred.uid);
    if (typeof admission === 'string') {
      log.warn({ why: admission }, 'refusing an NBD connection at a cap');
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    const ctx = this.o.svc.createContext(cred);
    const timer = setTimeout(() => {
      log.info({}, 'dropping an NBD client that did not finish its handshake in time');
      socket.destroy();
    }, this.o.handshakeTimeoutMs);
    socket.once('close', () => {
      clearTimeout(timer);
      admission.release();
      this.o.svc.endContext(ctx);
      this.sockets.delete(socket);
    });
    const { vmm, svc, mapped, limits } = this.o;
    const catalog: ExportCatalog = {
      find: (name) => NbdExport.find(vmm, svc, ctx, name, mapped),
      names: () => NbdExport.names(vmm, ctx),
      preferredBlock: vmm.pageSize,
      maxBlock: limits.maxRequestBytes,
    };
    const reader = new SocketReader(socket, limits.maxRequestBytes + 64 * 1024);
    void (async () => {
      try {
        const negotiated = await negotiate(socket, reader, catalog);
        clearTimeout(timer);
        admission.handshakeDone();
        if (negotiated === undefined) return;
        log.debug({ vmid: negotiated.export.vmid, structured: negotiated.structured }, 'NBD export opened');
        await new NbdSession(socket, reader, negotiated, limits, this.o.observe).run();
      } catch (err) {
        if (err instanceof HandshakeRefused || err instanceof RequestError) log.info({ why: err.message }, 'closing an NBD connection that broke the protocol');
        else if (!(err instanceof ConnectionEnded)) log.warn({ err }, 'an NBD connection failed');
      } finally {
        socket.end();
        setTimeout(() => socket.destroy(), 1000).unref();
      }
    })();
  }
}
