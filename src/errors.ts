/**
 * kaudit's named errors. Callers decide by class and by `retriable` (as kafkajs's errors carry it), never by message
 * text or ad-hoc `code` strings. Retriable: the same operation, unchanged, may succeed later (a full queue, a broker
 * away). Not retriable: it fails the same way until something is changed (a config value, the input, a credential).
 *
 * A leaf: imports nothing, so any module may use it. (src/events keeps its own BadInputError: that folder imports
 * nothing from the rest of src.)
 */
export class KauditError extends Error {
  readonly retriable: boolean;

  constructor(message: string, opts: { retriable?: boolean; cause?: unknown } = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.retriable = opts.retriable ?? false;
  }
}

/** A setting that cannot be used: the message names the key (or file, or environment variable) and what it accepts. */
export class ConfigError extends KauditError {}

/**
 * Refused because a bounded queue is full (the pipeline's, the webhook's, Kafka's unacknowledged events). Nothing of
 * the batch was taken: the sender keeps it and sends it again later (a 503 for the apiserver, a paused partition).
 */
export class OverloadedError extends KauditError {
  constructor(message = 'ingest queue is full; retry later') {
    super(message, { retriable: true });
  }
}

/** True for kaudit's errors that say a later attempt may succeed; anything else (unknown errors included) is not. */
export function isRetriable(e: unknown): boolean {
  return e instanceof KauditError && e.retriable;
}

/**
 * The store cannot be reached or is refusing work for now (a networked store that is down, restarting or pushing
 * back). Nothing of the write was acknowledged: the source keeps the data and sends it again (a 5xx for the webhook,
 * a paused partition, a tail that waits).
 */
export class StoreUnavailableError extends KauditError {
  constructor(message: string, cause?: unknown) {
    super(message, { retriable: true, cause });
  }
}
