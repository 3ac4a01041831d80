/**
 * The server's TLS material (server.tls): read at start, and read again whenever one of its files changes, so that a
 * certificate renewed in place (cert-manager, a mounted Secret, a cron job with certbot) is served without a restart.
 * A restart would drop the audit webhook's connections and make the apiserver buffer or, past its buffer, drop events.
 */
import { readFileSync, statSync } from 'node:fs';
import type { Server as HttpsServer, ServerOptions as HttpsOptions } from 'node:https';
import { X509Certificate } from 'node:crypto';
import type { KauditConfig } from '../config/config.js';
import { ConfigError } from '../errors.js';
import { log } from '../log.js';
import type { Metrics } from '../metrics.js';

type TlsConfig = NonNullable<KauditConfig['server']['tls']>;

function readPem(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (e) {
    throw new ConfigError(`cannot read the TLS ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

/** What changes when a file is replaced: written in place, renamed over, or a Secret volume's symlinks swapped. */
function signature(files: string[]): string {
  return files
    .map((f) => {
      try {
        const s = statSync(f);
        return `${s.ino}:${s.size}:${s.mtimeMs}`;
      } catch (e) {
        return (e as NodeJS.ErrnoException).code ?? 'error';
      }
    })
    .join('|');
}

/** The certificate's expiry (of the first certificate in the file), or undefined when it cannot be parsed. */
function notAfter(pem: Buffer): Date | undefined {
  try {
    return new Date(new X509Certificate(pem).validTo);
  } catch {
    return undefined;
  }
}

export class TlsMaterial {
  private readonly files: string[];
  private seen: string;
  private expiry: Date | undefined;
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly t: TlsConfig,
    metrics?: Metrics,
  ) {
    this.files = [t.cert, t.key, ...(t.clientCA ? [t.clientCA] : [])];
    this.seen = signature(this.files);
    metrics?.collect('kaudit_tls_certificate_expiry_timestamp_seconds', 'When the served TLS certificate expires (Unix time)', () =>
      this.expiry ? [{ value: Math.floor(this.expiry.getTime() / 1000) }] : [],
    );
  }

  /** The HTTPS options at start. A client CA makes the server ask for certificates; requests check them (so probes need none). */
  options(): HttpsOptions {
    const o: HttpsOptions = { ...this.context(), minVersion: 'TLSv1.2' };
    if (this.t.clientCA) {
      o.requestCert = true;
      o.rejectUnauthorized = false;
    }
    return o;
  }

  private context(): { cert: Buffer; key: Buffer; ca?: Buffer } {
    const cert = readPem(this.t.cert, 'certificate');
    const key = readPem(this.t.key, 'key');
    this.expiry = notAfter(cert);
    return { cert, key, ...(this.t.clientCA ? { ca: readPem(this.t.clientCA, 'client CA') } : {}) };
  }

  /**
   * Checks the files every `intervalMs` and, when any changed, installs the new certificate, key and client CA on
   * `server` for new connections. A set that does not load (a key that does not match its certificate: a renewal
   * caught between writing the two files) is reported once and the previous one stays in force until the files change
   * again.
   */
  watch(server: HttpsServer, intervalMs = 3000): void {
    if (this.timer) return;
    this.timer = setInterval(() => {
      const now = signature(this.files);
      if (now === this.seen) return;
      this.seen = now;
      const before = this.expiry;
      try {
        const c = this.context();
        server.setSecureContext({ ...c, minVersion: 'TLSv1.2' });
        log.info(`TLS certificate ${this.t.cert} reloaded${this.expiry ? `: valid until ${this.expiry.toISOString()}` : ''}`);
      } catch (e) {
        this.expiry = before;
        log.error(
          `TLS files changed but were not loaded (the previous certificate stays in use until they change again): ${(e as Error).message.split('\n')[0]}`,
        );
      }
    }, intervalMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
