export type EnvelopeItem = { value: unknown; cluster?: string; where?: string } | { error: string; where?: string };
export interface Envelope {
  readonly name: string;                      // 'native' | 'eks' | 'gke' | 'aks' | 'forwarder' ...
  matches(v: unknown): boolean;               // this parsed JSON value is a record/document of this envelope (by shape)
  unwrap(v: unknown): EnvelopeItem[];         // the audit Event values inside (per-item cluster from the envelope), or per-item errors
}
