import type { FastifyInstance } from 'fastify';
import type { AuditEvent } from '../events/types.js';
import { CHECKS, checkPolicy, type CheckReport } from '../policy/checks.js';
import { generatePolicy, PROFILES, type Profile } from '../policy/generate.js';
import { parsePolicy } from '../policy/load.js';
import { checkApiserverFlags, parseApiserverManifest } from '../policy/manifest.js';
import type { FullReport } from '../policy/report.js';
import { DetectionCatalogUnavailable, loadDetectionRequirements, type RuleRequirement } from '../policy/requirements.js';
import type { SimulationItem } from '../policy/simulate.js';
import { timeArg, timeWindowProps } from './common.js';
import type { ApiContext } from './context.js';

/**
 * Audit-policy checks and generation over HTTP, as `kaudit policy check` and `kaudit policy generate` do on files:
 * the same report, the same profiles. Read scope (they read nothing from the store but the traffic a generation is
 * tuned on). Bodies are bounded (policies and manifests are a few kB; 512 KiB each at most).
 */

const MAX_TEXT = 512 * 1024;
/** Stored events a traffic-tuned generation reads at most (newest first within the window). */
const MAX_TUNING_EVENTS = 200_000;

interface CheckBody {
  policy: string;
  manifest?: string;
  cisVersion?: string;
  detections?: boolean;
}

interface GenerateBody {
  profile?: Profile;
  detections?: boolean;
  /** Tune the recommended profile on the stored traffic of this window (e.g. `7d`). */
  fromTraffic?: { since: string; until?: string; cluster?: string };
  minShare?: number;
  minEvents?: number;
}

const findingSchema = {
  type: 'object',
  properties: {
    id: { type: 'string' },
    severity: { type: 'string', enum: ['error', 'warning', 'note'] },
    message: { type: 'string' },
    rule: { type: 'integer', nullable: true },
    path: { type: 'string' },
    line: { type: 'integer' },
    file: { type: 'string' },
    detection: { type: 'string' },
    examples: { type: 'array', items: { type: 'string' } },
  },
} as const;

const reportSchema = {
  type: 'object',
  properties: {
    source: { type: 'string' },
    findings: { type: 'array', items: findingSchema },
    passed: { type: 'array', items: { type: 'string' } },
    skipped: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, reason: { type: 'string' } } } },
    manifest: { type: 'object', properties: { file: { type: 'string' }, benchmark: { type: 'string' } } },
    checks: { type: 'array', items: { type: 'object', properties: { id: { type: 'string' }, title: { type: 'string' } } } },
  },
} as const;

class PolicyRequestError extends Error {
  readonly statusCode = 400;
}

async function requirements(detections: boolean | undefined): Promise<{ requirements?: RuleRequirement[]; note?: string }> {
  if (detections === false) return { note: 'skipped (detections: false)' };
  try {
    return { requirements: await loadDetectionRequirements() };
  } catch (e) {
    const why = e instanceof DetectionCatalogUnavailable ? e.message : `loading the detection rules: ${(e as Error).message.split('\n')[0]}`;
    return { note: why };
  }
}

export async function policyRoutes(app: FastifyInstance, opts: { ctx: ApiContext }): Promise<void> {
  const { store } = opts.ctx;
  app.post<{ Body: CheckBody }>(
    '/policy/check',
    {
      bodyLimit: 2 * MAX_TEXT + 4096,
      schema: {
        summary: 'Check an audit policy (and optionally the kube-apiserver manifest): CIS 3.2.1/3.2.2, detection blind spots, shadowed rules, noise',
        description: 'The same report as `kaudit policy check --format json`. A finding of severity error fails the check.',
        tags: ['policy'],
        body: {
          type: 'object',
          additionalProperties: false,
          required: ['policy'],
          properties: {
            policy: { type: 'string', maxLength: MAX_TEXT, description: 'the audit policy, YAML or JSON text' },
            manifest: { type: 'string', maxLength: MAX_TEXT, description: 'the kube-apiserver static pod manifest, to check the audit flags too' },
            cisVersion: { type: 'string', maxLength: 40, description: 'CIS benchmark for the flag ids (e.g. cis-1.10); default from the manifest image' },
            detections: { type: 'boolean', default: true, description: 'check the enabled detections for blind spots' },
          },
        },
        response: { 200: reportSchema },
      },
    },
    async (req) => {
      const b = req.body;
      const loaded = parsePolicy(b.policy, 'policy');
      const reqs = await requirements(b.detections);
      const report: FullReport & { checks?: unknown } = checkPolicy(loaded, {
        ...(reqs.requirements ? { requirements: reqs.requirements } : {}),
        ...(reqs.note ? { requirementsUnavailable: reqs.note } : {}),
      });
      if (b.manifest !== undefined && b.manifest.trim() !== '') {
        let m;
        try {
          m = checkApiserverFlags(parseApiserverManifest(b.manifest, 'manifest'), 'manifest', b.cisVersion);
        } catch (e) {
          throw new PolicyRequestError(`manifest: ${(e as Error).message}`);
        }
        mergeManifest(report, m);
        report.manifest = { file: 'manifest', benchmark: m.benchmark };
      }
      report.checks = CHECKS;
      return report;
    },
  );

  app.post<{ Body: GenerateBody }>(
    '/policy/generate',
    {
      schema: {
        summary: 'Generate an audit policy (minimal, recommended or strict), optionally tuned on the stored traffic of a window',
        description: 'The same policy as `kaudit policy generate`; fromTraffic tunes the recommended profile on stored events as --from-log does on a file.',
        tags: ['policy'],
        body: {
          type: 'object',
          additionalProperties: false,
          properties: {
            profile: { type: 'string', enum: [...PROFILES], default: 'recommended' },
            detections: { type: 'boolean', default: true },
            fromTraffic: {
              type: 'object',
              additionalProperties: false,
              required: ['since'],
              properties: { since: timeWindowProps.since, until: timeWindowProps.until, cluster: { type: 'string', maxLength: 253 } },
            },
            minShare: { type: 'number', minimum: 0, maximum: 1 },
            minEvents: { type: 'integer', minimum: 1 },
          },
        },
        response: {
          200: {
            type: 'object',
            properties: {
              profile: { type: 'string' },
              yaml: { type: 'string' },
              uncovered: { type: 'array', items: { type: 'object', properties: { rule: { type: 'string' }, reason: { type: 'string' } } } },
              volume: { type: 'object', additionalProperties: { type: 'number' } },
              tunedOn: { type: 'object', properties: { events: { type: 'integer' }, truncated: { type: 'boolean' } } },
            },
          },
        },
      },
    },
    async (req) => {
      const b = req.body;
      const profile = b.profile ?? 'recommended';
      const reqs = await requirements(b.detections);
      let tunedOn: { events: number; truncated: boolean } | undefined;
      let fromLog: (() => AsyncIterable<SimulationItem>) | undefined;
      if (b.fromTraffic) {
        if (profile !== 'recommended') throw new PolicyRequestError('fromTraffic tunes the recommended profile only');
        const since = timeArg(b.fromTraffic.since);
        const until = timeArg(b.fromTraffic.until);
        const cluster = b.fromTraffic.cluster;
        tunedOn = { events: 0, truncated: false };
        const t = tunedOn;
        fromLog = async function* () {
          let cursor: string | undefined;
          do {
            const page = await store.queryEvents({ since, until, cluster }, { limit: 5000, cursor, includeEvent: true });
            for (const row of page.items) {
              if (t.events >= MAX_TUNING_EVENTS) {
                t.truncated = true;
                return;
              }
              const ev = (row as { event?: AuditEvent }).event;
              if (!ev) continue;
              t.events++;
              yield ev;
            }
            cursor = page.next;
            // Let other requests in between pages.
            await new Promise((r) => setImmediate(r));
          } while (cursor);
        };
      }
      const g = await generatePolicy({
        profile,
        requirements: reqs.requirements,
        requirementsNote: reqs.note,
        fromLog,
        minShare: b.minShare,
        minEvents: b.minEvents,
      });
      return { profile, yaml: g.yaml, uncovered: g.uncovered, ...(g.volume ? { volume: g.volume } : {}), ...(tunedOn ? { tunedOn } : {}) };
    },
  );
}

/** As the CLI: the manifest's findings join the policy's; a flag's pass does not hide a failure of the policy itself. */
function mergeManifest(report: CheckReport, m: { findings: CheckReport['findings']; passed: string[] }): void {
  report.findings.push(...m.findings);
  const failed = new Set(report.findings.map((f) => f.id));
  for (const id of m.passed) if (!failed.has(id) && !report.passed.includes(id)) report.passed.push(id);
  report.passed = report.passed.filter((id) => !failed.has(id));
}
