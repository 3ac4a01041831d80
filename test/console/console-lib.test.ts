import { describe, expect, it } from 'vitest';
import { toCsv, toNdjson } from '../../web/src/lib/format.js';
import { groupAlerts } from '../../web/src/lib/group.js';
import type { AlertRow } from '../../web/src/lib/api.js';

const alert = (id: number, user: string, name: string, count = 1): AlertRow =>
  ({
    id,
    rule: 'pod-exec',
    title: 'Exec',
    severity: 'high',
    tags: [],
    summary: '',
    cluster: 'c',
    auditID: String(id),
    stage: 'ResponseComplete',
    time: '2026-11-01T00:00:00Z',
    user,
    sourceIP: '',
    verb: 'create',
    objectRef: { namespace: 'ns', name },
    count,
  }) as AlertRow;

describe('console helpers', () => {
  it('exports CSV with every cell quoted and spreadsheet formulas neutralised', () => {
    const csv = toCsv(
      [
        { user: '=HYPERLINK("http://x")', command: 'sh -c "id"', n: 3 },
        { user: '+1', command: '@SUM(A1)', n: undefined },
      ],
      ['user', 'command', 'n'],
    );
    expect(csv.split('\r\n')).toEqual(['"user","command","n"', `"'=HYPERLINK(""http://x"")","sh -c ""id""","3"`, `"'+1","'@SUM(A1)",""`, '']);
    expect(toNdjson([{ a: 1 }, { b: '\n' }])).toBe('{"a":1}\n{"b":"\\n"}\n');
  });

  it('groups repeats of one rule on one identity and object, newest first, summing counts', () => {
    const g = groupAlerts([alert(5, 'a', 'p1'), alert(4, 'b', 'p1'), alert(3, 'a', 'p1', 2), alert(2, 'a', 'p2')]);
    expect(g.map((x) => [x.latest.id, x.count, x.ids])).toEqual([
      [5, 3, [5, 3]],
      [4, 1, [4]],
      [2, 1, [2]],
    ]);
  });
});
