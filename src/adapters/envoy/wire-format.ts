// Hand-written protobuf wire format for the two ext_proc messages on keypool's hot path: ProcessingRequest (decoded)
// and ProcessingResponse (encoded), in exactly the plain-object shapes of messages.ts, so codec.ts and stream.ts do
// not know which decoder ran. Replaces protobufjs's reflection codec for the Process stream (measured in
// bench:extproc: see README "Performance"); the health service and the tests' clients keep protobufjs.
//
// Decoding reads only what keypool uses and skips every other field by its wire type, whatever its number: unknown
// fields (Envoy 1.40's protocol_config, field 11; metadata_context, 8) cost a skip, not an object. Within
// google.protobuf.Struct attributes only scalar values are decoded (keypool reads `source.address`, a string);
// nested structs and lists are skipped. A header's value is decoded straight from the received bytes into `value`:
// raw_value (UTF-8) when present and non-empty, else the legacy `value` field (Envoy's rule, see codec.ts), so no
// Buffer view is made per header; `raw_value` is never set by this decoder.
// Encoding writes the fields keypool sets, in field-number order, as protobufjs does (test/envoy/wire-format.test.ts
// checks both directions against protobufjs and the vendored protos).
// The two directions live beside this file: wire-decode.ts (ProcessingRequest) and wire-encode.ts
// (ProcessingResponse), with what they share in wire-common.ts; callers import them through this module.

export { WireFormatError } from './wire-common.js';
export { decodeProcessingRequest } from './wire-decode.js';
export { encodeProcessingResponse } from './wire-encode.js';
