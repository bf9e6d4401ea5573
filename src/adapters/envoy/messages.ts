// Plain-object shapes of the ext_proc messages keypool reads and writes, as @grpc/proto-loader
// produces and accepts them with LOADER_OPTIONS (keepCase, enums as strings, defaults off, oneofs
// on, bytes as Buffer). Only the fields keypool uses are declared; field numbers are in the comments
// so they can be checked against proto/deps/envoy-api (the test in test/envoy/protos.test.ts does).

/**
 * envoy.config.core.v3.HeaderValue. keypool's own decoder (wire-format.ts) resolves raw_value vs value itself and
 * delivers the text in `value`; protobufjs (tests, benches) delivers both fields as sent.
 */
export interface HeaderValueMsg {
  key?: string; // 1
  value?: string; // 2 (legacy; Envoy >= 1.27 sends raw_value)
  raw_value?: Uint8Array; // 3
}

/** envoy.config.core.v3.HeaderMap */
export interface HeaderMapMsg {
  headers?: HeaderValueMsg[]; // 1
}

/**
 * google.protobuf.Value as protobufjs decodes it. NOTE: protobufjs resolves google/protobuf/struct.proto
 * to its built-in definition whose field names are camelCase, so keepCase does not apply here
 * (`stringValue`, not `string_value`; the oneof discriminator `kind` is `'stringValue'`).
 */
export interface StructValueMsg {
  kind?: string;
  nullValue?: string;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMsg;
  listValue?: { values?: StructValueMsg[] };
}

/** google.protobuf.Struct */
export interface StructMsg {
  fields?: Record<string, StructValueMsg>;
}

/** envoy.service.ext_proc.v3.HttpHeaders */
export interface HttpHeadersMsg {
  headers?: HeaderMapMsg; // 1
  attributes?: Record<string, StructMsg>; // 2 (deprecated; moved to ProcessingRequest.attributes)
  end_of_stream?: boolean; // 3
}

export type ProcessingRequestKind =
  | 'request_headers'
  | 'response_headers'
  | 'request_body'
  | 'response_body'
  | 'request_trailers'
  | 'response_trailers';

/** envoy.service.ext_proc.v3.ProcessingRequest */
export interface ProcessingRequestMsg {
  request?: ProcessingRequestKind | string; // oneof discriminator
  request_headers?: HttpHeadersMsg; // 2
  response_headers?: HttpHeadersMsg; // 3
  request_body?: { body?: Uint8Array; end_of_stream?: boolean }; // 4
  response_body?: { body?: Uint8Array; end_of_stream?: boolean }; // 5
  request_trailers?: { trailers?: HeaderMapMsg }; // 6
  response_trailers?: { trailers?: HeaderMapMsg }; // 7
  attributes?: Record<string, StructMsg>; // 9
  observability_mode?: boolean; // 10
}

/** envoy.config.core.v3.HeaderValueOption; `append` is google.protobuf.BoolValue (2). */
export interface HeaderValueOptionMsg {
  header: { key: string; raw_value: Buffer }; // 1
  append: { value: boolean }; // 2
}

/** envoy.service.ext_proc.v3.HeaderMutation */
export interface HeaderMutationMsg {
  set_headers?: HeaderValueOptionMsg[]; // 1
  remove_headers?: string[]; // 2
}

/** envoy.service.ext_proc.v3.CommonResponse (status CONTINUE = default, left unset). */
export interface CommonResponseMsg {
  header_mutation?: HeaderMutationMsg; // 2
}

/** envoy.service.ext_proc.v3.HeadersResponse */
export interface HeadersResponseMsg {
  response?: CommonResponseMsg; // 1
}

/** envoy.service.ext_proc.v3.ImmediateResponse */
export interface ImmediateResponseMsg {
  status: { code: number }; // 1 (envoy.type.v3.HttpStatus, code = 1)
  headers?: HeaderMutationMsg; // 2
  body?: Buffer; // 3
  details?: string; // 5
}

/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.HeaderSendMode, by name (DEFAULT = 0 is never written). */
export type HeaderSendMode = 'SEND' | 'SKIP';

/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode.BodySendMode, by name. */
export type BodySendMode = 'NONE' | 'STREAMED' | 'BUFFERED' | 'BUFFERED_PARTIAL';

/** envoy.extensions.filters.http.ext_proc.v3.ProcessingMode: every field written, so it compares equal to a config entry. */
export interface ProcessingModeMsg {
  readonly request_header_mode: HeaderSendMode; // 1
  readonly response_header_mode: HeaderSendMode; // 2
  readonly request_body_mode: BodySendMode; // 3
  readonly response_body_mode: BodySendMode; // 4
  readonly request_trailer_mode: HeaderSendMode; // 5
  readonly response_trailer_mode: HeaderSendMode; // 6
}

/**
 * envoy.service.ext_proc.v3.ProcessingResponse: exactly one member of the `response` oneof is set.
 * `mode_override` (9) changes the processing mode for the rest of this HTTP request; Envoy honours it
 * only in an answer to request_headers or response_headers, only with the filter's
 * allow_mode_override: true, and (when set) only if it equals an entry of allowed_override_modes.
 */
export type ProcessingResponseMsg =
  | { request_headers: HeadersResponseMsg; mode_override?: ProcessingModeMsg } // 1, 9
  | { response_headers: HeadersResponseMsg; mode_override?: ProcessingModeMsg } // 2, 9
  | { request_body: { response?: CommonResponseMsg } } // 3
  | { response_body: { response?: CommonResponseMsg } } // 4
  | { request_trailers: { header_mutation?: HeaderMutationMsg } } // 5
  | { response_trailers: { header_mutation?: HeaderMutationMsg } } // 6
  | { immediate_response: ImmediateResponseMsg } // 7
  | { override_message_timeout: DurationMsg }; // 10 (alone: see OverrideMessageTimeoutMsg)

/** google.protobuf.Duration (seconds = 1, int64; nanos = 2, int32). */
export interface DurationMsg {
  seconds: number; // 1
  nanos: number; // 2
}

/**
 * ProcessingResponse.override_message_timeout (10), sent ALONE before the real answer: Envoy stops the message timer,
 * starts one of this length (at most the filter's max_message_timeout, else ignored) and ignores every other field of
 * that message; at most once per processing state. keypool sends it before a decision waits in the admission queue.
 */
export type OverrideMessageTimeoutMsg = Extract<ProcessingResponseMsg, { override_message_timeout: DurationMsg }>;
