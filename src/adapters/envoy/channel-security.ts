// Who may talk to the ext_proc gRPC server. Anyone who can call `Process` with any valid client key receives a
// pooled upstream key in the header mutation, and `source.address` is whatever the caller says: so the channel is
// either loopback (sidecar: Envoy and keypool share a host or pod) or TLS with client authentication:
//   - mTLS: KEYPOOL_GRPC_TLS_CLIENT_CA; the TLS handshake refuses any client certificate that CA did not sign;
//   - token: KEYPOOL_GRPC_TOKEN, sent by Envoy as `authorization: Bearer <token>` in grpc_service.initial_metadata;
//     a call without it ends UNAUTHENTICATED before its handler runs (no decision, nothing from the engine).
// Both apply to every service on the port, grpc.health.v1 included (Envoy's health checker uses the same channel).
// Certificates are read at start and again on reload() (`keypool serve` calls it on SIGHUP); a reload that fails
// keeps serving the previous certificates.
import { readFile } from 'node:fs/promises';
import { createSecureContext } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { ConfigError, isLoopbackListen } from '../../config.js';
import { bearerTokenOf, tokenDigest, tokenMatches } from '../../secrets/bearer-token.js';

export interface ChannelSecuritySettings {
  /** KEYPOOL_GRPC_LISTEN */
  readonly listen: string;
  /** KEYPOOL_GRPC_TLS_CERT */
  readonly tlsCertFile?: string | undefined;
  /** KEYPOOL_GRPC_TLS_KEY */
  readonly tlsKeyFile?: string | undefined;
  /** KEYPOOL_GRPC_TLS_CLIENT_CA */
  readonly tlsClientCaFile?: string | undefined;
  /** KEYPOOL_GRPC_TOKEN */
  readonly token?: string | undefined;
}

export interface ChannelSecurity {
  /** What to bind the ext_proc server with (TLS context updates and the token check included). */
  readonly credentials: grpc.ServerCredentials;
  /** For the startup log: `plaintext`, `tls`, `tls+mtls`, `tls+token`, `plaintext+token`, ... (never a secret). */
  readonly mode: string;
  /** Re-reads the certificate files; on failure keeps the current ones and rejects with a ConfigError. */
  reload(): Promise<void>;
}

/** Why `settings` must not start, naming the variables to set; null when it may. The one home of the rule. */
export function channelSecurityProblem(settings: ChannelSecuritySettings): ConfigError | null {
  const tls = settings.tlsCertFile !== undefined || settings.tlsKeyFile !== undefined;
  if (tls && (settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined)) {
    return new ConfigError(
      settings.tlsCertFile === undefined ? 'KEYPOOL_GRPC_TLS_CERT' : 'KEYPOOL_GRPC_TLS_KEY',
      'KEYPOOL_GRPC_TLS_CERT and KEYPOOL_GRPC_TLS_KEY go together (PEM certificate chain and its private key)',
    );
  }
  if (settings.tlsClientCaFile !== undefined && !tls) {
    return new ConfigError(
      'KEYPOOL_GRPC_TLS_CLIENT_CA',
      'client certificates need TLS: also set KEYPOOL_GRPC_TLS_CERT and KEYPOOL_GRPC_TLS_KEY',
    );
  }
  if (isLoopbackListen(settings.listen)) return null;
  const clientAuth = settings.tlsClientCaFile !== undefined || settings.token !== undefined;
  if (tls && clientAuth) return null;
  return new ConfigError(
    'KEYPOOL_GRPC_LISTEN',
    `the ext_proc gRPC server would listen on ${settings.listen}, which is not a loopback address, without ` +
      `${tls ? 'client authentication' : 'TLS and client authentication'}: anyone reaching it with a client key ` +
      'could read pooled upstream keys. Set KEYPOOL_GRPC_TLS_CERT and KEYPOOL_GRPC_TLS_KEY plus ' +
      'KEYPOOL_GRPC_TLS_CLIENT_CA (mTLS) or KEYPOOL_GRPC_TOKEN, or listen on 127.0.0.1 (sidecar)',
  );
}

/** Checks the settings, reads the certificate files and builds the server credentials; throws ConfigError. */
export async function openChannelSecurity(settings: ChannelSecuritySettings): Promise<ChannelSecurity> {
  const problem = channelSecurityProblem(settings);
  if (problem) throw problem;
  const interceptors = settings.token === undefined ? [] : [tokenInterceptor(tokenDigest(settings.token))];
  const tokenMode = settings.token === undefined ? '' : '+token';
  if (settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined) {
    const insecure = grpc.ServerCredentials.createInsecure();
    return {
      credentials: interceptors.length > 0 ? grpc.experimental.createServerCredentialsWithInterceptors(insecure, interceptors) : insecure,
      mode: `plaintext${tokenMode}`,
      reload: async () => undefined,
    };
  }
  const files = { cert: settings.tlsCertFile, key: settings.tlsKeyFile, clientCa: settings.tlsClientCaFile };
  const provider = new ReloadableCertificates(files);
  await provider.reload();
  const requireClientCert = files.clientCa !== undefined;
  // grpc-js names the first parameter caCertificateProvider but passes it on as the identity provider; this
  // provider answers both roles, and the CA role only when a client CA is configured (null = no client certs).
  const tls = grpc.experimental.createCertificateProviderServerCredentials(provider, requireClientCert ? provider : null, requireClientCert);
  return {
    credentials: interceptors.length > 0 ? grpc.experimental.createServerCredentialsWithInterceptors(tls, interceptors) : tls,
    mode: `tls${requireClientCert ? '+mtls' : ''}${tokenMode}`,
    reload: () => provider.reload(),
  };
}

/**
 * Refuses, with UNAUTHENTICATED and before the method's handler exists, every call whose metadata lacks
 * `authorization: Bearer <token>`. Messages of a refused call are dropped, never handed on.
 */
function tokenInterceptor(digest: Buffer): grpc.ServerInterceptor {
  return (_method, call) => {
    let refused = false;
    return new grpc.ServerInterceptingCall(call, {
      start: (next) =>
        next({
          onReceiveMetadata: (metadata, passOn) => {
            if (presentsToken(metadata, digest)) return passOn(metadata);
            refused = true;
            call.sendStatus({ code: grpc.status.UNAUTHENTICATED, details: 'keypool: missing or invalid gRPC token', metadata: new grpc.Metadata() });
          },
          onReceiveMessage: (message, passOn) => {
            if (!refused) passOn(message);
          },
          onReceiveHalfClose: (passOn) => {
            if (!refused) passOn();
          },
        }),
    });
  };
}

function presentsToken(metadata: grpc.Metadata, digest: Buffer): boolean {
  const values = metadata.get('authorization');
  if (values.length !== 1 || typeof values[0] !== 'string') return false;
  const presented = bearerTokenOf(values[0]);
  return presented !== null && tokenMatches(presented, digest);
}

interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string | undefined;
}

/** A grpc-js CertificateProvider fed from PEM files, re-read on demand. */
class ReloadableCertificates implements grpc.experimental.CertificateProvider {
  private identity: grpc.experimental.IdentityCertificateUpdate | null = null;
  private ca: grpc.experimental.CaCertificateUpdate | null = null;
  private readonly identityListeners = new Set<grpc.experimental.IdentityCertificateUpdateListener>();
  private readonly caListeners = new Set<grpc.experimental.CaCertificateUpdateListener>();

  constructor(private readonly files: CertificateFiles) {}

  async reload(): Promise<void> {
    const [certificate, privateKey, caCertificate] = await Promise.all([
      readPem(this.files.cert, 'KEYPOOL_GRPC_TLS_CERT'),
      readPem(this.files.key, 'KEYPOOL_GRPC_TLS_KEY'),
      this.files.clientCa === undefined ? undefined : readPem(this.files.clientCa, 'KEYPOOL_GRPC_TLS_CLIENT_CA'),
    ]);
    try {
      // Node checks that the key matches the certificate and that every PEM parses; a bad set is refused here,
      // before grpc-js would install it (it drops every new connection after a failed update).
      createSecureContext({ cert: certificate, key: privateKey, ...(caCertificate ? { ca: caCertificate } : {}) });
    } catch (error) {
      throw new ConfigError('KEYPOOL_GRPC_TLS_CERT', `the TLS certificate, key or client CA is unusable (${(error as Error).message})`);
    }
    this.identity = { certificate, privateKey };
    this.ca = caCertificate === undefined ? null : { caCertificate };
    for (const listener of this.identityListeners) listener(this.identity);
    if (this.ca) for (const listener of this.caListeners) listener(this.ca);
  }

  // The current certificates reach a new listener on the next microtask, not during the add: grpc-js registers
  // its server's watcher only after adding these listeners, and would miss a synchronous first update.
  addCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.add(listener);
    queueMicrotask(() => {
      if (this.ca && this.caListeners.has(listener)) listener(this.ca);
    });
  }
  removeCaCertificateListener(listener: grpc.experimental.CaCertificateUpdateListener): void {
    this.caListeners.delete(listener);
  }
  addIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.add(listener);
    queueMicrotask(() => {
      if (this.identity && this.identityListeners.has(listener)) listener(this.identity);
    });
  }
  removeIdentityCertificateListener(listener: grpc.experimental.IdentityCertificateUpdateListener): void {
    this.identityListeners.delete(listener);
  }
}

async function readPem(file: string, variable: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new ConfigError(variable, `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
