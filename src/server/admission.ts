/** The caps a new connection is admitted under. */
export interface AdmissionLimits {
  /** Connections open at once, in all. */
  maxConnections: number;
  /** Connections one uid may have open at once. */
  maxConnectionsPerUid: number;
  /** Connections one uid may have between accept and a finished handshake. */
  maxHandshakesPerUid: number;
}

/** One admitted connection's place: the handshake ended (either way), and the connection closed. */
export interface Admission {
  handshakeDone(): void;
  release(): void;
}

/**
 * Who may connect: connections are counted per uid (from SO_PEERCRED), so one uid's half-open or
 * idle connections use up its own share and nobody else's. A connection past a cap is refused
 * with a reason, not dropped in silence.
 */
export class Admissions {
  private total = 0;
  private readonly open = new Map<number, number>();
  private readonly handshaking = new Map<number, number>();
  /** Connections refused at a cap, ever (a metric). */
  refused = 0;

  constructor(private readonly limits: AdmissionLimits) {}

  /** Admits a connection of `uid`, or answers why not. */
  admit(uid: number): Admission | string {
    const why = this.refusal(uid);
    if (why !== undefined) {
      this.refused++;
      return why;
    }
    return this.admitted(uid);
  }

  private refusal(uid: number): string | undefined {
    const open = this.open.get(uid) ?? 0;
    const handshaking = this.handshaking.get(uid) ?? 0;
    if (this.total >= this.limits.maxConnections) return `the daemon has ${this.total} connections (server.maxConnections)`;
    if (open >= this.limits.maxConnectionsPerUid) return `uid ${uid} has ${open} connections (server.maxConnectionsPerUid)`;
    if (handshaking >= this.limits.maxHandshakesPerUid) return `uid ${uid} has ${handshaking} connections still in their handshake (server.maxHandshakesPerUid)`;
    return undefined;
  }

  private admitted(uid: number): Admission {
    this.total++;
    bump(this.open, uid, 1);
    bump(this.handshaking, uid, 1);
    let inHandshake = true;
    let released = false;
    const handshakeDone = (): void => {
      if (!inHandshake) return;
      inHandshake = false;
      bump(this.handshaking, uid, -1);
    };
    return {
      handshakeDone,
      release: () => {
        if (released) return;
        released = true;
        handshakeDone();
        this.total--;
        bump(this.open, uid, -1);
      },
    };
  }

  get connections(): number {
    return this.total;
  }
}

function bump(counts: Map<number, number>, uid: number, by: number): void {
  const n = (counts.get(uid) ?? 0) + by;
  if (n === 0) counts.delete(uid);
  else counts.set(uid, n);
}
