// The few PostgreSQL wire-protocol messages the embedded share reads and writes (frontend/backend protocol 3).

export const MSG_QUERY = 0x51; // 'Q'
export const MSG_SYNC = 0x53; // 'S'
export const MSG_TERMINATE = 0x58; // 'X'
export const MSG_NOTIFICATION = 0x41; // 'A' (backend)
export const SYNC_MESSAGE = new Uint8Array([MSG_SYNC, 0, 0, 0, 4]);

/** Finds NotificationResponse messages in a backend byte stream (messages may span chunks). */
export class NotificationScanner {
  #buffer = new Uint8Array(0);

  constructor(private readonly onNotification: (channel: string, payload: string) => void) {}

  push(chunk: Uint8Array): void {
    const data = this.#buffer.length === 0 ? chunk : concat(this.#buffer, chunk);
    let offset = 0;
    while (data.length - offset >= 5) {
      const length = readInt32(data, offset + 1);
      if (length < 4 || data.length - offset < 1 + length) break;
      if (data[offset] === MSG_NOTIFICATION) this.#notification(data.subarray(offset + 5, offset + 1 + length));
      offset += 1 + length;
    }
    this.#buffer = data.slice(offset);
  }

  #notification(body: Uint8Array): void {
    // Int32 sender pid, then channel and payload as NUL-terminated strings.
    const channelEnd = body.indexOf(0, 4);
    if (channelEnd < 0) return;
    const payloadEnd = body.indexOf(0, channelEnd + 1);
    if (payloadEnd < 0) return;
    const decoder = new TextDecoder();
    this.onNotification(decoder.decode(body.subarray(4, channelEnd)), decoder.decode(body.subarray(channelEnd + 1, payloadEnd)));
  }
}

export function startupParameter(message: Uint8Array, name: string): Buffer | null {
  // Int32 length, Int32 protocol version, then name\0value\0 pairs ending with \0.
  const buffer = Buffer.from(message.buffer, message.byteOffset, message.byteLength);
  let offset = 8;
  while (offset < buffer.length && buffer[offset] !== 0) {
    const keyEnd = buffer.indexOf(0, offset);
    if (keyEnd < 0) return null;
    const valueEnd = buffer.indexOf(0, keyEnd + 1);
    if (valueEnd < 0) return null;
    if (buffer.toString('utf8', offset, keyEnd) === name) return Buffer.from(buffer.subarray(keyEnd + 1, valueEnd));
    offset = valueEnd + 1;
  }
  return null;
}

export function errorResponse(code: string, message: string): Uint8Array {
  const fields = Buffer.concat([
    field('S', 'FATAL'),
    field('V', 'FATAL'),
    field('C', code),
    field('M', message),
    Buffer.from([0]),
  ]);
  const header = Buffer.alloc(5);
  header[0] = 0x45; // 'E'
  header.writeInt32BE(4 + fields.length, 1);
  return new Uint8Array(Buffer.concat([header, fields]));
}

export function field(kind: string, value: string): Buffer {
  return Buffer.concat([Buffer.from(kind, 'ascii'), Buffer.from(value, 'utf8'), Buffer.from([0])]);
}

export function simpleQuery(text: string): Uint8Array {
  const body = Buffer.from(`${text}\0`, 'utf8');
  const header = Buffer.alloc(5);
  header[0] = MSG_QUERY;
  header.writeInt32BE(4 + body.length, 1);
  return new Uint8Array(Buffer.concat([header, body]));
}

export function readInt32(data: Uint8Array, offset: number): number {
  return ((data[offset]! << 24) | (data[offset + 1]! << 16) | (data[offset + 2]! << 8) | data[offset + 3]!) >>> 0;
}

export function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a, 0);
  out.set(b, a.length);
  return out;
}

// Exported for tests of the wire helpers.
