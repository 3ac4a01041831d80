/**
 * A real Apache Kafka broker for vitest: starts scripts/kafka/kafka.sh (KRaft, 127.0.0.1, free ports) and stops it.
 *
 *   const broker = await startBroker();            // ~5 s; the first run also fetches the jars (~10 s)
 *   new Kafka({ brokers: broker.brokers, ... })
 *   await broker.restart();                        // same ports, same data: clients reconnect
 *   await broker.stop();
 *
 * Where Java or Maven is missing, `describeWithKafka` skips its suite with a printed reason; with
 * KAUDIT_REQUIRE_KAFKA=1 (set by .ci/run) the same suite fails instead, so CI cannot pass without running it.
 */
import { execFile, spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, it } from 'vitest';

const SCRIPT = fileURLToPath(new URL('../../scripts/kafka/kafka.sh', import.meta.url));

export interface SecureListeners {
  /** SASL_PLAINTEXT listener: SCRAM-SHA-256 and SCRAM-SHA-512. */
  saslBrokers: string[];
  /** SASL_SSL listener: SCRAM over TLS with a self-signed certificate for 127.0.0.1. */
  saslSslBrokers: string[];
  username: string;
  password: string;
  /** PEM file of the broker's self-signed certificate, to trust as a CA. */
  caFile: string;
  /** SASL PLAIN on the SASL_SSL listener, as Azure Event Hubs takes it (user `$ConnectionString`). */
  plainUsername: string;
  plainPassword: string;
}

export interface Broker {
  /** PLAINTEXT bootstrap addresses (`127.0.0.1:port`). */
  brokers: string[];
  /** The Apache Kafka version running. */
  version: string;
  /** The broker's directory: server.properties, data/, broker.log. */
  dir: string;
  /** Present when started with `{ secure: true }`. */
  secure?: SecureListeners;
  /**
   * Present when started with `{ proxyPort }`: the address of a listener that advertises 127.0.0.1:proxyPort, where a
   * test's proxy (on proxyPort) forwards. Clients that bootstrap through the proxy keep talking through it.
   */
  proxiedTarget?: string;
  /** Stops the broker and removes its directory. */
  stop(): Promise<void>;
  /**
   * Stops the broker (SIGTERM, a clean shutdown; or SIGKILL with `hard`), waits `downMs`, then starts it again on the
   * same ports with the same data.
   */
  restart(opts?: { hard?: boolean; downMs?: number }): Promise<void>;
  /** Stops the broker but keeps its data, for a later `start()` (a mid-stream outage of any length). */
  halt(opts?: { hard?: boolean }): Promise<void>;
  /** Starts a halted broker again. */
  start(): Promise<void>;
}

export type KafkaAvailability = { ok: true } | { ok: false; reason: string; /** Not a missing tool: fail, never skip. */ broken?: boolean };

let availability: KafkaAvailability | undefined;

/**
 * Whether this machine can run a broker (Java 17+, and Maven unless the jars are cached). Checked once. Only the
 * script's "missing tool" answer (exit 3) may lead to a skip; any other failure of the check is reported as a failure.
 */
export function kafkaAvailability(): KafkaAvailability {
  if (!availability) {
    let r = spawnSync('bash', [SCRIPT, 'check'], { encoding: 'utf8' });
    if (r.status !== 0 && r.status !== 3) r = spawnSync('bash', [SCRIPT, 'check'], { encoding: 'utf8' }); // once more
    const reason = (r.stderr || r.error?.message || '').trim() || `kafka.sh check exited ${r.status ?? r.signal}`;
    availability = r.status === 0 ? { ok: true } : { ok: false, reason, broken: r.status !== 3 };
  }
  return availability;
}

export const kafkaRequired = process.env.KAUDIT_REQUIRE_KAFKA === '1';

/**
 * `describe` for suites that need a broker: runs them where one can be started, skips them with a printed reason
 * where not, and fails where not but KAUDIT_REQUIRE_KAFKA=1.
 */
export function describeWithKafka(name: string, fn: () => void): void {
  const a = kafkaAvailability();
  if (a.ok) {
    describe(name, fn);
  } else if (kafkaRequired || a.broken) {
    describe(name, () => {
      it('needs a Kafka broker', () => {
        throw new Error(a.broken ? `checking for Java and Maven failed: ${a.reason}` : `KAUDIT_REQUIRE_KAFKA=1 but no broker can run here: ${a.reason}`);
      });
    });
  } else {
    process.stderr.write(`skipping Kafka tests "${name}": ${a.reason}\n`);
    describe.skip(name, fn);
  }
}

function run(args: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('bash', [SCRIPT, ...args], { encoding: 'utf8', maxBuffer: 1 << 20 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`kafka.sh ${args[0]} failed: ${stderr.trim() || err.message}`));
      else resolve(stdout);
    });
  });
}

function parse(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split('\n')) {
    const eq = line.indexOf('=');
    if (line.startsWith('KAFKA_') && eq > 0) out[line.slice(0, eq)] = line.slice(eq + 1);
  }
  return out;
}

/** Starts a fresh single-node broker with its own directory and ports. */
export async function startBroker(opts: { secure?: boolean; proxyPort?: number } = {}): Promise<Broker> {
  const a = kafkaAvailability();
  if (!a.ok) throw new Error(`cannot start a Kafka broker: ${a.reason}`);
  const startArgs = ['start', '--watch-pid', String(process.pid)];
  if (opts.secure) startArgs.push('--secure');
  if (opts.proxyPort !== undefined) startArgs.push('--proxy-port', String(opts.proxyPort));
  let env: Record<string, string>;
  for (let attempt = 1; ; attempt++) {
    try {
      env = parse(await run(startArgs));
      break;
    } catch (e) {
      // Free ports are chosen before the broker binds them: another test's broker may take one in between.
      if (attempt >= 3 || !/port in use/.test((e as Error).message)) throw e;
    }
  }
  const dir = env.KAFKA_DIR!;
  let running = true;

  const halt = async ({ hard = false }: { hard?: boolean } = {}) => {
    if (!running) return;
    if (hard) {
      // SIGKILL: the broker gets no chance to flush or to tell the controller; kafka.sh stop then finds it gone.
      try {
        process.kill(Number(env.KAFKA_PID), 'SIGKILL');
      } catch {
        /* already gone */
      }
    }
    await run(['stop', '--dir', dir, '--keep']);
    running = false;
  };
  const start = async () => {
    if (running) return;
    const again = parse(await run(['start', '--dir', dir, '--watch-pid', String(process.pid)]));
    env.KAFKA_PID = again.KAFKA_PID!;
    running = true;
  };

  return {
    brokers: [env.KAFKA_BROKERS!],
    version: env.KAFKA_VERSION!,
    dir,
    secure: env.KAFKA_SASL_BROKERS
      ? {
          saslBrokers: [env.KAFKA_SASL_BROKERS],
          saslSslBrokers: [env.KAFKA_SASL_SSL_BROKERS!],
          username: env.KAFKA_SCRAM_USER!,
          password: env.KAFKA_SCRAM_PASSWORD!,
          caFile: env.KAFKA_CA!,
          plainUsername: env.KAFKA_PLAIN_USER!,
          plainPassword: env.KAFKA_PLAIN_PASSWORD!,
        }
      : undefined,
    proxiedTarget: env.KAFKA_PROXIED_TARGET,
    halt,
    start,
    async restart({ hard = false, downMs = 0 } = {}) {
      await halt({ hard });
      if (downMs > 0) await new Promise((r) => setTimeout(r, downMs));
      await start();
    },
    async stop() {
      await run(['stop', '--dir', dir]);
      running = false;
    },
  };
}
