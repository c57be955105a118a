import { createServer, request, type Server } from 'node:http';

/**
 * An HTTP proxy on 127.0.0.1 that gives an S3-compatible server which ignores
 * `If-None-Match: *` (fauxqs) the behaviour of AWS S3, R2 and MinIO: a PUT, or a
 * CompleteMultipartUpload, carrying it gets 412 PreconditionFailed when the key exists.
 * Check-then-forward is not atomic; tests do not race through it.
 */
export class ConditionalWriteProxy {
  private server: Server;
  port = 0;
  refused = 0;

  constructor(private readonly targetPort: number) {
    this.server = createServer((req, res) => {
      const url = new URL(req.url ?? '/', 'http://x');
      const conditional =
        req.headers['if-none-match'] === '*' &&
        (req.method === 'PUT' || (req.method === 'POST' && url.searchParams.has('uploadId')));
      const forward = () => {
        const up = request(
          {
            host: '127.0.0.1',
            port: this.targetPort,
            method: req.method,
            path: req.url,
            headers: req.headers,
          },
          (r) => {
            res.writeHead(r.statusCode ?? 502, r.headers);
            r.pipe(res);
          },
        );
        up.on('error', () => res.destroy());
        req.pipe(up);
      };
      if (!conditional) return forward();
      const head = request(
        {
          host: '127.0.0.1',
          port: this.targetPort,
          method: 'HEAD',
          path: url.pathname,
          headers: { host: req.headers.host },
        },
        (r) => {
          r.resume();
          if (r.statusCode !== 200) return forward();
          this.refused++;
          req.resume();
          const body =
            '<?xml version="1.0" encoding="UTF-8"?><Error><Code>PreconditionFailed</Code>' +
            '<Message>At least one of the pre-conditions you specified did not hold</Message></Error>';
          res.writeHead(412, { 'content-type': 'application/xml', 'content-length': body.length });
          res.end(body);
        },
      );
      head.on('error', () => res.destroy());
      head.end();
    });
  }

  get endpoint(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    const a = this.server.address();
    if (!a || typeof a === 'string') throw new Error('conditional proxy: no TCP address');
    this.port = a.port;
    return this;
  }

  close(): Promise<void> {
    this.server.closeAllConnections();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}
