import { connect, createServer, type Server, type Socket } from 'node:net';
import { rng } from './adapter-fixtures.ts';

/**
 * What can go wrong with one HTTP request on the way to the server:
 * - reset: the connection drops before the request reaches the server;
 * - reset-after-request: the server handles the request, the answer is lost (a retried write
 *   then meets its own earlier effect);
 * - stall: nothing more moves either way (only the client's deadline ends it);
 * - http-503: a synthetic 503 SlowDown-style answer, request not forwarded;
 * - truncate-response: half of the answer's first chunk arrives, then the connection drops.
 */
export type Fault = 'reset' | 'reset-after-request' | 'stall' | 'http-503' | 'truncate-response';
export const ALL_FAULTS: Fault[] = ['reset', 'reset-after-request', 'stall', 'http-503', 'truncate-response'];

export interface FaultProxyOptions {
  targetPort: number;
  /** Share of requests that get a fault, 0..1. */
  rate: number;
  faults: Fault[];
  seed: number;
  /** Overrides the dice: return a fault for this request line (`PUT /bucket/key HTTP/1.1`), or undefined. */
  rule?: (requestLine: string) => Fault | 'pass' | undefined;
}

const REQUEST_LINE = /^([A-Z]+) (\S+) HTTP\/1\.[01]\r\n/;

/**
 * A TCP proxy on 127.0.0.1 in front of a real server. It spots the start of each HTTP/1.1
 * request (a chunk from the client that begins with a request line; the SDK does not pipeline)
 * and rolls for a fault; everything else is piped byte for byte.
 */
export class FaultProxy {
  readonly stats = { requests: 0, faulted: 0, byFault: {} as Record<Fault, number>, lines: [] as string[] };
  private server: Server;
  private dice: () => number;
  private sockets = new Set<Socket>();
  port = 0;

  constructor(private opts: FaultProxyOptions) {
    this.dice = rng(opts.seed);
    this.server = createServer((client) => this.handle(client));
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  set(opts: Partial<FaultProxyOptions>): void {
    this.opts = { ...this.opts, ...opts };
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    if (!a || typeof a === 'string') throw new Error('fault proxy: no TCP address');
    this.port = a.port;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private pick(line: string): Fault | undefined {
    const ruled = this.opts.rule?.(line);
    if (ruled === 'pass') return undefined;
    if (ruled) return ruled;
    if (this.dice() >= this.opts.rate || this.opts.faults.length === 0) return undefined;
    return this.opts.faults[Math.floor(this.dice() * this.opts.faults.length)];
  }

  private handle(client: Socket): void {
    const upstream = connect(this.opts.targetPort, '127.0.0.1');
    this.sockets.add(client).add(upstream);
    let mode: Fault | 'pass' = 'pass';
    let answered = false;
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('close', () => {
      upstream.destroy();
      this.sockets.delete(client);
    });
    upstream.on('close', () => {
      client.destroy();
      this.sockets.delete(upstream);
    });
    client.on('error', kill);
    upstream.on('error', kill);

    client.on('data', (chunk) => {
      const m = REQUEST_LINE.exec(chunk.subarray(0, 2048).toString('latin1'));
      if (m) {
        const line = `${m[1]} ${m[2]}`;
        this.stats.requests++;
        this.stats.lines.push(line);
        const fault = this.pick(line);
        mode = fault ?? 'pass';
        answered = false;
        if (fault) {
          this.stats.faulted++;
          this.stats.byFault[fault] = (this.stats.byFault[fault] ?? 0) + 1;
        }
        if (fault === 'reset') return kill();
        if (fault === 'http-503') {
          const body = '<Error><Code>SlowDown</Code><Message>injected by FaultProxy</Message></Error>';
          client.end(
            `HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`,
          );
          upstream.destroy();
          return;
        }
      }
      if (mode === 'stall' || mode === 'http-503') return;
      upstream.write(chunk);
    });

    upstream.on('data', (chunk) => {
      if (mode === 'stall') return;
      if (mode === 'reset-after-request') return kill();
      if (mode === 'truncate-response' && !answered) {
        answered = true;
        client.write(chunk.subarray(0, Math.max(1, chunk.byteLength >> 1)), () => kill());
        return;
      }
      if (mode === 'truncate-response') return;
      client.write(chunk);
    });
  }
}
