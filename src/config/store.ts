/**
 * The `store.opensearch` section (the fleet store) and the store target of `--store`: a path is a SQLite file, an
 * `http(s)://` URL is OpenSearch.
 */
import { ConfigError } from '../errors.js';
import type { OpenSearchSettings } from '../store/opensearch/connection.js';
import { bool, int, isObject, section, shown, str } from './values.js';

export type { OpenSearchSettings };

export function isStoreUrl(target: string): boolean {
  return /^https?:\/\//i.test(target);
}

/** The defaults for an OpenSearch store at `url`. */
export function openSearchAt(url: string, key: string): OpenSearchSettings {
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    throw new ConfigError(`${key} must be an http(s) URL, got ${shown(url)}`);
  }
  if (u.username || u.password) throw new ConfigError(`${key}: put no credentials in the URL; use store.opensearch.auth with a passwordFile or apiKeyFile`);
  return { url, indexPrefix: 'kaudit', replicas: 1, shards: 1 };
}

export function parseOpenSearch(v: unknown): OpenSearchSettings | undefined {
  if (v == null) return undefined;
  const o = section(v, 'store.opensearch', ['url', 'auth', 'tls', 'indexPrefix', 'replicas', 'shards']);
  if (o.url == null) throw new ConfigError('store.opensearch needs a url (http(s)://host:port)');
  const s = openSearchAt(str(o.url, 'store.opensearch.url'), 'store.opensearch.url');
  if (o.auth != null) {
    const a = section(o.auth, 'store.opensearch.auth', ['username', 'passwordFile', 'apiKeyFile']);
    if (a.apiKeyFile != null) {
      if (a.username != null || a.passwordFile != null) throw new ConfigError('store.opensearch.auth takes either username and passwordFile, or apiKeyFile');
      s.auth = { apiKeyFile: str(a.apiKeyFile, 'store.opensearch.auth.apiKeyFile') };
    } else {
      if (a.username == null || a.passwordFile == null) throw new ConfigError('store.opensearch.auth needs username and passwordFile (or apiKeyFile)');
      s.auth = { username: str(a.username, 'store.opensearch.auth.username'), passwordFile: str(a.passwordFile, 'store.opensearch.auth.passwordFile') };
    }
  }
  if (o.tls != null) {
    const t = section(o.tls, 'store.opensearch.tls', ['ca', 'insecure']);
    s.tls = {};
    if (t.ca != null) s.tls.ca = str(t.ca, 'store.opensearch.tls.ca');
    if (t.insecure != null) s.tls.insecure = bool(t.insecure, 'store.opensearch.tls.insecure');
  }
  if (o.indexPrefix != null) {
    const p = str(o.indexPrefix, 'store.opensearch.indexPrefix');
    if (!/^[a-z0-9][a-z0-9_.-]*$/.test(p))
      throw new ConfigError(`store.opensearch.indexPrefix must be lowercase letters, digits, '.', '_' or '-', got ${shown(p)}`);
    s.indexPrefix = p;
  }
  if (o.replicas != null) s.replicas = int(o.replicas, 'store.opensearch.replicas', 0);
  if (o.shards != null) s.shards = int(o.shards, 'store.opensearch.shards', 1);
  return s;
}

export { isObject };
