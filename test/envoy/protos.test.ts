// Wire fidelity: the vendored protos are the official data-plane-api files (byte-identical to the
// copy @grpc/grpc-js-xds ships), they are exactly the import closure, every field keypool uses has
// the official number, and what keypool puts on the wire decodes with those numbers.
import { readFileSync, readdirSync, statSync, existsSync } from 'node:fs';
import { join, relative } from 'node:path';
import { createRequire } from 'node:module';
import { describe, expect, it } from 'vitest';
import type { MessageTypeDefinition } from '@grpc/proto-loader';
import { findProtoRoot, loadProtos, VENDORED_DEPS_DIRS } from '../../src/adapters/envoy/protos.js';
import { requestViewFrom, responseForDecision, responseHeadersAnswer } from '../../src/adapters/envoy/codec.js';
import type { ProcessingRequestMsg } from '../../src/adapters/envoy/messages.js';
import type { Allow, Deny } from '../../src/core/types.js';
import { at, concat, lenField, readFields, sub } from './wire.js';

const require = createRequire(import.meta.url);
const PACKAGE_DEPS = join(require.resolve('@grpc/grpc-js-xds/package.json'), '..', 'deps');
const PROTO_ROOT = findProtoRoot();
const VENDORED = join(PROTO_ROOT, 'deps');
const ROOT_FILE = 'envoy/service/ext_proc/v3/external_processor.proto';

function listFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const full = join(dir, name);
    return statSync(full).isDirectory() ? listFiles(full) : [full];
  });
}

/** The transitive imports of the ext_proc service, resolved against the package's deps/ roots. */
function importClosure(): string[] {
  const found = new Map<string, string>();
  const visit = (importPath: string): void => {
    if (found.has(importPath) || importPath.startsWith('google/protobuf/')) return;
    const dir = VENDORED_DEPS_DIRS.find((d) => existsSync(join(PACKAGE_DEPS, d, importPath)));
    if (!dir) throw new Error(`import ${importPath} not found in ${PACKAGE_DEPS}`);
    found.set(importPath, join(dir, importPath));
    const text = readFileSync(join(PACKAGE_DEPS, dir, importPath), 'utf8');
    for (const m of text.matchAll(/^\s*import\s+(?:public\s+|weak\s+)?"([^"]+)"/gm)) visit(m[1] as string);
  };
  visit(ROOT_FILE);
  return [...found.values()].sort();
}

describe('vendored protos', () => {
  it('are byte-identical to @grpc/grpc-js-xds deps/', () => {
    const files = listFiles(VENDORED);
    expect(files.length).toBeGreaterThan(0);
    for (const file of files) {
      const rel = relative(VENDORED, file);
      const official = join(PACKAGE_DEPS, rel);
      expect(existsSync(official), `${rel} exists in the package`).toBe(true);
      expect(readFileSync(file).equals(readFileSync(official)), `${rel} is byte-identical`).toBe(true);
    }
  });

  it('are exactly the import closure of external_processor.proto (nothing missing, nothing extra)', () => {
    const vendored = listFiles(VENDORED)
      .map((f) => relative(VENDORED, f))
      .sort();
    expect(vendored).toEqual(importClosure());
  });
});

type Fields = Record<string, [number, string]>;

function fieldsOf(typeName: string): Fields {
  const def = loadProtos().packageDefinition[typeName] as MessageTypeDefinition<object, object> | undefined;
  if (!def) throw new Error(`${typeName} not loaded`);
  const descriptor = def.type as { field: Array<{ name: string; number: number; type: string; typeName: string }> };
  return Object.fromEntries(descriptor.field.map((f) => [f.name, [f.number, f.typeName || f.type]]));
}

describe('fields keypool reads and writes have the official numbers and types', () => {
  // Every field named in src/adapters/envoy/messages.ts, with the number written there.
  const expected: Record<string, Fields> = {
    'envoy.service.ext_proc.v3.ProcessingRequest': {
      request_headers: [2, 'HttpHeaders'],
      response_headers: [3, 'HttpHeaders'],
      request_body: [4, 'HttpBody'],
      response_body: [5, 'HttpBody'],
      request_trailers: [6, 'HttpTrailers'],
      response_trailers: [7, 'HttpTrailers'],
      attributes: [9, 'Attributes'], // map<string, Struct>: proto-loader names the entry after the field
      observability_mode: [10, 'TYPE_BOOL'],
    },
    'envoy.service.ext_proc.v3.HttpHeaders': {
      headers: [1, 'config.core.v3.HeaderMap'],
      attributes: [2, 'Attributes'],
      end_of_stream: [3, 'TYPE_BOOL'],
    },
    'envoy.config.core.v3.HeaderMap': { headers: [1, 'HeaderValue'] },
    'envoy.config.core.v3.HeaderValue': {
      key: [1, 'TYPE_STRING'],
      value: [2, 'TYPE_STRING'],
      raw_value: [3, 'TYPE_BYTES'],
    },
    'envoy.config.core.v3.HeaderValueOption': {
      header: [1, 'HeaderValue'],
      append: [2, 'google.protobuf.BoolValue'],
    },
    'envoy.service.ext_proc.v3.ProcessingResponse': {
      request_headers: [1, 'HeadersResponse'],
      response_headers: [2, 'HeadersResponse'],
      request_body: [3, 'BodyResponse'],
      response_body: [4, 'BodyResponse'],
      request_trailers: [5, 'TrailersResponse'],
      response_trailers: [6, 'TrailersResponse'],
      immediate_response: [7, 'ImmediateResponse'],
      mode_override: [9, 'extensions.filters.http.ext_proc.v3.ProcessingMode'],
      override_message_timeout: [10, 'google.protobuf.Duration'],
    },
    'envoy.extensions.filters.http.ext_proc.v3.ProcessingMode': {
      request_header_mode: [1, 'HeaderSendMode'],
      response_header_mode: [2, 'HeaderSendMode'],
      request_body_mode: [3, 'BodySendMode'],
      response_body_mode: [4, 'BodySendMode'],
      request_trailer_mode: [5, 'HeaderSendMode'],
      response_trailer_mode: [6, 'HeaderSendMode'],
    },
    'envoy.service.ext_proc.v3.HeadersResponse': { response: [1, 'CommonResponse'] },
    'envoy.service.ext_proc.v3.CommonResponse': { header_mutation: [2, 'HeaderMutation'] },
    'envoy.service.ext_proc.v3.HeaderMutation': {
      set_headers: [1, 'config.core.v3.HeaderValueOption'],
      remove_headers: [2, 'TYPE_STRING'],
    },
    'envoy.service.ext_proc.v3.ImmediateResponse': {
      status: [1, 'type.v3.HttpStatus'],
      headers: [2, 'HeaderMutation'],
      body: [3, 'TYPE_BYTES'],
      details: [5, 'TYPE_STRING'],
    },
    'envoy.type.v3.HttpStatus': { code: [1, 'StatusCode'] },
    'grpc.health.v1.HealthCheckRequest': { service: [1, 'TYPE_STRING'] },
    'grpc.health.v1.HealthCheckResponse': { status: [1, 'ServingStatus'] },
  };
  for (const [typeName, fields] of Object.entries(expected)) {
    it(typeName, () => {
      const actual = fieldsOf(typeName);
      for (const [name, spec] of Object.entries(fields)) expect(actual[name], `${typeName}.${name}`).toEqual(spec);
    });
  }

  it('ProcessingMode enum values', () => {
    const def = loadProtos().packageDefinition['envoy.extensions.filters.http.ext_proc.v3.ProcessingMode'] as MessageTypeDefinition<object, object>;
    const enums = (def.type as { enumType: Array<{ name: string; value: Array<{ name: string; number: number }> }> }).enumType;
    const values = Object.fromEntries(enums.map((e) => [e.name, e.value.map((v) => [v.name, v.number])]));
    expect(values).toEqual({
      HeaderSendMode: [['DEFAULT', 0], ['SEND', 1], ['SKIP', 2]],
      BodySendMode: [['NONE', 0], ['STREAMED', 1], ['BUFFERED', 2], ['BUFFERED_PARTIAL', 3]],
    });
  });

  it('grpc.health.v1 ServingStatus values and service paths', () => {
    const def = loadProtos().packageDefinition['grpc.health.v1.HealthCheckResponse'] as MessageTypeDefinition<object, object>;
    const enumType = (def.type as { enumType: Array<{ name: string; value: Array<{ name: string; number: number }> }> })
      .enumType[0];
    expect(enumType?.value.map((v) => [v.name, v.number])).toEqual([
      ['UNKNOWN', 0],
      ['SERVING', 1],
      ['NOT_SERVING', 2],
      ['SERVICE_UNKNOWN', 3],
    ]);
    const health = loadProtos().healthService;
    expect(health.Check?.path).toBe('/grpc.health.v1.Health/Check');
    expect(health.Watch?.path).toBe('/grpc.health.v1.Health/Watch');
    expect(loadProtos().extProcService.Process?.path).toBe('/envoy.service.ext_proc.v3.ExternalProcessor/Process');
  });
});

describe('on the wire', () => {
  const process = () => {
    const method = loadProtos().extProcService.Process;
    if (!method) throw new Error('no Process method');
    return method;
  };

  it('decodes a request carrying fields newer than the vendored protos (protocol_config = 11)', () => {
    // ProcessingRequest{ request_headers(2){ headers(1){ headers(1){ key(1) raw_value(3) } } }, 11: {...} }
    const header = concat(lenField(1, 'x-api-key'), lenField(3, 'sk-client'));
    const headersMsg = lenField(2, lenField(1, lenField(1, header)));
    const protocolConfig = lenField(11, concat(Uint8Array.from([0x08, 0x01]), lenField(9, 'future')));
    const decoded = process().requestDeserialize(Buffer.from(concat(protocolConfig, headersMsg))) as {
      request?: string;
      request_headers?: { headers?: { headers?: Array<{ key: string; raw_value: Uint8Array }> } };
    };
    expect(decoded.request).toBe('request_headers');
    const first = decoded.request_headers?.headers?.headers?.[0];
    expect(first?.key).toBe('x-api-key');
    expect(Buffer.from(first?.raw_value ?? []).toString()).toBe('sk-client');
  });

  it('reads source.address from attributes encoded with the official numbers', () => {
    // attributes(9): entry{ key(1) "envoy.filters.http.ext_proc", value(2) Struct{ fields(1): entry{
    //   key(1) "source.address", value(2) Value{ string_value(3) } } } }
    const value = lenField(3, '[::1]:443');
    const structEntry = concat(lenField(1, 'source.address'), lenField(2, value));
    const struct = lenField(1, structEntry);
    const attrEntry = concat(lenField(1, 'envoy.filters.http.ext_proc'), lenField(2, struct));
    const bytes = concat(lenField(2, lenField(1, new Uint8Array())), lenField(9, attrEntry));
    const decoded = process().requestDeserialize(Buffer.from(bytes)) as ProcessingRequestMsg;
    expect(requestViewFrom(decoded, 'openai').clientAddress).toBe('[::1]:443');
  });

  it('an Allow serialises as raw_value only with an explicit append=false', () => {
    const allow: Allow = {
      kind: 'allow',
      keyId: 'k',
      accountId: 'a',
      accountName: 'acct',
      priority: 1,
      tenant: null,
      removeHeaders: ['x-api-key'],
      setHeaders: [['authorization', 'Bearer sk-pool']],
    };
    const bytes = process().responseSerialize(responseForDecision(allow));
    // ProcessingResponse.request_headers(1) -> HeadersResponse.response(1) -> CommonResponse.header_mutation(2)
    const mutation = at(bytes, [1, 1, 2]);
    expect(mutation).toBeDefined();
    expect(sub(mutation!, 2).map((b) => Buffer.from(b).toString())).toEqual(['x-api-key']);
    const option = sub(mutation!, 1)[0]!;
    const header = at(option, [1])!;
    const headerFields = readFields(header);
    expect(headerFields.map((f) => f.number)).toEqual([1, 3]); // key and raw_value, never value (2)
    expect(Buffer.from(headerFields[1]!.bytes!).toString()).toBe('Bearer sk-pool');
    // append (2) is present as a BoolValue message whose value (1) is false (written or defaulted).
    const append = readFields(option).filter((f) => f.number === 2);
    expect(append).toHaveLength(1);
    const appendValue = readFields(append[0]!.bytes!);
    expect(appendValue.every((f) => f.number === 1 && f.varint === 0n)).toBe(true);
    expect(readFields(option).some((f) => f.number === 3)).toBe(false); // no append_action
  });

  it('the hold answer serialises as response_headers (2) plus mode_override (9) with response trailers SEND', () => {
    const bytes = process().responseSerialize(responseHeadersAnswer(true));
    expect(readFields(bytes).map((f) => f.number)).toEqual([2, 9]);
    const mode = Object.fromEntries(readFields(at(bytes, [9])!).map((f) => [f.number, f.varint]));
    // SEND = 1, SKIP = 2, NONE = 0 (proto3 defaults may be written or left out: both read as 0).
    expect({ 1: 0n, 2: 0n, 3: 0n, 4: 0n, 5: 0n, 6: 0n, ...mode }).toEqual({ 1: 1n, 2: 1n, 3: 0n, 4: 0n, 5: 2n, 6: 1n });
    expect(readFields(process().responseSerialize(responseHeadersAnswer(false))).map((f) => f.number)).toEqual([2]);
  });

  it('a Deny serialises with an explicit HttpStatus code, body and details', () => {
    const deny: Deny = {
      kind: 'deny',
      status: 429,
      code: 'pool_exhausted',
      message: 'm',
      headers: [['retry-after', '7']],
      body: '{"error":{}}',
    };
    const bytes = process().responseSerialize(responseForDecision(deny));
    const immediate = at(bytes, [7])!;
    const status = at(immediate, [1])!;
    expect(readFields(status)).toEqual([{ number: 1, wireType: 0, varint: 429n }]);
    expect(Buffer.from(at(immediate, [3])!).toString()).toBe('{"error":{}}');
    expect(Buffer.from(at(immediate, [5])!).toString()).toBe('pool_exhausted');
    const names = sub(at(immediate, [2])!, 1).map((o) => Buffer.from(at(o, [1, 1])!).toString());
    expect(names).toEqual(['content-type', 'retry-after']);
  });
});
