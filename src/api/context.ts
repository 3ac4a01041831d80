import type { KauditConfig } from '../config/config.js';
import type { SourceConfig } from '../config/sources.js';
import type { Metrics } from '../metrics.js';
import type { AlertBus } from '../pipeline/alert-bus.js';
import type { BatchSink } from '../pipeline/pipeline.js';
import type { StoreReader } from '../store/store.js';

/** What the HTTP API's plugins share. */
export interface ApiContext {
  config: KauditConfig;
  store: StoreReader;
  /** Where webhook batches go: the local pipeline, or a Kafka producer in ingest-only mode. */
  sink: BatchSink;
  bus: AlertBus;
  metrics: Metrics;
  /** False until start-up (migrations, rule loading, sources) is done; /readyz reports it. */
  ready: () => boolean;
  /** Why this node cannot serve (e.g. its Kafka consumer stopped for good), for /readyz; undefined when fine. */
  problem?: () => string | undefined;
  /** Managed clusters' sources from the config (push endpoints are routes when configured). */
  sources?: SourceConfig[];
}
