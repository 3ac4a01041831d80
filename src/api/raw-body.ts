import { createGunzip } from 'node:zlib';
import type { FastifyInstance } from 'fastify';

/** A request body refused while read: status and a message safe to send. */
export class BodyError extends Error {
  constructor(
    readonly statusCode: number,
    message: string,
  ) {
    super(message);
    this.name = 'BodyError';
  }
}

/**
 * Makes the plugin's routes receive their body as one Buffer, read up to `limit` bytes (after gunzip when the sender
 * set `Content-Encoding: gzip`, as Firehose, Fluent Bit and Vector may), whatever the Content-Type. For the endpoints
 * whose bodies are cloud envelopes: small documents whose records are decoded one by one in the pipeline.
 */
export function rawBodies(app: FastifyInstance, limit: number): void {
  app.removeAllContentTypeParsers();
  app.addContentTypeParser('*', { bodyLimit: limit }, (req, payload, done) => {
    const enc = String(req.headers['content-encoding'] ?? 'identity').toLowerCase();
    let stream: NodeJS.ReadableStream = payload;
    if (enc === 'gzip') {
      const gz = createGunzip();
      payload.on('error', (e) => gz.destroy(e));
      stream = payload.pipe(gz);
    } else if (enc !== 'identity') {
      done(new BodyError(415, `unsupported Content-Encoding "${enc}": send identity or gzip`), undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let n = 0;
    let settled = false;
    const finish = (e: Error | null, b?: Buffer) => {
      if (settled) return;
      settled = true;
      done(e, b);
    };
    stream.on('data', (c: Buffer) => {
      n += c.length;
      if (n > limit) {
        finish(new BodyError(413, `request body over ${limit} bytes${enc === 'gzip' ? ' once decompressed' : ''}`));
        payload.pause();
        return;
      }
      chunks.push(c);
    });
    stream.on('end', () => finish(null, Buffer.concat(chunks, n)));
    stream.on('error', (e: Error) =>
      finish(new BodyError(400, enc === 'gzip' ? `request body is not valid gzip (${e.message})` : `request body could not be read: ${e.message}`)),
    );
  });
}
