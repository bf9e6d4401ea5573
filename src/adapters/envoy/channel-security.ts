// Who may talk to the ext_proc gRPC server. Anyone who can call `Process` with any valid client key receives a
// pooled upstream key in the header mutation, and `source.address` is whatever the caller says: so the channel is
// either loopback (sidecar: Envoy and keypool share a host or pod) or TLS with client authentication:
//   - mTLS: KEYPOOL_GRPC_TLS_CLIENT_CA; the TLS handshake refuses any client certificate that CA did not sign;
//   - token: KEYPOOL_GRPC_TOKEN, sent by Envoy as `authorization: Bearer <token>` in grpc_service.initial_metadata;
//     a call without it ends UNAUTHENTICATED before its handler runs (no decision, nothing from the engine).
// Both apply to every service on the port, grpc.health.v1 included (Envoy's health checker uses the same channel).
// Certificates are read at start and again on reload() (`keypool serve` calls it on SIGHUP); a reload that fails
// keeps serving the previous certificates. The rules here know no gRPC transport: server.ts hands the TLS options,
// certificate updates and the per-call token check to its gRPC server (grpc-server.ts).
import { readFile } from 'node:fs/promises';
import type { SecureServerOptions } from 'node:http2';
import { createSecureContext, type SecureContextOptions } from 'node:tls';
import { ConfigError, isLoopbackListen } from '../../config.js';
import { bearerTokenOf, tokenDigest, tokenMatches } from '../../secrets/bearer-token.js';

export interface ChannelSecurityConfig {
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

/**
 * The channel's security, independent of the gRPC transport: what a secure listener needs (node:http2 secure-server
 * options, certificate updates) and the per-call token rule. The gRPC server on node:http2 takes `tls`, calls
 * setSecureContext from onCertificates, and asks authorizes() before it dispatches any call.
 */
export interface ChannelSecurity {
  /** For the startup log: `plaintext`, `tls`, `tls+mtls`, `tls+token`, `plaintext+token`, ... (never a secret). */
  readonly mode: string;
  /**
   * node:http2 secure-server options of the listener as last loaded: certificate chain and key, and for mTLS the
   * client CA with requestCert and rejectUnauthorized; null = plaintext.
   */
  tls(): SecureServerOptions | null;
  /** True when every call must present the token (authorizes() then refuses calls without it). */
  readonly tokenRequired: boolean;
  /** Whether a call's `authorization` metadata values pass the token rule (always true without a token). */
  authorizes(authorization: readonly unknown[]): boolean;
  /** Called with the new certificates after every successful reload (a secure server's setSecureContext). */
  onCertificates(listener: (context: SecureContextOptions) => void): void;
  /** Re-reads the certificate files; on failure keeps the current ones and rejects with a ConfigError. */
  reload(): Promise<void>;
}

/** Why `settings` must not start, naming the variables to set; null when it may. The one home of the rule. */
export function channelSecurityProblem(settings: ChannelSecurityConfig): ConfigError | null {
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

/** Checks the settings and reads the certificate files; throws ConfigError. */
export async function openChannelSecurity(settings: ChannelSecurityConfig): Promise<ChannelSecurity> {
  const problem = channelSecurityProblem(settings);
  if (problem) throw problem;
  const digest = settings.token === undefined ? null : tokenDigest(settings.token);
  const authorizes = (authorization: readonly unknown[]): boolean => digest === null || presentsToken(authorization, digest);
  const tokenMode = digest === null ? '' : '+token';
  if (settings.tlsCertFile === undefined || settings.tlsKeyFile === undefined) {
    return {
      mode: `plaintext${tokenMode}`,
      tokenRequired: digest !== null,
      tls: () => null,
      authorizes,
      onCertificates: () => undefined,
      reload: async () => undefined,
    };
  }
  const files = { cert: settings.tlsCertFile, key: settings.tlsKeyFile, clientCa: settings.tlsClientCaFile };
  let current = await readCertificates(files);
  const listeners = new Set<(context: SecureContextOptions) => void>();
  const mtls = files.clientCa !== undefined;
  return {
    mode: `tls${mtls ? '+mtls' : ''}${tokenMode}`,
    tokenRequired: digest !== null,
    // Only certificates the client CA signed: the handshake itself refuses the rest (no certificate, another CA).
    tls: () => ({ ...current, ...(mtls ? { requestCert: true, rejectUnauthorized: true } : {}) }),
    authorizes,
    onCertificates: (listener) => void listeners.add(listener),
    async reload() {
      current = await readCertificates(files);
      for (const listener of listeners) listener(current);
    },
  };
}

function presentsToken(values: readonly unknown[], digest: Buffer): boolean {
  if (values.length !== 1 || typeof values[0] !== 'string') return false;
  const presented = bearerTokenOf(values[0]);
  return presented !== null && tokenMatches(presented, digest);
}

interface CertificateFiles {
  readonly cert: string;
  readonly key: string;
  readonly clientCa: string | undefined;
}

interface Certificates {
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly ca?: Buffer;
}

/** Reads and checks one set of PEM files: Node verifies they parse and that the key matches the certificate. */
async function readCertificates(files: CertificateFiles): Promise<Certificates> {
  const [cert, key, ca] = await Promise.all([
    readPem(files.cert, 'KEYPOOL_GRPC_TLS_CERT'),
    readPem(files.key, 'KEYPOOL_GRPC_TLS_KEY'),
    files.clientCa === undefined ? undefined : readPem(files.clientCa, 'KEYPOOL_GRPC_TLS_CLIENT_CA'),
  ]);
  const certificates = ca === undefined ? { cert, key } : { cert, key, ca };
  try {
    // Refused here, before the listener would install it (a bad context would fail every new connection).
    createSecureContext(certificates);
  } catch (error) {
    throw new ConfigError('KEYPOOL_GRPC_TLS_CERT', `the TLS certificate, key or client CA is unusable (${(error as Error).message})`);
  }
  return certificates;
}

async function readPem(file: string, variable: string): Promise<Buffer> {
  try {
    return await readFile(file);
  } catch (error) {
    throw new ConfigError(variable, `cannot read ${file} (${(error as NodeJS.ErrnoException).code ?? 'error'})`);
  }
}
