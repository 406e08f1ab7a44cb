/**
 * The signaling connection (docs/protocol.md, section 5): requests with ids answered by
 * responses, and events in order. A refused request rejects with the server's error
 * body (`{code, name, message}`); a connection that closes rejects what is pending.
 */

export interface ErrorBody {
  code: number;
  name: string;
  message: string;
}

/** A request the server refused, or the connection gone before it answered. */
export class SignalError extends Error {
  constructor(readonly body: ErrorBody) {
    super(body.message);
  }
}

// Server frames are JSON objects; their fields are read where they are used.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Frame = Record<string, any>;

export class Signal {
  private readonly ws: WebSocket;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (r: Frame) => void; reject: (e: SignalError) => void }>();
  /** The `seq` of the last event handled, for a resume. */
  lastSeq = 0;
  onEvent: (event: Frame) => void = () => {};
  /** The connection closed (not by `close()`). */
  onClose: () => void = () => {};
  private closedByUs = false;

  private constructor(url: string) {
    this.ws = new WebSocket(url);
    this.ws.onmessage = (m) => this.onFrame(m.data);
    this.ws.onclose = () => {
      const gone = { code: 0, name: "connection_lost", message: "the connection to the server closed" };
      for (const p of this.pending.values()) p.reject(new SignalError(gone));
      this.pending.clear();
      if (!this.closedByUs) this.onClose();
    };
  }

  /** Opens the connection to `url` (`wss://…/v1/signal`). */
  static open(url: string): Promise<Signal> {
    const signal = new Signal(url);
    return new Promise((resolve, reject) => {
      signal.ws.onopen = () => resolve(signal);
      signal.ws.onerror = () => reject(new SignalError({ code: 0, name: "server_unreachable", message: `cannot reach ${url}` }));
    });
  }

  request(request: Frame): Promise<Frame> {
    const id = this.nextId++;
    if (this.ws.readyState !== WebSocket.OPEN) {
      return Promise.reject(new SignalError({ code: 0, name: "connection_lost", message: "not connected to the server" }));
    }
    this.ws.send(JSON.stringify({ id, request }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }

  close(): void {
    this.closedByUs = true;
    this.ws.close();
  }

  private onFrame(data: unknown): void {
    if (typeof data !== "string") return;
    let frame: Frame;
    try {
      frame = JSON.parse(data);
    } catch {
      console.warn("signaling: a frame that is not JSON");
      return;
    }
    if (frame.type === "response") {
      const waiter = this.pending.get(frame.id);
      this.pending.delete(frame.id);
      if (!waiter) return;
      if (frame.error) waiter.reject(new SignalError(frame.error));
      else waiter.resolve(frame.result);
    } else if (frame.type === "event") {
      if (typeof frame.seq === "number") this.lastSeq = frame.seq;
      this.onEvent(frame);
    }
  }
}
