import { describe, expect, it } from 'vitest';
import { createDetector } from '../../src/detect/index.js';
import { newRedactionKey } from '../../src/events/redact.js';
import { Pipeline } from '../../src/pipeline/pipeline.js';
import { decodeRecord } from '../../src/events/decode.js';
import { normalise } from '../../src/events/normalise.js';

describe('the engine in the shared pipeline', () => {
  it('raises the same alerts as direct detection, though the pipeline drops the bodies no rule wants', async () => {
    const { eventStream } = (await import('../../benchmarks/lib/generate.mjs')) as {
      eventStream: (o: { seed: number; rate: number }) => () => Record<string, unknown>;
    };
    const next = eventStream({ seed: 3, rate: 20 });
    const lines = Array.from({ length: 3000 }, () => JSON.stringify(next()));
    const redaction = { enabled: true, key: newRedactionKey() };

    const direct = await createDetector();
    const events = lines.flatMap((text, i) =>
      decodeRecord({ text, where: `l${i}` }).flatMap((d) => ('event' in d ? [normalise(d.event, 'c', redaction, d.text)] : [])),
    );
    const want = (await direct.detect(events)).map((a) => `${a.rule} ${a.auditID}`);

    const detector = await createDetector();
    let dropped = 0;
    const wants = detector.wants.bind(detector);
    detector.wants = (e) => {
      const w = wants(e);
      if (!w) dropped++;
      return w;
    };
    const pipeline = new Pipeline({ detector, redaction });
    const got: string[] = [];
    for (let i = 0; i < lines.length; i += 500) {
      const out = await pipeline.submit({ source: 'test', cluster: 'c', records: lines.slice(i, i + 500).map((text, j) => ({ text, where: `l${i + j}` })) });
      got.push(...out.alerts.map((a) => `${a.rule} ${a.auditID}`));
    }
    expect(want.length).toBeGreaterThan(50);
    expect(got).toEqual(want);
    // Most events of a realistic mix interest no rule: their bodies can go early.
    expect(dropped).toBeGreaterThan(lines.length / 2);
  }, 60_000);
});
