// grpc.health.v1.Health: SERVING only when the engine has a snapshot, the operator switch is on and
// the server is not draining. Envoy's gRPC health checker calls Check; Watch is for other clients.
import * as grpc from '@grpc/grpc-js';
import type { Logger } from 'pino';
import type { DecisionEngine } from '../../ports.js';

export type ServingStatus = 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';

interface HealthRequest {
  service?: string;
}
interface HealthResponse {
  status: ServingStatus;
}

export interface HealthServiceOptions {
  readonly engine: DecisionEngine;
  readonly logger: Logger;
  /** Service names this server answers for ('' = the server as a whole). */
  readonly serviceNames: readonly string[];
  /** Re-check interval for Watch streams (engine readiness has no change event). */
  readonly pollMs: number;
}

export class HealthService {
  private servingSwitch = true;
  private draining = false;
  private readonly watchers = new Map<grpc.ServerWritableStream<HealthRequest, HealthResponse>, ServingStatus>();
  private pollTimer: NodeJS.Timeout | null = null;
  private readonly known: ReadonlySet<string>;

  constructor(private readonly options: HealthServiceOptions) {
    this.known = new Set(options.serviceNames);
  }

  status(): ServingStatus {
    if (this.draining || !this.servingSwitch) return 'NOT_SERVING';
    try {
      return this.options.engine.isReady() ? 'SERVING' : 'NOT_SERVING';
    } catch (err) {
      this.options.logger.error({ err }, 'engine.isReady() threw; reporting NOT_SERVING');
      return 'NOT_SERVING';
    }
  }

  setServing(serving: boolean): void {
    this.servingSwitch = serving;
    this.notify();
  }

  /** NOT_SERVING from now on; Watch streams get the news and are closed so the server can drain. */
  startDraining(): void {
    this.draining = true;
    this.notify();
    for (const call of [...this.watchers.keys()]) call.end();
    this.watchers.clear();
    this.stopPolling();
  }

  stop(): void {
    this.stopPolling();
  }

  handlers(): grpc.UntypedServiceImplementation {
    return {
      Check: (call: grpc.ServerUnaryCall<HealthRequest, HealthResponse>, callback: grpc.sendUnaryData<HealthResponse>) => {
        const service = call.request.service ?? '';
        if (!this.known.has(service)) {
          callback({ code: grpc.status.NOT_FOUND, details: `unknown service ${service}` });
          return;
        }
        callback(null, { status: this.status() });
      },
      Watch: (call: grpc.ServerWritableStream<HealthRequest, HealthResponse>) => {
        const service = call.request.service ?? '';
        if (this.draining) {
          call.write({ status: 'NOT_SERVING' });
          call.end();
          return;
        }
        // Unknown service: SERVICE_UNKNOWN, and the stream stays open (per the protocol).
        const current = this.known.has(service) ? this.status() : 'SERVICE_UNKNOWN';
        call.write({ status: current });
        this.watchers.set(call, current);
        call.on('cancelled', () => this.unwatch(call));
        call.on('error', () => this.unwatch(call));
        this.startPolling();
      },
    };
  }

  private unwatch(call: grpc.ServerWritableStream<HealthRequest, HealthResponse>): void {
    this.watchers.delete(call);
    if (this.watchers.size === 0) this.stopPolling();
  }

  private notify(): void {
    const now = this.status();
    for (const [call, last] of this.watchers) {
      if (last === now || last === 'SERVICE_UNKNOWN') continue;
      this.watchers.set(call, now);
      call.write({ status: now });
    }
  }

  private startPolling(): void {
    if (this.pollTimer) return;
    this.pollTimer = setInterval(() => this.notify(), this.options.pollMs);
    this.pollTimer.unref();
  }

  private stopPolling(): void {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.pollTimer = null;
  }
}
