/**
 * The event fields that a threshold or sequence may be keyed by (`by`, `distinct`): the rule reader checks names
 * against this one list, and the engine reads the values with it.
 */
import type { NormalisedEvent } from '../events/types.js';
import { eventObjectName } from './match.js';

export const KEY_FIELDS = [
  'user',
  'namespace',
  'name',
  'sourceIP',
  'resource',
  'userAgent',
  'cluster',
  'verb',
  'impersonatedUser',
  'apiGroup',
  'subresource',
] as const;
export type KeyField = (typeof KEY_FIELDS)[number];

const NAMES: ReadonlySet<string> = new Set(KEY_FIELDS);

export function isKeyField(f: string): f is KeyField {
  return NAMES.has(f);
}

function fieldValue(e: NormalisedEvent, f: string): string {
  // The object's name also for creates, whose objectRef has none yet.
  if (f === 'name') return eventObjectName(e);
  return String(e[f as KeyField] ?? '');
}

/** The key of an event for the fields a rule is keyed by (joined by U+0001). */
export function keyOf(e: NormalisedEvent, fields: readonly string[]): string {
  if (fields.length === 1) return fieldValue(e, fields[0]!);
  return fields.map((f) => fieldValue(e, f)).join('\u0001');
}
