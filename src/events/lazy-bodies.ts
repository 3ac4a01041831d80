/**
 * An audit event's line without its request and response bodies, for events no rule wants (issue #21).
 *
 * The bodies (a RequestResponse write's objects, a list's whole response) are most of a large line's bytes, and
 * nothing but detection reads them: the store keeps the line's own bytes and indexes fields that sit outside them.
 * So a large line is first parsed without them; the pipeline parses it in full only when a rule wants the event.
 *
 * Only lines the apiserver wrote itself are cut: Go's encoder writes the Event's fields in their declared order, so
 * `requestObject` and `responseObject` sit together, right before `requestReceivedTimestamp`, and the text from the
 * first body key to that key is the bodies and nothing else. The cut is found with `indexOf`, not a scan: neither
 * key pattern (a comma, then a quoted key, then a colon) can occur inside a JSON string, so each occurrence is a key at
 * some depth; a cut whose ends are at different depths does not parse, and one inside a nested object (a key of
 * user.extra, say) leaves the top-level fields whole. Either way the event's indexed fields are the line's own.
 *
 * A line whose bodies might be redacted is never cut (redaction must see them): one about Secrets, or whose bodies'
 * text holds `Secret` or a `\u` escape other than the three Go writes for <, > and & (any letter may be escaped).
 */

/** Lines shorter than this are parsed whole: the cut would save less than it costs. */
export const LAZY_BODY_MIN = 4096;

const GO_PREFIX = '{"kind":"Event","apiVersion":"audit.k8s.io/v1","level":"';
const REQUEST = ',"requestObject":';
const RESPONSE = ',"responseObject":';
const AFTER = ',"requestReceivedTimestamp":"';

/**
 * The line with each body replaced by `{}` (so that the event still shows it had one), or undefined when the line
 * must be parsed whole.
 */
export function withoutBodies(text: string): string | undefined {
  if (text.length < LAZY_BODY_MIN || !text.startsWith(GO_PREFIX)) return undefined;
  const req = text.indexOf(REQUEST);
  const res = text.indexOf(RESPONSE);
  const start = req >= 0 && (res < 0 || req < res) ? req : res;
  if (start < 0) return undefined;
  const end = text.indexOf(AFTER, start);
  if (end < 0) return undefined;
  const secret = text.indexOf('Secret', start);
  if (secret >= 0 && secret < end) return undefined;
  for (let u = text.indexOf('\\u', start); u >= 0 && u < end; u = text.indexOf('\\u', u + 2)) {
    const hex = text.slice(u + 2, u + 6);
    if (hex !== '003c' && hex !== '003e' && hex !== '0026') return undefined;
  }
  const hasRes = res >= 0 && res < end;
  const hasReq = req >= 0 && req < end;
  return text.slice(0, start) + (hasReq ? REQUEST + '{}' : '') + (hasRes ? RESPONSE + '{}' : '') + text.slice(end);
}

/** The objectRef of a line parsed without bodies names Secrets: the bodies are redacted, so the line is parsed whole. */
export function aboutSecrets(v: unknown): boolean {
  const ref = (v as { objectRef?: { resource?: unknown } } | null)?.objectRef;
  return typeof ref === 'object' && ref !== null && ref.resource === 'secrets';
}
