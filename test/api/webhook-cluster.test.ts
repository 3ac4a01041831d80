import { describe, expect, it } from 'vitest';
import { webhookCluster } from '../../src/api/webhook.js';

describe('webhook cluster', () => {
  it('the webhook fixes the cluster when a credential is bound to one or the path names one, not when it is the default', () => {
    expect(webhookCluster({ name: 'tok', scope: 'ingest', cluster: 'prod', via: 'token' }, undefined, 'dflt')).toEqual({ cluster: 'prod', fixed: true });
    expect(webhookCluster(undefined, 'staging', 'dflt')).toEqual({ cluster: 'staging', fixed: true });
    expect(webhookCluster(undefined, undefined, 'dflt')).toEqual({ cluster: 'dflt', fixed: false });
  });
  it('refuses a bad or foreign cluster in the path', () => {
    expect(webhookCluster({ name: 'tok', scope: 'ingest', cluster: 'prod', via: 'token' }, 'staging', 'dflt')).toMatchObject({ status: 403 });
    expect(webhookCluster(undefined, 'no such', 'dflt')).toMatchObject({ status: 400 });
  });
});
