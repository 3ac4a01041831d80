import { useEffect, useState } from 'preact/hooks';
import { api } from '../lib/api.js';
import { ago, fmtBytes, fmtTime } from '../lib/format.js';

/** Sources and their lag, the store's size, span and retention, and dead letters with their reasons. */

interface Sample {
  name: string;
  labels: Record<string, string>;
  value: number;
}
interface Status {
  ready: boolean;
  problem?: string;
  startedAt: string;
  store: { bytes: number; oldestEvent?: string; newestEvent?: string; alerts: number; deadLetters: number; retention: { maxAge?: string; maxSize?: string } };
  positions: { source: string; updated: string }[];
  tails: { path: string; lagBytes: number }[];
  webhook: Sample[];
  kafka: Sample[];
  ingest: Sample[];
  feed: { clients: number };
  deadLetters: { id: number; received: string; source: string; position: string; reason: string; size: number }[];
}

const labels = (l: Record<string, string>) =>
  Object.entries(l)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');

function Samples(props: { title: string; samples: Sample[]; empty: string }) {
  return (
    <section class="card">
      <h3>{props.title}</h3>
      {props.samples.length === 0 ? (
        <p class="muted">{props.empty}</p>
      ) : (
        <table>
          <tbody>
            {props.samples.map((s) => (
              <tr>
                <th scope="row">
                  {s.name.replace(/^kaudit_/, '')} <span class="muted">{labels(s.labels)}</span>
                </th>
                <td class="num">{s.value.toLocaleString('en')}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </section>
  );
}

export function StatusPage() {
  const [s, setS] = useState<Status>();
  const [error, setError] = useState('');
  useEffect(() => {
    let gone = false;
    const load = () =>
      api<Status>('/status')
        .then((r) => !gone && (setS(r), setError('')))
        .catch((e: Error) => !gone && setError(e.message));
    void load();
    const t = setInterval(load, 5000);
    return () => {
      gone = true;
      clearInterval(t);
    };
  }, []);
  if (!s)
    return error ? (
      <p class="error" role="alert">
        {error}
      </p>
    ) : (
      <p class="muted">Loading…</p>
    );
  const lag = s.kafka.filter((k) => k.name === 'kaudit_kafka_consumer_lag');
  return (
    <section class="status">
      {error && (
        <p class="error" role="alert">
          {error} (showing the last answer)
        </p>
      )}
      <div class="cards">
        <section class="card">
          <h3>Node</h3>
          <p>
            <span class={s.ready ? 'ok' : 'bad'}>{s.ready ? 'ready' : 'not ready'}</span>
            {s.problem ? ` — ${s.problem}` : ''}
          </p>
          <p class="small">
            Started {fmtTime(s.startedAt)} · {s.feed.clients} live feed clients
          </p>
        </section>
        <section class="card">
          <h3>Store</h3>
          <dl class="facts">
            <dt>Size</dt>
            <dd>{fmtBytes(s.store.bytes)}</dd>
            <dt>Events from</dt>
            <dd>{fmtTime(s.store.oldestEvent) || '—'}</dd>
            <dt>to</dt>
            <dd>
              {fmtTime(s.store.newestEvent) || '—'} {s.store.newestEvent ? `(${ago(s.store.newestEvent)})` : ''}
            </dd>
            <dt>Alerts</dt>
            <dd>{s.store.alerts.toLocaleString('en')}</dd>
            <dt>Retention</dt>
            <dd>
              {s.store.retention.maxAge || s.store.retention.maxSize
                ? [s.store.retention.maxAge && `age ${s.store.retention.maxAge}`, s.store.retention.maxSize && `size ${s.store.retention.maxSize}`]
                    .filter(Boolean)
                    .join(', ')
                : 'none (kept for ever)'}
            </dd>
          </dl>
        </section>
      </div>
      <div class="cards">
        <section class="card">
          <h3>Tails</h3>
          {s.tails.length === 0 ? (
            <p class="muted">No tailed files.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th>File</th>
                  <th>Lag</th>
                </tr>
              </thead>
              <tbody>
                {s.tails.map((t) => (
                  <tr>
                    <td>{t.path}</td>
                    <td class="num">{fmtBytes(t.lagBytes)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section class="card">
          <h3>Kafka partitions</h3>
          {lag.length === 0 ? (
            <p class="muted">No Kafka consumer.</p>
          ) : (
            <table>
              <thead>
                <tr>
                  <th>Topic/partition</th>
                  <th>Lag (messages)</th>
                </tr>
              </thead>
              <tbody>
                {lag.map((k) => (
                  <tr>
                    <td>
                      {k.labels.topic}/{k.labels.partition}
                    </td>
                    <td class="num">{k.value.toLocaleString('en')}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
        <section class="card">
          <h3>Source positions</h3>
          {s.positions.length === 0 ? (
            <p class="muted">No source has committed a position.</p>
          ) : (
            <table>
              <tbody>
                {s.positions.map((p) => (
                  <tr>
                    <td>{p.source}</td>
                    <td>{ago(p.updated)}</td>
                  </tr>
                ))}
              </tbody>
            </table>
          )}
        </section>
      </div>
      <div class="cards">
        <Samples title="Webhook" samples={s.webhook} empty="No webhook traffic yet." />
        <Samples title="Ingest" samples={s.ingest} empty="Nothing ingested yet." />
      </div>
      <section class="card">
        <h3>Dead letters ({s.store.deadLetters.toLocaleString('en')})</h3>
        {s.deadLetters.length === 0 ? (
          <p class="muted">No record was rejected.</p>
        ) : (
          <table class="dead">
            <thead>
              <tr>
                <th>Received</th>
                <th>Source</th>
                <th>Position</th>
                <th>Reason</th>
                <th>Bytes</th>
              </tr>
            </thead>
            <tbody>
              {s.deadLetters.map((d) => (
                <tr>
                  <td>{fmtTime(d.received)}</td>
                  <td>{d.source}</td>
                  <td>{d.position}</td>
                  <td>{d.reason}</td>
                  <td class="num">{d.size}</td>
                </tr>
              ))}
            </tbody>
          </table>
        )}
      </section>
    </section>
  );
}
