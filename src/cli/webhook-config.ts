import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { stringify } from 'yaml';
import { isLoopback } from '../config/config.js';
import { parse, UsageError } from './common.js';

export const WEBHOOK_CONFIG_HELP = `Usage: kaudit webhook-config --server URL [--token-file F | --client-cert F --client-key F] [--ca-file F] [options]

Writes the kubeconfig to give kube-apiserver's --audit-webhook-config-file, so it sends its audit events to kaudit.

  --server URL        kaudit's address, e.g. https://kaudit.example.com:8443; when it has no path, the webhook path
                      /api/v1/audit/webhook (plus /CLUSTER with --cluster) is appended
  --cluster NAME      append /NAME to the path: the events' cluster, unless the credential is bound to one
  --token-file F      file holding the bearer token (its first word; a kaudit tokens-file line works too)
  --client-cert F     client certificate (PEM) for kaudit's server.tls.clientCA; needs --client-key
  --client-key F      its private key (PEM)
  --ca-file F         CA that signed kaudit's server certificate (PEM)
  --output F          write here (mode 0600) instead of standard output
  --no-embed          refer to the certificate files by path instead of embedding them (the token is always embedded)

Then on each control-plane node give kube-apiserver (see README, "Webhook set-up"):
  --audit-policy-file=/etc/kubernetes/audit-policy.yaml
  --audit-webhook-config-file=/etc/kubernetes/kaudit-webhook.kubeconfig
  --audit-webhook-mode=batch
`;

/** Reads a bearer token from a file: the first word of its first non-comment line. Never prints it. */
export function readTokenFile(file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw new UsageError(`cannot read token file ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  for (const raw of text.split(/\r?\n/)) {
    const line = raw.replace(/(^|\s)#.*$/, '').trim();
    if (!line) continue;
    const token = line.split(/\s+/)[0]!;
    if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`token file ${file}: the token has characters outside printable ASCII`);
    return token;
  }
  throw new UsageError(`token file ${file} holds no token`);
}

function readPem(file: string, what: string): Buffer {
  try {
    const b = readFileSync(file);
    if (!b.toString('latin1').includes('-----BEGIN ')) throw new UsageError(`${what} ${file} is not PEM (no -----BEGIN line)`);
    return b;
  } catch (e) {
    if (e instanceof UsageError) throw e;
    throw new UsageError(`cannot read ${what} ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
}

export interface WebhookKubeconfigInput {
  server: string;
  cluster?: string;
  token?: string;
  clientCert?: { cert: string; key: string };
  caFile?: string;
  embed: boolean;
}

/** The webhook URL the apiserver POSTs to: exactly the kubeconfig's server. */
export function webhookUrl(server: string, cluster?: string): URL {
  let u: URL;
  try {
    u = new URL(server);
  } catch {
    throw new UsageError(`--server "${server}" is not a URL (e.g. https://kaudit.example.com:8443)`);
  }
  if (u.protocol !== 'https:' && u.protocol !== 'http:') throw new UsageError(`--server must be https:// (or http:// on loopback), not ${u.protocol}`);
  if (u.search || u.hash) throw new UsageError('--server must not have a query or fragment');
  if (cluster !== undefined && !/^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/.test(cluster))
    throw new UsageError(`bad --cluster "${cluster}" (letters, digits, . _ -; at most 63)`);
  if (u.pathname === '' || u.pathname === '/') u.pathname = '/api/v1/audit/webhook';
  if (cluster !== undefined) u.pathname = u.pathname.replace(/\/+$/, '') + '/' + cluster;
  return u;
}

/** The kubeconfig document (an object, for YAML). */
export function webhookKubeconfig(i: WebhookKubeconfigInput): Record<string, unknown> {
  const url = webhookUrl(i.server, i.cluster);
  const cluster: Record<string, unknown> = { server: url.toString() };
  if (i.caFile) {
    if (i.embed) cluster['certificate-authority-data'] = readPem(i.caFile, 'CA file').toString('base64');
    else cluster['certificate-authority'] = resolve(i.caFile);
  }
  const user: Record<string, unknown> = {};
  if (i.token) user.token = i.token;
  if (i.clientCert) {
    if (i.embed) {
      user['client-certificate-data'] = readPem(i.clientCert.cert, 'client certificate').toString('base64');
      user['client-key-data'] = readPem(i.clientCert.key, 'client key').toString('base64');
    } else {
      readPem(i.clientCert.cert, 'client certificate');
      readPem(i.clientCert.key, 'client key');
      user['client-certificate'] = resolve(i.clientCert.cert);
      user['client-key'] = resolve(i.clientCert.key);
    }
  }
  return {
    apiVersion: 'v1',
    kind: 'Config',
    preferences: {},
    clusters: [{ name: 'kaudit', cluster }],
    users: [{ name: 'kube-apiserver', user }],
    contexts: [{ name: 'kaudit', context: { cluster: 'kaudit', user: 'kube-apiserver' } }],
    'current-context': 'kaudit',
  };
}

export async function runWebhookConfig(argv: string[]): Promise<number> {
  const { values } = parse(
    argv,
    {
      server: { type: 'string' },
      cluster: { type: 'string' },
      'token-file': { type: 'string' },
      'client-cert': { type: 'string' },
      'client-key': { type: 'string' },
      'ca-file': { type: 'string' },
      output: { type: 'string', short: 'o' },
      'no-embed': { type: 'boolean' },
      help: { type: 'boolean', short: 'h' },
    },
    false,
  );
  if (values.help) {
    process.stdout.write(WEBHOOK_CONFIG_HELP);
    return 0;
  }
  if (!values.server) throw new UsageError('--server URL is required');
  if (!!values['client-cert'] !== !!values['client-key']) throw new UsageError('--client-cert and --client-key go together');
  const url = webhookUrl(values.server, values.cluster);
  const host = url.hostname.replace(/^\[|\]$/g, '');
  if (url.protocol === 'http:' && !isLoopback(host)) {
    process.stderr.write(
      `kaudit webhook-config: warning: ${url.origin} is plain HTTP to a non-loopback host: audit events and the credential would cross the network unencrypted, and kaudit refuses such a listen address without TLS\n`,
    );
  }
  if (!values['token-file'] && !values['client-cert']) {
    process.stderr.write(
      'kaudit webhook-config: warning: no credential (--token-file or --client-cert): only a kaudit listening on loopback without a tokens file will accept this\n',
    );
  }
  const doc = webhookKubeconfig({
    server: values.server,
    cluster: values.cluster,
    token: values['token-file'] ? readTokenFile(values['token-file']) : undefined,
    clientCert: values['client-cert'] ? { cert: values['client-cert'], key: values['client-key']! } : undefined,
    caFile: values['ca-file'],
    embed: !values['no-embed'],
  });
  const text = `# kube-apiserver --audit-webhook-config-file for kaudit (written by kaudit webhook-config)\n${stringify(doc, { lineWidth: 0 })}`;
  if (values.output) {
    writeFileSync(values.output, text, { mode: 0o600 });
    chmodSync(values.output, 0o600); // the mode above applies only to a new file; the token must not be readable by others
    process.stderr.write(`wrote ${values.output} (webhook ${url.toString()}); give it to kube-apiserver with --audit-webhook-config-file\n`);
  } else process.stdout.write(text);
  return 0;
}
