// The only module that imports @opentelemetry/*: loaded by ./tracing.ts when traces are asked for, never otherwise.
// One span per decision (`keypool.decide`) and per observation (`keypool.observe`, a child of its decision), the
// decision parented on the W3C traceparent/tracestate the gateway forwarded with the request headers.
// Attributes name the provider, account, outcome, deny code, priority and tenant; never a key or a header value.
import { context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Context, type Span, type TextMapGetter } from '@opentelemetry/api';
import { AsyncLocalStorageContextManager } from '@opentelemetry/context-async-hooks';
import { W3CTraceContextPropagator } from '@opentelemetry/core';
import { defaultResource, detectResources, envDetector, resourceFromAttributes } from '@opentelemetry/resources';
import { BasicTracerProvider, BatchSpanProcessor, type SpanExporter } from '@opentelemetry/sdk-trace-base';
import type { Decision, HeaderBag, ObservationOutcome, RequestView } from '../core/types.js';
import type { DecisionEngine, RequestOutcome, Ticket } from '../ports.js';
import type { Tracing, TracingConfig } from './tracing.js';

const TRACER_NAME = 'keypool';

/** Reads traceparent/tracestate from the request headers (values may arrive as arrays); nothing else is read. */
const HEADER_GETTER: TextMapGetter<HeaderBag> = {
  keys: (carrier) => Object.keys(carrier),
  get: (carrier, key) => {
    const value = carrier[key];
    return typeof value === 'string' ? value : value?.[0];
  },
};

export async function startOtel(settings: TracingConfig): Promise<Tracing> {
  const exporter = await createExporter(settings);
  const provider = new BasicTracerProvider({
    resource: defaultResource()
      .merge(detectResources({ detectors: [envDetector] }))
      .merge(resourceFromAttributes({ 'service.name': settings.serviceName })),
    // Batches in the background (OTEL_BSP_* variables: delay, queue size, batch size); a full queue drops spans.
    spanProcessors: [new BatchSpanProcessor(exporter)],
  });
  // Async context, so spans started around engine calls are active inside them (log lines carry their ids).
  context.setGlobalContextManager(new AsyncLocalStorageContextManager().enable());
  const tracer = provider.getTracer(TRACER_NAME);
  const propagator = new W3CTraceContextPropagator();
  // Decision context per allowed request, for its observation span; the ticket's lifetime bounds it.
  const decisionContexts = new WeakMap<Ticket, Context>();

  /** Traced decide: a span around the engine's, parented on the request's traceparent. */
  const decideOf = (engine: DecisionEngine) => async (view: RequestView): Promise<RequestOutcome> => {
    const parent = propagator.extract(ROOT_CONTEXT, view.headers, HEADER_GETTER);
    const span = tracer.startSpan('keypool.decide', { kind: SpanKind.INTERNAL, attributes: { 'keypool.provider': view.provider } }, parent);
    const spanContext = trace.setSpan(parent, span);
    try {
      const outcome = await context.with(spanContext, () => engine.decide(view));
      describeDecision(span, outcome.decision);
      if (outcome.ticket !== null) decisionContexts.set(outcome.ticket, spanContext);
      return outcome;
    } catch (error) {
      // The message only: an error's other fields are not ours to export.
      span.setStatus({ code: SpanStatusCode.ERROR, message: error instanceof Error ? error.message : 'decision failed' });
      throw error;
    } finally {
      span.end();
    }
  };

  /** Traced observe: a child span of the ticket's decision, ended once a state commit the answer waits for settles. */
  const observeOf = (engine: DecisionEngine): DecisionEngine['observe'] => (ticket, status, headers, options) => {
    const parent = decisionContexts.get(ticket) ?? ROOT_CONTEXT;
    const span = tracer.startSpan(
      'keypool.observe',
      {
        kind: SpanKind.INTERNAL,
        attributes: { 'keypool.provider': ticket.pool, 'keypool.account': ticket.accountName, 'http.response.status_code': status },
      },
      parent,
    );
    let committed: Promise<void> | null = null;
    try {
      committed = context.with(trace.setSpan(parent, span), () => engine.observe(ticket, status, headers, options));
    } finally {
      if (committed === null) span.end();
    }
    // The engine's promise never rejects (DecisionEngine.observe).
    return committed === null ? null : committed.finally(() => span.end());
  };

  /**
   * The engine with decide and observe traced and everything else (release, renew, counters for metrics) its own:
   * a Proxy, so whatever the engine adds stays reachable without this file knowing it.
   */
  const wrap = <E extends DecisionEngine>(engine: E): E => {
    const decide = decideOf(engine);
    const observe = observeOf(engine);
    const bound = new Map<PropertyKey, unknown>();
    return new Proxy(engine, {
      get(target, property) {
        if (property === 'decide') return decide;
        if (property === 'observe') return observe;
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== 'function') return value;
        let method = bound.get(property);
        if (method === undefined) {
          method = (value as (...args: unknown[]) => unknown).bind(target);
          bound.set(property, method);
        }
        return method;
      },
    });
  };

  return {
    wrap,
    onObservation: (_ticket: Ticket, outcome: ObservationOutcome) => {
      trace.getActiveSpan()?.setAttribute('keypool.observation', outcome);
    },
    logMixin: (): Record<string, string> => {
      const span = trace.getActiveSpan();
      // A fresh object each time: pino merges the line's fields into what the mixin returns.
      if (span === undefined) return {};
      const ids = span.spanContext();
      return { trace_id: ids.traceId, span_id: ids.spanId };
    },
    shutdown: () => provider.shutdown(),
  };
}

function describeDecision(span: Span, decision: Decision): void {
  if (decision.kind === 'allow') {
    span.setAttributes({ 'keypool.outcome': 'allow', 'keypool.account': decision.accountName, 'keypool.priority': decision.priority });
    if (decision.tenant !== null) span.setAttribute('keypool.tenant', decision.tenant);
  } else {
    span.setAttributes({ 'keypool.outcome': 'deny', 'keypool.deny_code': decision.code, 'http.response.status_code': decision.status });
  }
}

/** The exporter for the protocol, each loaded only when chosen; both read OTEL_EXPORTER_OTLP_* themselves. */
async function createExporter(settings: TracingConfig): Promise<SpanExporter> {
  if (settings.protocol === 'http/json') {
    const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-http');
    return new OTLPTraceExporter();
  }
  const { OTLPTraceExporter } = await import('@opentelemetry/exporter-trace-otlp-proto');
  return new OTLPTraceExporter();
}
