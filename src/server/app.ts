// The HTTP server: every route in one list, API-key check, the single error handler, the static
// chat page, and startServer() (listen first, then load the model, so /health can say "loading").
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { serve, type ServerType } from '@hono/node-server';
import { Hono, type Context } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { cors } from 'hono/cors';
import type { Engine } from '../engine/types.ts';
import { ApiError, toApiError } from './errors.ts';
import { ModelHost } from './host.ts';
import { llamaRoutes } from './llama.ts';
import { ServerMetrics } from './metrics.ts';
import { ollamaErrorBody, ollamaRoutes } from './ollama.ts';
import { openaiErrorBody, openaiRoutes } from './openai.ts';
import type { ServerContext } from './request.ts';

/** Mixtile's version from package.json (two folders up from src/server/ and dist/server/ alike). */
export const VERSION: string = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')).version;

/*
 * Routes
 *   GET  /                      chat page (ui/index.html, app.js, style.css)
 *   GET  /health                200 {"status":"ok"}; 503 while the model loads        (no API key needed)
 *   GET  /metrics               Prometheus text
 *   POST /tokenize /detokenize /apply-template                                         llama-server
 *   GET  /v1/models   POST /v1/chat/completions   POST /v1/completions                 OpenAI
 *   POST /api/chat /api/generate /api/show   GET /api/tags /api/ps /api/version        Ollama
 */

export interface AppOptions {
  /** When set, every route but /health and the page needs `Authorization: Bearer <apiKey>`. */
  apiKey?: string;
  /** One line per request (method, path, status, ms to the response head); /health and /metrics are not logged. */
  logRequests?: (line: string) => void;
}

/** Largest request body: a full 128k-token context is well under 1 MB of text; this leaves room for long tool schemas. */
const MAX_BODY_BYTES = 16 * 1024 * 1024;

/** Paths that never need the API key: the health probe and the page's static files (the page asks for the key). */
const PUBLIC_PATHS = new Set(['/health', '/', '/index.html', '/app.js', '/style.css']);

export function createApp(ctx: ServerContext, opts: AppOptions = {}): Hono {
  const app = new Hono();

  const logRequests = opts.logRequests;
  if (logRequests) {
    app.use('*', async (c, next) => {
      const t0 = performance.now();
      await next();
      if (c.req.path === '/health' || c.req.path === '/metrics') return;
      logRequests(`${c.req.method} ${c.req.path} ${c.res.status} ${(performance.now() - t0).toFixed(0)} ms`);
    });
  }

  // Browser apps on other origins may call the API, as with llama-server and Ollama; the
  // preflight is answered here, before the API-key check (the key travels on the real request).
  app.use('*', cors({ origin: '*', allowHeaders: ['authorization', 'content-type'], maxAge: 600 }));
  app.use(
    '*',
    bodyLimit({
      maxSize: MAX_BODY_BYTES,
      onError: () => {
        throw new ApiError(413, 'invalid_request_error', `the request body is over ${MAX_BODY_BYTES / 1024 / 1024} MiB`);
      },
    }),
  );

  if (opts.apiKey) {
    const expected = Buffer.from(opts.apiKey);
    // Constant-time comparison, so response timing does not reveal how much of a guess was right.
    const matches = (key: string) => {
      const given = Buffer.from(key);
      return given.length === expected.length && timingSafeEqual(given, expected);
    };
    app.use('*', async (c, next) => {
      if (PUBLIC_PATHS.has(c.req.path)) return next();
      const header = c.req.header('authorization');
      if (!header) throw new ApiError(401, 'authentication_error', 'missing API key: send the header "Authorization: Bearer <key>" (the server was started with --api-key)');
      const m = /^Bearer\s+(.+)$/i.exec(header);
      if (!m || !matches(m[1]!.trim())) throw new ApiError(401, 'authentication_error', 'invalid API key');
      return next();
    });
  }

  app.route('/', llamaRoutes(ctx));
  app.route('/', openaiRoutes(ctx));
  app.route('/', ollamaRoutes(ctx));
  staticPage(app);

  app.notFound((c) => errorResponse(c, new ApiError(404, 'not_found_error', `no route ${c.req.method} ${c.req.path}; see GET / for the chat page or the README for the API list`)));
  app.onError((err, c) => errorResponse(c, err));
  return app;
}

/** The one error handler: status from the ApiError, body in the shape of the path's protocol. */
function errorResponse(c: Context, err: unknown): Response {
  const e = toApiError(err);
  if (e.status >= 500 && e.type === 'server_error') console.error(`mixtile serve: ${c.req.method} ${c.req.path}: ${e.message}`);
  const body = c.req.path.startsWith('/api/') ? ollamaErrorBody(e) : openaiErrorBody(e);
  return c.json(body, e.status as 400);
}

/** The chat page: plain files from src/server/ui/ (two folders below the package root from src/ and dist/ alike). */
const UI_DIR = new URL('../../src/server/ui/', import.meta.url);
const UI_FILES: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

function staticPage(app: Hono): void {
  for (const [path, [file, type]] of Object.entries(UI_FILES)) {
    app.get(path, async (c) => {
      const body = await readFile(new URL(file, UI_DIR));
      return c.body(body, 200, { 'content-type': type, 'cache-control': 'no-cache' });
    });
  }
}

export interface ServerOptions extends AppOptions {
  host: string;
  /** 0 picks a free port (tests). */
  port: number;
  /** Loads the model; called once listening (and again after keep_alive unloaded it). */
  load: (progress: (fraction: number) => void) => Promise<Engine>;
  /** Default keep_alive in ms; < 0 keeps the model loaded forever (the default). */
  keepAliveMs?: number;
  log?: (line: string) => void;
}

export interface RunningServer {
  url: string;
  port: number;
  host: ModelHost;
  metrics: ServerMetrics;
  /** Resolves when the first load ends (rejects if it failed). */
  ready: Promise<Engine>;
  close(): Promise<void>;
}

/** Listens, then starts loading the model. Example: `const s = await startServer({ host: '127.0.0.1', port: 0, load })`. */
export async function startServer(o: ServerOptions): Promise<RunningServer> {
  const host = new ModelHost({ load: o.load, keepAliveMs: o.keepAliveMs ?? -1, log: o.log });
  const metrics = new ServerMetrics(() => host.engine);
  const app = createApp({ host, metrics, version: VERSION }, { apiKey: o.apiKey, logRequests: o.logRequests });
  const server: ServerType = await new Promise((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: o.host, port: o.port }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  const shown = o.host.includes(':') ? `[${o.host}]` : o.host;
  const ready = host.load();
  ready.catch(() => undefined); // reported through /health and the log; awaited by whoever needs it
  return {
    url: `http://${shown}:${port}`,
    port,
    host,
    metrics,
    ready,
    async close() {
      await new Promise<void>((resolve) => {
        server.close(() => resolve());
        // Open streams would hold close() forever; their requests are cancelled with the engine.
        (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      });
      await host.close();
    },
  };
}
