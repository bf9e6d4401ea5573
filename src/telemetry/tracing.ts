// OpenTelemetry traces, off unless the standard OTEL_* variables ask for them. This file never imports an
// @opentelemetry package: with tracing off, nothing of the SDK is loaded and the engine is not wrapped (zero cost).
// With tracing on, ./otel.ts (the only importer of @opentelemetry/*) is loaded once at start.
import type { DecisionEngine, Ticket } from '../ports.js';
import type { ObservationOutcome } from '../core/types.js';

/** OTLP over HTTP, as the exporter packages speak it. `grpc` is not offered (it would pull in a second gRPC stack). */
export type OtlpProtocol = 'http/protobuf' | 'http/json';

/** Parsed from the OTEL_* environment by src/config.ts (`tracing`). */
export interface TracingConfig {
  readonly protocol: OtlpProtocol;
  /** service.name of every span (OTEL_SERVICE_NAME, default `keypool`). */
  readonly serviceName: string;
}

/** Spans and log correlation, once started. */
export interface Tracing {
  /**
   * The engine with a span per decision and per observation, parented on the request's W3C `traceparent`; every
   * other member (release, renew, counters) is the engine's own.
   */
  wrap<E extends DecisionEngine>(engine: E): E;
  /** Engine hook (`onObservation`): adds the observation's outcome to the active observe span. Never throws. */
  readonly onObservation: (ticket: Ticket, outcome: ObservationOutcome) => void;
  /** pino `mixin`: `trace_id` and `span_id` of the active span on every log line written inside one. */
  readonly logMixin: () => Record<string, string>;
  /** Exports what is buffered and stops (bounded by the exporter's own timeout). */
  shutdown(): Promise<void>;
}

/** Loads the SDK (only now) and registers a tracer provider with an OTLP exporter. */
export async function startTracing(settings: TracingConfig): Promise<Tracing> {
  const { startOtel } = await import('./otel.js');
  return startOtel(settings);
}
