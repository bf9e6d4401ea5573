// The usage observer: the ext_proc stream of a second Envoy filter in observability_mode (envoy/envoy-usage.yaml) that
// sends keypool each response body as it streams and never waits for keypool. The body is read for the provider's
// token usage (src/core/usage-stream.ts) and recorded once at its end through the engine (Engine.recordUsage).
// Measured with bench:sse-usage: the client's per-chunk delay stays within noise of no body processing, where STREAMED
// bodies on the deciding filter add a gRPC round trip to every chunk (README "Tokens and usage accounting").
//
// The stream finds its request's ticket by x-request-id (usage-tickets.ts). Only 2xx JSON or SSE bodies are read;
// gzip/deflate/br bodies (content-coding.ts) are decompressed, up to MAX_DECODED_BYTES. Nothing here may fail the
// client's request: the stream only ever answers when Envoy says it is NOT in observability mode (a misconfigured
// filter), and then with CONTINUE at once, so the request goes on either way.
import type { Logger } from 'pino';
import type { DecisionEngine, Ticket } from '../../ports.js';
import { UsageReader, type BodyKind } from '../../core/usage-stream.js';
import { usageShapeFor } from '../../core/usage.js';
import { continueResponseFor, headerBagFrom, statusFrom } from './codec.js';
import { contentCodingOf, streamDecoderFor, type StreamDecoder } from './content-coding.js';
import type { GrpcServerCall } from './grpc-server.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from './messages.js';
import { RetryContexts } from './retry-context.js';
import type { UsageTickets } from './usage-tickets.js';

/** gRPC metadata the observer filter sends (grpc_service.initial_metadata) to be told apart from the deciding filter. */
export const USAGE_OBSERVER_METADATA_KEY = 'x-keypool-usage';
export const USAGE_OBSERVER_VALUE = 'observe';
/** Most decompressed bytes read from one body; past it the body is left alone (a decompression bomb reads as no usage). */
export const MAX_DECODED_BYTES = 64 * 1024 * 1024;

export interface UsageObserverDeps {
  readonly engine: DecisionEngine;
  readonly tickets: UsageTickets;
  readonly logger: Logger;
  readonly nowMs: () => number;
  readonly onClosed: (stream: UsageObserverStream) => void;
}


export class UsageObserverStream {
  private requestId: string | null = null;
  private ticket: Ticket | null = null;
  private reader: UsageReader | null = null;
  private decoder: StreamDecoder | null = null;
  private decodedBytes = 0;
  private sawBody = false;
  private done = false;
  private closed = false;

  constructor(
    private readonly call: GrpcServerCall<ProcessingRequestMsg, ProcessingResponseMsg>,
    private readonly deps: UsageObserverDeps,
  ) {}

  start(): void {
    this.call.on('data', (msg: ProcessingRequestMsg) => this.handle(msg));
    this.call.on('end', () => {
      this.call.end();
      this.close();
    });
    this.call.on('cancelled', () => this.close());
    this.call.on('error', () => this.close());
    this.call.on('close', () => this.close());
  }

  /** Server shutdown: nothing to save (the client's response does not depend on this stream). */
  abort(_reason?: string): void {
    this.call.end();
    this.close();
  }

  private handle(msg: ProcessingRequestMsg): void {
    try {
      this.read(msg);
    } catch (err) {
      this.deps.logger.warn({ err }, 'usage observer: unreadable message; usage of this response not recorded');
      this.stopReading();
    }
    if (msg.observability_mode !== true && msg.request !== undefined) {
      // Not in observability mode: Envoy waits for an answer. Let the request go on unchanged.
      const answer = continueResponseFor(msg.request);
      if (answer !== null) this.call.write(answer);
    }
  }

  private read(msg: ProcessingRequestMsg): void {
    switch (msg.request) {
      case 'request_headers':
        this.requestId = RetryContexts.requestIdOf(headerBagFrom(msg.request_headers?.headers));
        return;
      case 'response_headers':
        return this.onResponseHeaders(msg);
      case 'response_body': {
        const body = msg.response_body?.body;
        if (body !== undefined && body.length > 0) this.push(body);
        if (msg.response_body?.end_of_stream === true) this.finish();
        return;
      }
      case 'response_trailers':
        return this.finish();
      default:
        return;
    }
  }

  private onResponseHeaders(msg: ProcessingRequestMsg): void {
    this.ticket = this.deps.tickets.take(this.requestId, this.deps.nowMs());
    if (this.ticket === null) return;
    const headers = headerBagFrom(msg.response_headers?.headers);
    const status = statusFrom(headers);
    const kind = bodyKindOf(first(headers['content-type']));
    if (status === null || status < 200 || status > 299 || kind === null) return;
    const decoder = streamDecoderFor(contentCodingOf(headers));
    if (decoder === undefined) return; // An encoding we cannot read: no usage rather than garbage.
    const shape = this.ticket.usageShape ?? usageShapeFor('none');
    const reader = new UsageReader(shape, { kind });
    this.reader = reader;
    if (decoder !== null) {
      this.decoder = decoder;
      decoder.on('data', (chunk: Buffer) => {
        this.decodedBytes += chunk.length;
        if (this.decodedBytes > MAX_DECODED_BYTES) this.stopReading();
        else reader.push(chunk);
      });
      decoder.on('error', () => this.stopReading());
      decoder.on('end', () => this.record());
    }
    if (msg.response_headers?.end_of_stream === true) this.finish();
  }

  private push(body: Uint8Array): void {
    if (this.reader === null || this.done) return;
    this.sawBody = true;
    if (this.decoder !== null) this.decoder.write(body);
    else this.reader.push(body);
  }

  /** The body is over (or cut): read what it said. A decoder records once it has flushed. */
  private finish(): void {
    if (this.reader === null || this.done) return;
    this.done = true;
    if (this.decoder !== null) this.decoder.end();
    else this.record();
  }

  private record(): void {
    const reader = this.reader;
    const ticket = this.ticket;
    this.reader = null;
    if (reader === null || ticket === null) return;
    const usage = reader.finish();
    if (usage !== null) this.deps.engine.recordUsage?.(ticket, usage, reader.model);
  }

  private stopReading(): void {
    this.done = true;
    this.reader = null;
    this.decoder?.destroy();
    this.decoder = null;
  }

  private close(): void {
    if (this.closed) return;
    this.closed = true;
    // A stream cut before its body ended: what was read still counts (the provider bills what it generated);
    // the reader estimates what the cut left out.
    if (this.sawBody && !this.done) this.finish();
    this.deps.onClosed(this);
  }
}

function first(value: string | readonly string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : value?.[0];
}

function bodyKindOf(contentType: string | undefined): BodyKind | null {
  const type = (contentType ?? '').toLowerCase();
  if (type.includes('text/event-stream')) return 'sse';
  if (type.includes('json')) return 'json';
  return null;
}

