// Loads the ext_proc and gRPC health service definitions from the vendored protos in proto/.
// Loaded once per process (lazily) and shared by the server and the tests' clients.
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { decodeProcessingRequest, encodeProcessingResponse } from './wire-format.js';

export const EXT_PROC_SERVICE = 'envoy.service.ext_proc.v3.ExternalProcessor';
export const HEALTH_SERVICE = 'grpc.health.v1.Health';

/** Vendored files, relative to one of the include dirs below. */
const EXT_PROC_PROTO = 'envoy/service/ext_proc/v3/external_processor.proto';
const HEALTH_PROTO = 'grpc/health/v1/health.proto';

/** Where the vendored copies of @grpc/grpc-js-xds's deps/ live, relative to the proto root. */
export const VENDORED_DEPS_DIRS: readonly string[] = ['envoy-api', 'xds', 'protoc-gen-validate'];

/**
 * Decoding options. The Process stream is the hot path (two messages per proxied request), so:
 * - keepCase: field names stay as in the .proto (`raw_value`, `request_headers`), the names
 *   Envoy's docs use; no renaming table to consult when reading code against the spec.
 * - longs: String: no int64 is read on the hot path; if one ever is, a string is cheaper and
 *   safer than a Long object.
 * - enums: String: enum values read and written by name (`CONTINUE`), readable in logs. The one
 *   enum we write with a number (HttpStatus.code) is accepted as a number by protobufjs too.
 * - defaults: false: absent fields stay absent instead of being materialised on every decode
 *   (cheaper, and `raw_value` absent vs empty stays visible); the codec treats undefined as empty.
 * - oneofs: true: adds the discriminator (`request: 'request_headers'`) the server dispatches on.
 * - bytes: left as Buffer (the default): `raw_value` and `body` are decoded without base64.
 * Unknown fields (e.g. Envoy 1.40's `protocol_config`, field 11) are skipped by protobufjs.
 */
export const LOADER_OPTIONS: protoLoader.Options = {
  keepCase: true,
  longs: String,
  enums: String,
  defaults: false,
  oneofs: true,
};

/** Walks up from this module (src/ or dist/src/) to the directory holding proto/deps. */
export function findProtoRoot(start: string = dirname(fileURLToPath(import.meta.url))): string {
  let dir = start;
  for (;;) {
    const candidate = join(dir, 'proto');
    if (existsSync(join(candidate, 'deps', 'envoy-api', EXT_PROC_PROTO))) return candidate;
    const parent = dirname(dir);
    if (parent === dir) throw new Error(`keypool: proto/deps not found above ${start}`);
    dir = parent;
  }
}

export interface LoadedProtos {
  readonly packageDefinition: protoLoader.PackageDefinition;
  /** protobufjs codecs (reflection) on both sides: for clients (tests, benches) and checks against the .proto. */
  readonly extProcService: ServiceDefinition;
  /**
   * What keypool's server registers: the same service with the hot path's two codecs hand-written (wire-format.ts):
   * ProcessingRequest decoded, ProcessingResponse encoded, in the same object shapes.
   */
  readonly extProcServerService: ServiceDefinition;
  readonly healthService: ServiceDefinition;
}

let cached: LoadedProtos | null = null;

export function loadProtos(protoRoot: string = findProtoRoot()): LoadedProtos {
  if (cached) return cached;
  const packageDefinition = protoLoader.loadSync([EXT_PROC_PROTO, HEALTH_PROTO], {
    ...LOADER_OPTIONS,
    includeDirs: [...VENDORED_DEPS_DIRS.map((d) => join(protoRoot, 'deps', d)), protoRoot],
  });
  const extProcService = serviceOf(packageDefinition, EXT_PROC_SERVICE);
  cached = {
    packageDefinition,
    extProcService,
    extProcServerService: {
      ...extProcService,
      Process: {
        ...extProcService['Process']!,
        requestDeserialize: decodeProcessingRequest,
        responseSerialize: encodeProcessingResponse as (value: unknown) => Buffer,
      },
    },
    healthService: serviceOf(packageDefinition, HEALTH_SERVICE),
  };
  return cached;
}

function serviceOf(pkg: protoLoader.PackageDefinition, name: string): ServiceDefinition {
  const def = pkg[name];
  if (!def || 'format' in def) throw new Error(`keypool: service ${name} missing from protos`);
  return def as ServiceDefinition;
}
