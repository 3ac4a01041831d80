/**
 * Envelopes: the shapes an audit event arrives wrapped in. The apiserver's own (an Event, an EventList) is the native
 * one; managed clusters and log forwarders wrap events in theirs (an EKS CloudWatch record, a GKE LogEntry, an AKS
 * diagnostic record, a forwarder's record). The decoder picks one per record by shape (or the one a source forces) and
 * validates what it unwraps as audit Events, so every source carrying the same envelope behaves alike.
 *
 * What an envelope sees: one record, a parsed JSON value that is not an array. Top-level arrays are split into their
 * elements before envelopes are asked, by the decoder and by the streaming readers alike, so that a file, a webhook
 * body and a Kafka message holding the same array give the same records: match the element, not the array.
 */

/** One event an envelope found in a record (its value, not yet validated), or why an item of it is not one. */
export type EnvelopeItem =
  | {
      value: unknown;
      /** The cluster the envelope names for this event; overrides the source's default cluster. */
      cluster?: string;
      /** Where inside the record (e.g. `logEvents[3]`), for error messages. */
      where?: string;
    }
  | { error: string; where?: string };

export interface Envelope {
  /** 'native' | 'eks' | 'gke' | 'aks' | 'forwarder' ...: what a source's `format` option names. */
  readonly name: string;
  /** This parsed value is a record of this envelope, by its shape. Cheap: asked of records other envelopes passed on. */
  matches(v: unknown): boolean;
  /**
   * The audit Event values inside (with the cluster the envelope names, if any), or per-item errors. Pure; may throw
   * on a record it does not understand (the decoder turns that into the record's dead letter).
   */
  unwrap(v: unknown): EnvelopeItem[];
}
