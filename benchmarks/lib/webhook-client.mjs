// What the webhook benchmarks (webhook.mjs, serve-soak.mjs) share: a throwaway CA and server certificate for TLS on
// 127.0.0.1, apiserver-shaped EventList bodies with fresh audit ids and moving event time, and one POST/GET helper
// over a keep-alive agent.
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { eventStream } from './generate.mjs';

/**
 * Writes ca.crt, server.crt (for IP 127.0.0.1), server.key and a tokens file (`tokens`, one `TOKEN ROLE NAME` line
 * each) into `dir`; returns their paths and the CA's PEM for the clients.
 */
export function makeTls(dir, tokens) {
  const o = (args) => execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
  o(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca.key']);
  o(['req', '-x509', '-new', '-key', 'ca.key', '-sha256', '-days', '1', '-subj', '/CN=bench-ca', '-out', 'ca.crt']);
  o(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'server.key']);
  o(['req', '-new', '-key', 'server.key', '-subj', '/CN=kaudit', '-out', 'server.csr']);
  writeFileSync(join(dir, 'ext'), 'subjectAltName=IP:127.0.0.1\n');
  o(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1', '-extfile', 'ext', '-out', 'server.crt']);
  writeFileSync(join(dir, 'tokens'), tokens.map((t) => t.join(' ') + '\n').join(''), { mode: 0o600 });
  return { ca: readFileSync(join(dir, 'ca.crt')), cert: join(dir, 'server.crt'), key: join(dir, 'server.key'), tokens: join(dir, 'tokens') };
}

/**
 * Bodies as a kube-apiserver sends them: EventLists of `batch` generated events whose items lack kind/apiVersion.
 * Sixteen templates are made once; per body, each event's audit id (its last 12 hex digits) and
 * requestReceivedTimestamp are overwritten in place, so every event is new and event time moves forward 20 µs an event
 * (the store's key is time-led), at the cost of one buffer copy per body.
 */
export function apiserverBodies({ seed, people, batch = 400 }) {
  const next = eventStream({ seed, rate: 50, people });
  const templates = Array.from({ length: 16 }, () => {
    const items = [];
    for (let i = 0; i < batch; i++) {
      const e = next();
      delete e.kind;
      delete e.apiVersion;
      e.auditID = e.auditID.slice(0, 24) + '000000000000';
      items.push(e);
    }
    const buf = Buffer.from(JSON.stringify({ kind: 'EventList', apiVersion: 'audit.k8s.io/v1', metadata: {}, items }));
    const ids = [];
    const times = [];
    for (let i = 0; (i = buf.indexOf('"auditID":"', i)) >= 0; i += 11) ids.push(i + 11 + 24);
    for (let i = 0; (i = buf.indexOf('"requestReceivedTimestamp":"', i)) >= 0; i += 28) times.push(i + 28);
    if (ids.length !== batch || times.length !== batch) throw new Error('template: unexpected event layout');
    return { buf, ids, times };
  });
  let seq = 1;
  let clockUs = Date.now() * 1000;
  let secPrefix = '';
  let secOf = -1;
  return {
    batch,
    avgBytes: templates.reduce((n, t) => n + t.buf.length, 0) / templates.length,
    next() {
      const t = templates[seq % templates.length];
      const b = Buffer.from(t.buf);
      for (let i = 0; i < batch; i++) {
        b.write((seq++).toString(16).padStart(12, '0'), t.ids[i], 'latin1');
        clockUs += 20;
        const sec = Math.floor(clockUs / 1e6);
        if (sec !== secOf) {
          secOf = sec;
          secPrefix = new Date(sec * 1000).toISOString().slice(0, 20);
        }
        b.write(secPrefix + String(clockUs % 1e6).padStart(6, '0') + 'Z', t.times[i], 'latin1');
      }
      return b;
    },
  };
}

/**
 * A request helper on `base` (http: or https:): `send(path, body?, agent?)` POSTs a JSON body (GET without one) with
 * the bearer token when one is given, and resolves with the status, the milliseconds to the whole reply, and the
 * reply parsed as JSON (or an error message; it never rejects).
 */
export function client({ base, agent, token }) {
  const doRequest = base.startsWith('https:') ? httpsRequest : httpRequest;
  return function send(path, body, via = agent) {
    return new Promise((resolve) => {
      const t0 = performance.now();
      const headers = body ? { 'content-type': 'application/json', 'content-length': body.length } : {};
      if (token) headers.authorization = `Bearer ${token}`;
      const req = doRequest(`${base}${path}`, { method: body ? 'POST' : 'GET', agent: via, headers }, (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString();
          let j;
          try {
            j = JSON.parse(text);
          } catch {
            j = undefined;
          }
          resolve({ status: res.statusCode, ms: performance.now() - t0, body: j, ...(j === undefined ? { text } : {}) });
        });
      });
      req.on('error', (e) => resolve({ status: 0, ms: performance.now() - t0, error: e.message }));
      req.end(body);
    });
  };
}
