import { isRetriable } from './errors.js';

/**
 * The one retry policy: exponential backoff, and a retry only for errors that say a later attempt may succeed
 * (`retriable`, see errors.ts). Anything else is thrown at once: retrying a bad config or bad input only delays the
 * message that says what to fix.
 */
export interface RetryOptions {
  /** Attempts after the first; default unbounded (for a caller that holds data it must not drop). */
  retries?: number;
  /** Wait before the first retry (ms). */
  initialMs: number;
  /** Longest wait between attempts (ms). */
  maxMs: number;
  /** Growth of the wait per attempt (default 2). */
  factor?: number;
  /** Which errors to retry (default: isRetriable). */
  retriable?: (e: unknown) => boolean;
  /** Checked before each retry: once true, the last error is thrown instead. */
  stopped?: () => boolean;
  /** How to wait; a caller that can be stopped passes a sleep its stop cuts short. */
  sleep?: (ms: number) => Promise<void>;
  onRetry?: (e: unknown, attempt: number, delayMs: number) => void;
}

/** The wait before retry number `attempt` (0 = the first retry). */
export function retryDelayMs(attempt: number, o: Pick<RetryOptions, 'initialMs' | 'maxMs' | 'factor'>): number {
  return Math.min(o.maxMs, o.initialMs * (o.factor ?? 2) ** attempt);
}

/** Runs `fn` until it succeeds, it throws an error that is not retriable, the retries run out or `stopped()` holds. */
export async function retry<T>(fn: (attempt: number) => Promise<T>, o: RetryOptions): Promise<T> {
  const retriable = o.retriable ?? isRetriable;
  const sleep = o.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn(attempt);
    } catch (e) {
      if (!retriable(e) || attempt >= (o.retries ?? Infinity) || o.stopped?.()) throw e;
      const delay = retryDelayMs(attempt, o);
      o.onRetry?.(e, attempt, delay);
      await sleep(delay);
      if (o.stopped?.()) throw e;
    }
  }
}
