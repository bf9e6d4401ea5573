// One ext_proc Process stream = one proxied HTTP request (or, for the upstream-filter variant, one
// attempt). A small state machine:
//
//   awaiting_headers --request_headers--> deciding --allow--> allowed --response_headers--> observed
//                                                  |                  \--(slot held)--> holding
//                                                  \--deny / error--> answered_final        |
//                                                                 response_trailers or stream end
// Two detours, each only when needed:
//   awaiting_headers --request_headers (pool needs the model from the body)--> awaiting_body --request_body--> deciding
//   allowed --response_headers (error status with a body)--> awaiting_response_body --response_body--> observed
//
// Rules that keep Envoy failing closed:
// - never end the stream with gRPC OK before request_headers is answered (Envoy would then forward
//   the request without keypool, whatever failure_mode_allow says): nonsense gets a gRPC error;
// - an engine rejection or an undeliverable decision becomes ImmediateResponse 503 keypool_unavailable;
// - the ticket is released exactly once, when the upstream's response is over for keypool: at its
//   response headers, or, when the ticket holds a concurrency slot and a body follows, at the end of
//   the body (holding: see HOLD_UNTIL_RESPONSE_END in codec.ts); and in any case when the stream
//   ends for any other reason (half-close, cancel/reset, error, server shutdown), including a reset
//   no event reported: the stream is checked when its decision is ready, and while it holds a ticket
//   the LeaseKeeper renews the lease and checks that the stream is still alive (../lease-keeper.ts).
// - an observation that changes who may be admitted (429 cooldown, 401/403, circuit) is committed to
//   the shared state before the response_headers answer goes out (bounded by the engine), so no
//   replica admits that account once Envoy has passed the 429 on.
// - never end a holding stream with a gRPC error: the client's response has started, so Envoy
//   (failure_mode_allow false) would reset it mid-body. Server shutdown ends holding streams with OK.
// - a decision that waits in the admission queue (queue.max_wait_ms) first sends Envoy an override_message_timeout
//   of the wait plus a margin (the filter's max_message_timeout bounds it); a stream that closes while waiting
//   aborts the wait (the engine drops the waiter and gives back any admission that lands after it).
// Messages are handled strictly in arrival order (one promise chain), so answers stay in order.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DecisionEngine, ResponseOrigin, Ticket } from '../../ports.js';
import {
  RESPONSE_BODY_CONTINUE,
  RESPONSE_HEADERS_CONTINUE,
  RESPONSE_HEADERS_READ_BODY,
  RESPONSE_TRAILERS_CONTINUE,
  continueResponseFor,
  endsMessage,
  headerBagFrom,
  messageTimeoutOverride,
  requestBodyFrom,
  requestHeadersBufferBody,
  requestViewFrom,
  responseForDecision,
  responseHeadersAnswer,
  responseOriginFrom,
  statusFrom,
  unavailableResponse,
} from './codec.js';
import type { GrpcServerCall } from './grpc-server.js';
import type { ProcessingRequestMsg, ProcessingResponseMsg } from './messages.js';
import { RETRY_CONTEXT_METADATA_KEY, RETRY_CONTEXT_ENABLED, RetryContexts } from './retry-context.js';
import { LazyAbort } from '../lazy-abort.js';
import { LeaseKeeper, type HeldTicket } from '../lease-keeper.js';
import type { UsageTickets } from './usage-tickets.js';
import { wantsErrorBody } from '../../core/provider-errors.js';
import { requestMayReportUsage } from '../../core/usage.js';
import { readableErrorBody } from './content-coding.js';
import { NO_REQUEST_BODY, type HeaderBag, type RequestView } from '../../core/types.js';

export interface ProcessStreamDeps {
  readonly engine: DecisionEngine;
  readonly logger: Logger;
  /** Lower-case gRPC metadata key carrying the route's provider. */
  readonly providerMetadataKey: string;
  readonly onClosed: (stream: ProcessStream) => void;
  /**
   * Per-request memory so later upstream attempts are decided on the client's headers; null = off. Used only by
   * streams whose gRPC metadata carries `x-keypool-retry-context: enabled` (envoy-failover.yaml); others skip it.
   */
  readonly retries: RetryContexts | null;
  readonly nowMs: () => number;
  /** Where allowed tickets wait for the usage observer's stream of the same request (usage-observer.ts); null = off. */
  readonly usageTickets?: UsageTickets | null;
}

let warnedMissingProvider = false;
let warnedRetryContextValue = false;

type Phase =
  | 'awaiting_headers'
  /** The decision needs the request body (its model): Envoy buffers it for keypool (BUFFER_REQUEST_BODY). */
  | 'awaiting_body'
  | 'deciding'
  | 'allowed'
  /** The response's status may carry an error body keypool reads (READ_ERROR_BODY): observed once it arrives. */
  | 'awaiting_response_body'
  | 'observed'
  | 'holding'
  | 'answered_final'
  | 'failed';

/** A response whose observation waits for its error body. */
interface PendingResponse {
  readonly status: number;
  readonly headers: HeaderBag;
  readonly origin: ResponseOrigin | undefined;
}

export class ProcessStream {
  private phase: Phase = 'awaiting_headers';
  private ticket: Ticket | null = null;
  private released = false;
  private closed = false;
  private warnedPassThrough = false;
  /** x-request-id of an allowed request remembered for retries, until this attempt is settled. */
  private rememberedRequestId: string | null = null;
  private queue: Promise<void> = Promise.resolve();
  /** This stream's entry in the lease keeper while it holds a ticket. */
  private held: HeldTicket | null = null;
  /**
   * The decision's options: aborted when the stream closes (a decision waiting in the admission queue leaves it at
   * once); before it waits, Envoy's message timer (message_timeout) is extended, or it would fail the request.
   */
  private readonly gone = new LazyAbort((maxWaitMs) => this.write(messageTimeoutOverride(maxWaitMs)));
  /** The request's view while its body is being buffered (phase awaiting_body). */
  private pendingView: RequestView | null = null;
  /** The response whose observation waits for its body (phase awaiting_response_body). */
  private pendingResponse: PendingResponse | null = null;

  constructor(
    private readonly call: GrpcServerCall<ProcessingRequestMsg, ProcessingResponseMsg>,
    private readonly deps: ProcessStreamDeps,
  ) {}

  /** The peer reset or cancelled the stream, whether or not an event said so (grpc-js can miss one). */
  private peerGone(): boolean {
    return this.call.cancelled || this.call.destroyed;
  }

  start(): void {
    this.call.on('data', (msg: ProcessingRequestMsg) => this.enqueue(() => this.handle(msg)));
    // Envoy half-closed its side: finish ours once every queued answer is written.
    this.call.on('end', () => this.enqueue(async () => this.onPeerEnd()));
    this.call.on('cancelled', () => this.close());
    this.call.on('error', (err: unknown) => {
      this.deps.logger.debug({ err }, 'ext_proc stream error');
      this.close();
    });
    this.call.on('close', () => this.close());
  }

  /**
   * Server shutdown. A stream still deciding or observing fails (Envoy sees the error and fails the request
   * closed). A holding stream ends with OK instead: its response is already on its way to the client, which an
   * error would cut off; its slot is freed early.
   */
  abort(reason: string): void {
    if (this.phase === 'holding' && !this.closed) {
      this.deps.logger.debug({ reason }, 'ext_proc shutdown: letting a streamed response finish without keypool');
      this.call.end();
    } else {
      this.fail(grpc.status.UNAVAILABLE, reason);
    }
    this.close();
  }

  private enqueue(task: () => Promise<void>): void {
    this.queue = this.queue.then(task).catch((err: unknown) => {
      // handle() catches what it expects; anything here is a bug: fail this stream closed.
      this.deps.logger.error({ err }, 'ext_proc stream handler failed');
      this.fail(grpc.status.INTERNAL, 'keypool internal error');
    });
  }

  private async handle(msg: ProcessingRequestMsg): Promise<void> {
    if (this.closed || this.phase === 'failed') return;
    switch (msg.request) {
      case 'request_headers':
        return this.onRequestHeaders(msg);
      case 'response_headers':
        return this.onResponseHeaders(msg);
      case 'response_trailers':
        return this.phase === 'holding' ? this.onResponseEnd() : this.onPassThrough(msg.request);
      case 'request_body':
        return this.phase === 'awaiting_body' ? this.onRequestBody(msg) : this.onPassThrough(msg.request);
      case 'response_body':
        return this.phase === 'awaiting_response_body' ? this.onResponseBody(msg) : this.onPassThrough(msg.request);
      case 'request_trailers':
        return this.onPassThrough(msg.request);
      default:
        return this.protocolError(`unexpected ProcessingRequest ${String(msg.request)}`);
    }
  }

  private async onRequestHeaders(msg: ProcessingRequestMsg): Promise<void> {
    if (this.phase !== 'awaiting_headers') return this.protocolError(`request_headers in phase ${this.phase}`);
    this.phase = 'deciding';
    let view = requestViewFrom(msg, this.provider());
    const retries = this.retryMemory();
    const original = retries?.recall(view.headers, this.deps.nowMs());
    if (original) {
      this.deps.logger.debug({ requestId: RetryContexts.requestIdOf(view.headers) }, 'later attempt of a remembered request');
      view = { ...view, headers: original };
    }
    if (endsMessage(msg.request_headers)) {
      // A request without a body (GET /v1/models) names no model: any account of the pool may serve it.
      if (this.needsBody(view)) view = { ...view, body: NO_REQUEST_BODY };
    } else if (this.needsBody(view)) {
      // The pool needs the model and only the body names it: decide once Envoy has buffered the body.
      let answer: ProcessingResponseMsg;
      try {
        answer = requestHeadersBufferBody(this.deps.engine.clientCredentialHeaders?.(view) ?? []);
      } catch (err) {
        this.deps.logger.error({ err }, 'keypool could not ask for the request body; answering 503');
        this.phase = 'answered_final';
        this.write(unavailableResponse());
        return;
      }
      this.pendingView = view;
      this.phase = 'awaiting_body';
      this.write(answer);
      return;
    }
    return this.decideAndAnswer(view, 'request_headers');
  }

  /** The buffered request body keypool asked for: decide now, answering with the header mutation. */
  private async onRequestBody(msg: ProcessingRequestMsg): Promise<void> {
    const view = this.pendingView;
    this.pendingView = null;
    if (view === null) return this.protocolError('request_body without pending request headers');
    this.phase = 'deciding';
    return this.decideAndAnswer({ ...view, body: requestBodyFrom(msg) }, 'request_body');
  }

  private needsBody(view: RequestView): boolean {
    try {
      return this.deps.engine.needsBody?.(view) ?? false;
    } catch (err) {
      this.deps.logger.error({ err }, 'engine.needsBody threw; deciding on headers');
      return false;
    }
  }

  private async decideAndAnswer(view: RequestView, answering: 'request_headers' | 'request_body'): Promise<void> {
    const retries = this.retryMemory();
    let response: ProcessingResponseMsg;
    try {
      const outcome = await this.deps.engine.decide(view, this.gone);
      if (this.closed || this.peerGone()) {
        // Envoy gave up (message_timeout, client reset) while we decided: hand the slot and the reservation back.
        if (outcome.ticket) this.abandonTicket(outcome.ticket);
        this.close();
        return;
      }
      try {
        response = responseForDecision(outcome.decision, answering);
      } catch (err) {
        if (outcome.ticket) this.abandonTicket(outcome.ticket);
        throw err;
      }
      if (outcome.decision.kind === 'allow') {
        if (outcome.ticket) {
          this.holdTicket(outcome.ticket);
          if (requestMayReportUsage(view.headers)) this.deps.usageTickets?.register(RetryContexts.requestIdOf(view.headers), outcome.ticket, this.deps.nowMs());
        }
        if (retries) {
          retries.remember(view.headers, outcome.decision, this.deps.nowMs());
          this.rememberedRequestId = RetryContexts.requestIdOf(view.headers);
        }
      }
      this.phase = outcome.decision.kind === 'allow' ? 'allowed' : 'answered_final';
    } catch (err) {
      this.deps.logger.error({ err, provider: view.provider }, 'keypool could not decide; answering 503');
      response = unavailableResponse();
      this.phase = 'answered_final';
    }
    this.write(response);
  }

  private async onResponseHeaders(msg: ProcessingRequestMsg): Promise<void> {
    if (this.phase === 'awaiting_headers') {
      // A route that skips request_headers processing: nothing to observe, let it through.
      this.deps.logger.warn('ext_proc response_headers before request_headers; continuing without observation');
      this.write(RESPONSE_HEADERS_CONTINUE);
      return;
    }
    if (this.phase !== 'allowed') return this.protocolError(`response_headers in phase ${this.phase}`);
    this.phase = 'observed';
    const headers = headerBagFrom(msg.response_headers?.headers);
    const status = statusFrom(headers);
    this.settleRetry(status);
    const ticket = this.ticket;
    if (ticket !== null && status !== null && wantsErrorBody(status) && !endsMessage(msg.response_headers)) {
      const origin = responseOriginFrom(msg);
      if (origin !== 'gateway') {
        // An error status: its body may say what the status cannot (insufficient_quota, API_KEY_INVALID, a model
        // error). Ask Envoy for it; the observation (and the slot's release) waits for it, the answer for the commit.
        this.pendingResponse = { status, headers, origin };
        this.phase = 'awaiting_response_body';
        this.write(RESPONSE_HEADERS_READ_BODY);
        return;
      }
    }
    // Nothing more to learn on this stream. The slot is free now, unless the account limits concurrency and a body
    // follows: the provider counts the request until its body ends, so keep the slot (and this stream) until then.
    const hold = ticket !== null && ticket.holdsConcurrencySlot && !endsMessage(msg.response_headers);
    let committed: Promise<void> | null = null;
    if (ticket) {
      if (status === null) {
        this.deps.logger.warn({ account: ticket.accountName }, 'upstream response without a valid :status; not observed');
        if (!hold) this.releaseTicket(ticket);
      } else {
        const origin = responseOriginFrom(msg);
        // The release rides on the observation (one state write); the engine releases even if observing fails.
        const release = !hold && this.markReleased(ticket);
        try {
          committed = this.deps.engine.observe(ticket, status, headers, { release, origin });
        } catch (err) {
          this.deps.logger.error({ err }, 'engine.observe threw');
        }
      }
    }
    if (hold) this.phase = 'holding';
    // A cooldown, invalidation or circuit must be in the shared state before Envoy passes this answer on.
    if (committed !== null) await committed;
    this.write(responseHeadersAnswer(hold));
  }

  /**
   * The error body keypool asked for (at most Envoy's buffer limit; keypool reads MAX_ERROR_BODY_BYTES of it, decoded): observe
   * the response with it, commit, then let the response (unchanged) go on. The slot is released here: the response is
   * over for the provider once its (small) error body is in.
   */
  private async onResponseBody(msg: ProcessingRequestMsg): Promise<void> {
    const pending = this.pendingResponse;
    this.pendingResponse = null;
    this.phase = 'observed';
    const ticket = this.ticket;
    let committed: Promise<void> | null = null;
    if (ticket !== null && pending !== null) {
      // Bounded and decoded as its Content-Encoding says (gzip, deflate, br); unreadable: observed on the status alone.
      const body = readableErrorBody(msg.response_body?.body, pending.headers);
      const release = this.markReleased(ticket);
      try {
        committed = this.deps.engine.observe(ticket, pending.status, pending.headers, { release, origin: pending.origin, body });
      } catch (err) {
        this.deps.logger.error({ err }, 'engine.observe threw');
      }
    }
    if (committed !== null) await committed;
    this.write(RESPONSE_BODY_CONTINUE);
  }

  /**
   * The stream ends while keypool waits for an error body (Envoy ignored the override: a filter without the
   * allowed_override_modes entry; or the client left): observe on the status and headers alone, as keypool did before
   * it read bodies, releasing the slot with it. The response has already gone on, so nothing waits for the commit.
   */
  private observeWithoutBody(): void {
    const pending = this.pendingResponse;
    this.pendingResponse = null;
    const ticket = this.ticket;
    if (pending === null || ticket === null || !this.markReleased(ticket)) return;
    try {
      void this.deps.engine.observe(ticket, pending.status, pending.headers, { release: true, origin: pending.origin });
    } catch (err) {
      this.deps.logger.error({ err }, 'engine.observe threw');
    }
  }

  /** The upstream's trailers: its response is over, so is the holding. */
  private async onResponseEnd(): Promise<void> {
    this.phase = 'observed';
    if (this.ticket) this.releaseTicket(this.ticket);
    this.write(RESPONSE_TRAILERS_CONTINUE);
  }

  private async onPassThrough(kind: string): Promise<void> {
    if (!this.warnedPassThrough) {
      this.warnedPassThrough = true;
      this.deps.logger.warn({ kind }, 'ext_proc sent a message keypool does not ask for (check processing_mode); continuing');
    }
    const response = continueResponseFor(kind);
    if (response) this.write(response);
  }

  private async onPeerEnd(): Promise<void> {
    if (this.closed || this.phase === 'failed') return;
    if (this.phase === 'awaiting_headers' || this.phase === 'awaiting_body' || this.phase === 'deciding') {
      // Never OK before the request was decided (a clean close would let Envoy forward it with the client's key).
      this.fail(grpc.status.FAILED_PRECONDITION, 'stream ended before request_headers was answered');
    } else {
      this.call.end();
    }
    this.close();
  }

  private protocolError(what: string): void {
    this.deps.logger.warn({ phase: this.phase }, `ext_proc protocol error: ${what}`);
    this.fail(grpc.status.INVALID_ARGUMENT, `keypool: ${what}`);
  }

  /** Ends the stream with a gRPC error (Envoy with failure_mode_allow=false answers the client 5xx). */
  private fail(code: grpc.status, details: string): void {
    if (this.phase === 'failed') return;
    this.phase = 'failed';
    if (!this.closed && !this.call.writableEnded) {
      this.call.emit('error', { code, details });
    }
    this.close();
  }

  private write(response: ProcessingResponseMsg): void {
    if (this.closed || this.call.writableEnded) return;
    this.call.write(response);
  }

  private provider(): string {
    const values = this.call.metadata.get(this.deps.providerMetadataKey);
    const first = values[0];
    const provider = typeof first === 'string' ? first.trim() : '';
    if (!provider && !warnedMissingProvider) {
      // Once per process: a misconfigured route would otherwise log on every request (the engine denies them).
      warnedMissingProvider = true;
      this.deps.logger.warn(
        `no ${this.deps.providerMetadataKey} gRPC metadata on a stream: set it per route with ExtProcPerRoute grpc_initial_metadata`,
      );
    }
    return provider;
  }

  /** The retry memory when the server has it and this stream asks for it in its gRPC metadata; else null. */
  private retryMemory(): RetryContexts | null {
    const retries = this.deps.retries;
    if (retries === null) return null;
    const first = this.call.metadata.get(RETRY_CONTEXT_METADATA_KEY)[0];
    if (first === undefined) return null;
    if (typeof first === 'string' && first.trim().toLowerCase() === RETRY_CONTEXT_ENABLED) return retries;
    if (!warnedRetryContextValue) {
      // Once per process, like the provider warning: a misconfigured cluster would log on every request.
      warnedRetryContextValue = true;
      this.deps.logger.warn(
        `${RETRY_CONTEXT_METADATA_KEY} gRPC metadata is not "${RETRY_CONTEXT_ENABLED}": retry memory stays off for such streams`,
      );
    }
    return null;
  }

  /** Keeps `ticket` as this stream's, renewed and watched by the lease keeper until it is released. */
  private holdTicket(ticket: Ticket): void {
    this.ticket = ticket;
    this.held = { ticket, isAlive: () => !this.closed && !this.peerGone(), onDead: () => this.close() };
    LeaseKeeper.of(this.deps.engine).hold(this.held);
  }

  /** Records that this stream's ticket is released (by the engine, or here); false when it already was. */
  private markReleased(ticket: Ticket): boolean {
    if (ticket !== this.ticket) return true;
    if (this.released) return false;
    this.released = true;
    if (this.held !== null) LeaseKeeper.of(this.deps.engine).drop(this.held);
    this.held = null;
    return true;
  }

  private releaseTicket(ticket: Ticket): void {
    this.giveBack(ticket, 'release');
  }

  /** A ticket whose request Envoy will never forward: its slot and its token reservation go back. */
  private abandonTicket(ticket: Ticket): void {
    this.giveBack(ticket, 'abandon');
  }

  /** Once per ticket, whichever way it goes back. */
  private giveBack(ticket: Ticket, how: 'release' | 'abandon'): void {
    if (!this.markReleased(ticket)) return;
    try {
      this.deps.engine[how](ticket);
    } catch (err) {
      this.deps.logger.error({ err }, `engine.${how} threw`);
    }
  }

  private settleRetry(status: number | null): void {
    const id = this.rememberedRequestId;
    if (id === null) return;
    this.rememberedRequestId = null;
    this.deps.retries?.settle(id, status, this.deps.nowMs());
  }

  /** Idempotent: releases the ticket (if any, once) and forgets the stream. */
  private close(): void {
    if (this.closed) return;
    this.closed = true;
    this.gone.abort();
    this.settleRetry(null);
    this.observeWithoutBody();
    if (this.ticket) this.releaseTicket(this.ticket);
    this.deps.onClosed(this);
  }
}
