// The admin HTTP server (node:http): request ids, authentication, body limits, routing, JSON replies, and the one
// place where a handler's failure becomes an HTTP answer.
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { ConfigError, isLoopbackListen, splitHostPort } from '../config.js';
import type { Logger } from '../log.js';
import { TokenAuth, type AdminToken } from './auth.js';
import type { AdminDeps } from './deps.js';
import { errorResponse, HttpError } from './http-errors.js';
import { KeyLifecycle } from './lifecycle.js';
import { DEFAULT_BODY_LIMIT_BYTES, readJsonBody } from './request-body.js';
import { checkHost, checkSameOrigin, isStateChanging, originPolicy, type OriginPolicy } from './request-origin.js';
import { Router, type Method, type Reply, type RequestContext, type RouteDef } from './router.js';
import { adminRoutes } from './routes/index.js';

/** `auto`: /metrics is open when the listener is loopback, token-protected otherwise. */
export type MetricsAccess = 'auto' | 'public' | 'token';

export interface AdminServerOptions {
  /** host:port (`127.0.0.1:9901`, `[::1]:9901`); port 0 picks a free port (tests). */
  readonly listen: string;
  /** Bearer token; required unless `listen` is loopback (then, without a token, every route is open). */
  readonly token?: string | undefined;
  /** Audit actor recorded for writes made with `token`. */
  readonly tokenName: string;
  readonly deps: AdminDeps;
  readonly logger: Logger;
  readonly metricsAccess?: MetricsAccess;
  /**
   * Host names accepted in the Host header besides IP literals and `localhost` (KEYPOOL_ADMIN_ALLOWED_HOSTS), e.g.
   * the name a reverse proxy or Kubernetes service calls the API by. Anything else is refused (DNS rebinding).
   */
  readonly allowedHosts?: readonly string[] | undefined;
  /** Largest accepted request body (default 64 KiB; larger -> 413). */
  readonly bodyLimitBytes?: number;
  /** Deadline for one handler (database, provider probe); past it the client gets 503 `timeout`. Default 30 s. */
  readonly handlerTimeoutMs?: number;
  /** How often the key lifecycle sweep runs (overdue gauge, auto-revoke); 0 disables it. Default 60 s. */
  readonly lifecycleIntervalMs?: number;
}

export interface AdminServer {
  readonly port: number;
  /** Stops accepting, waits briefly for in-flight requests, then closes every connection. */
  close(): Promise<void>;
}

/** Deadline for a whole request, headers and body included (slow clients must not hold sockets). */
const REQUEST_TIMEOUT_MS = 15_000;
const HEADERS_TIMEOUT_MS = 10_000;
const KEEP_ALIVE_TIMEOUT_MS = 5_000;
const MAX_CONNECTIONS = 256;
const CLOSE_GRACE_MS = 2_000;
const DEFAULT_HANDLER_TIMEOUT_MS = 30_000;
const REQUEST_ID = /^[A-Za-z0-9._:-]{1,128}$/;
const METHODS: ReadonlySet<string> = new Set(['GET', 'POST', 'PUT', 'PATCH', 'DELETE']);

export async function startAdminServer(options: AdminServerOptions): Promise<AdminServer> {
  const { host, port } = splitHostPort(options.listen);
  const loopback = isLoopbackListen(options.listen);
  const tokens: AdminToken[] = options.token ? [{ name: options.tokenName, token: options.token }] : [];
  if (!loopback && tokens.length === 0) {
    throw new ConfigError(
      'KEYPOOL_ADMIN_TOKEN',
      `the admin API listens on ${options.listen}, which is not a loopback address: set KEYPOOL_ADMIN_TOKEN (or listen on 127.0.0.1)`,
    );
  }
  const handler = new AdminHandler({
    router: new Router(adminRoutes(options.deps)),
    auth: new TokenAuth(tokens),
    openActor: options.tokenName,
    metricsOpen: metricsOpen(options.metricsAccess ?? 'auto', loopback),
    origin: originPolicy(host, options.allowedHosts ?? []),
    bodyLimitBytes: options.bodyLimitBytes ?? DEFAULT_BODY_LIMIT_BYTES,
    handlerTimeoutMs: options.handlerTimeoutMs ?? DEFAULT_HANDLER_TIMEOUT_MS,
    deps: options.deps,
    logger: options.logger,
  });

  const server = createServer((req, res) => {
    handler.handle(req, res).catch((error: unknown) => {
      options.logger.error({ err: error }, 'admin request handling failed');
      if (!res.headersSent) res.writeHead(500).end();
      else res.destroy();
    });
  });
  server.requestTimeout = REQUEST_TIMEOUT_MS;
  server.headersTimeout = HEADERS_TIMEOUT_MS;
  server.keepAliveTimeout = KEEP_ALIVE_TIMEOUT_MS;
  server.maxConnections = MAX_CONNECTIONS;
  const sockets = new Set<Socket>();
  server.on('connection', (socket) => {
    sockets.add(socket);
    socket.once('close', () => sockets.delete(socket));
  });
  await listen(server, host, port);

  const lifecycleIntervalMs = options.lifecycleIntervalMs ?? 60_000;
  const lifecycle = new KeyLifecycle(options.deps, options.logger);
  if (lifecycleIntervalMs > 0) lifecycle.start(lifecycleIntervalMs);

  const address = server.address() as AddressInfo;
  options.logger.info(
    { listen: `${address.address}:${address.port}`, auth: tokens.length > 0 ? 'token' : 'none (loopback)' },
    'admin API listening',
  );
  return {
    port: address.port,
    async close() {
      lifecycle.stop();
      await closeServer(server, sockets);
    },
  };
}

function metricsOpen(access: MetricsAccess, loopback: boolean): boolean {
  return access === 'public' || (access === 'auto' && loopback);
}

function listen(server: Server, host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port, exclusive: true }, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

async function closeServer(server: Server, sockets: Set<Socket>): Promise<void> {
  const closed = new Promise<void>((resolve) => server.close(() => resolve()));
  server.closeIdleConnections();
  const timer = setTimeout(() => {
    for (const socket of sockets) socket.destroy();
  }, CLOSE_GRACE_MS);
  timer.unref();
  await closed;
  clearTimeout(timer);
}

interface HandlerOptions {
  readonly router: Router;
  readonly auth: TokenAuth;
  /** Actor recorded when no token is configured (loopback only). */
  readonly openActor: string;
  readonly metricsOpen: boolean;
  /** Which Host headers name this server (request-origin.ts). */
  readonly origin: OriginPolicy;
  readonly bodyLimitBytes: number;
  readonly handlerTimeoutMs: number;
  readonly deps: AdminDeps;
  readonly logger: Logger;
}

/** Turns one HTTP exchange into a route call and its reply. Never throws. */
export class AdminHandler {
  constructor(private readonly options: HandlerOptions) {}

  async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const startedAt = process.hrtime.bigint();
    const requestId = requestIdOf(req);
    let route: RouteDef | null = null;
    let reply: Reply;
    let actor: string | null = null;
    try {
      const url = new URL(req.url ?? '/', 'http://admin.invalid');
      const method = (req.method ?? 'GET').toUpperCase();
      checkHost(this.options.origin, firstHeader(req, 'host'));
      if (!METHODS.has(method)) throw new HttpError(405, 'method_not_allowed', 'unsupported method', null, { allow: [...METHODS].join(', ') });
      const match = this.options.router.match(method, url.pathname);
      route = match.route;
      const changesState = isStateChanging(method);
      if (changesState) {
        checkSameOrigin({ origin: firstHeader(req, 'origin'), secFetchSite: firstHeader(req, 'sec-fetch-site'), host: firstHeader(req, 'host') });
      }
      actor = this.authenticate(req, route);
      const body = await readJsonBody(req, this.options.bodyLimitBytes, changesState);
      const ctx: RequestContext = {
        method: method as Method,
        path: url.pathname,
        params: match.params,
        query: url.searchParams,
        body,
        requestId,
        actor,
        clientIp: req.socket.remoteAddress ?? null,
        header: (name) => firstHeader(req, name),
      };
      reply = await withDeadline(route.handler(ctx), this.options.handlerTimeoutMs);
    } catch (error) {
      reply = this.failure(error, requestId, route);
    }
    let payload: Payload;
    try {
      payload = serialise(reply);
    } catch (error) {
      reply = this.failure(error, requestId, route);
      payload = serialise(reply);
    }
    this.send(res, requestId, reply, payload);
    this.record(req, route, reply.status, actor, requestId, startedAt);
  }

  /** The actor of an authorised request; throws 401 otherwise. */
  private authenticate(req: IncomingMessage, route: RouteDef): string {
    const { auth } = this.options;
    if (route.access === 'public' || !auth.enabled) return this.options.openActor;
    if (route.access === 'metrics' && this.options.metricsOpen) return this.options.openActor;
    const result = auth.authenticate(firstHeader(req, 'authorization'));
    if (!result.ok) throw result.error;
    return result.actor;
  }

  private failure(error: unknown, requestId: string, route: RouteDef | null): Reply {
    const { status, body, headers, expected } = errorResponse(error);
    if (!expected) {
      this.options.logger.error({ err: error, requestId, route: route?.path ?? null }, 'admin request failed');
    }
    return { status, body, headers };
  }

  private send(res: ServerResponse, requestId: string, reply: Reply, payload: Payload): void {
    if (res.destroyed) return; // the client went away; nothing to answer
    const headers: Record<string, string> = {
      'x-request-id': requestId,
      'cache-control': 'no-store',
      'x-content-type-options': 'nosniff',
      ...reply.headers,
    };
    if (payload.contentType !== null) headers['content-type'] = payload.contentType;
    headers['content-length'] = String(Buffer.byteLength(payload.content));
    res.writeHead(reply.status, headers);
    res.end(payload.content);
  }

  /** One log line per request: never the query string or body (a pasted key could be in either). */
  private record(req: IncomingMessage, route: RouteDef | null, status: number, actor: string | null, requestId: string, startedAt: bigint): void {
    const method = (req.method ?? '').toUpperCase();
    const template = route?.path ?? 'unmatched';
    const durationMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
    try {
      this.options.deps.metrics.onAdminRequest(METHODS.has(method) ? method : 'OTHER', template, status);
    } catch {
      // metrics never fail a request
    }
    if (route?.access === 'public' || route?.access === 'metrics') {
      this.options.logger.debug({ requestId, method, route: template, status, durationMs }, 'admin request');
      return;
    }
    this.options.logger.info({ requestId, method, route: template, status, actor, durationMs }, 'admin request');
  }
}

/** The handler's reply, or 503 once the deadline passes (the work itself is not cancelled; its result is dropped). */
function withDeadline(work: Promise<Reply>, timeoutMs: number): Promise<Reply> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new HttpError(503, 'timeout', `the request did not complete within ${timeoutMs} ms; it may still take effect`)),
      timeoutMs,
    );
  });
  work.catch(() => undefined); // a late failure after the deadline is not an unhandled rejection
  return Promise.race([work, deadline]).finally(() => clearTimeout(timer));
}

interface Payload {
  readonly contentType: string | null;
  readonly content: string;
}

/** The reply's bytes; throws on a body JSON cannot encode (a bug: the caller answers 500 instead). */
function serialise(reply: Reply): Payload {
  if (reply.text) return { contentType: reply.text.contentType, content: reply.text.content };
  if (reply.body === undefined || reply.status === 204) return { contentType: null, content: '' };
  return { contentType: 'application/json; charset=utf-8', content: JSON.stringify(reply.body) };
}

function requestIdOf(req: IncomingMessage): string {
  const given = firstHeader(req, 'x-request-id');
  return given !== undefined && REQUEST_ID.test(given) ? given : randomUUID();
}

function firstHeader(req: IncomingMessage, name: string): string | undefined {
  const value = req.headers[name.toLowerCase()];
  return Array.isArray(value) ? value[0] : value;
}
