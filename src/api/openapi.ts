import type { FastifyInstance, RouteOptions } from 'fastify';

interface Collected {
  method: string;
  url: string;
  schema: Record<string, any>;
}

/**
 * Builds an OpenAPI 3 description from the JSON schemas the routes already carry (the same schemas validate input
 * and serialise output), so the document cannot drift from what the server does.
 */
export function collectOpenApi(app: FastifyInstance): () => object {
  const routes: Collected[] = [];
  app.addHook('onRoute', (r: RouteOptions) => {
    const schema = (r.schema ?? {}) as Record<string, any>;
    if (schema.hide) return;
    for (const m of Array.isArray(r.method) ? r.method : [r.method]) {
      if (m === 'HEAD') continue;
      routes.push({ method: m.toLowerCase(), url: r.url, schema });
    }
  });
  return () => {
    const paths: Record<string, Record<string, object>> = {};
    for (const r of routes) {
      const path = r.url.replace(/:([A-Za-z0-9_]+)/g, '{$1}');
      const parameters: object[] = [];
      for (const [where, key] of [
        ['query', 'querystring'],
        ['path', 'params'],
      ] as const) {
        const s = r.schema[key];
        if (!s?.properties) continue;
        for (const [name, p] of Object.entries<any>(s.properties)) {
          parameters.push({
            name,
            in: where,
            required: where === 'path' || (s.required ?? []).includes(name),
            schema: { ...p, description: undefined },
            description: p.description,
          });
        }
      }
      const responses: Record<string, object> = {};
      for (const [code, s] of Object.entries<any>(r.schema.response ?? { 200: {} })) {
        responses[code] = { description: s.description ?? 'OK', content: { 'application/json': { schema: s } } };
      }
      (paths[path] ??= {})[r.method] = {
        summary: r.schema.summary,
        tags: r.schema.tags,
        parameters,
        ...(r.schema.body ? { requestBody: { content: { 'application/json': { schema: r.schema.body } } } } : {}),
        responses,
      };
    }
    return {
      openapi: '3.0.3',
      info: { title: 'kaudit API', version: '1', description: 'Kubernetes audit events, alerts and analyst queries' },
      components: { securitySchemes: { bearer: { type: 'http', scheme: 'bearer' } } },
      security: [{ bearer: [] }],
      paths,
    };
  };
}

declare module 'fastify' {
  interface FastifySchema {
    summary?: string;
    description?: string;
    tags?: string[];
    /** Left out of the OpenAPI document (probes, the document itself). */
    hide?: boolean;
  }
}
