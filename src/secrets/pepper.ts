// The server-side pepper for client key digests: digest = HMAC-SHA256(pepper, presented key), hex.
//
// KEYPOOL_KEY_PEPPER formats (at least 32 bytes after decoding; changing it invalidates every client key):
//   base64:<base64>   e.g. `base64:$(openssl rand -base64 32)`
//   hex:<hex>         e.g. `hex:$(openssl rand -hex 32)`
//   anything else     taken as raw UTF-8 bytes (at least 32 of them)
// Errors describe the problem, never the value.
import { randomBytes } from 'node:crypto';

export const MIN_PEPPER_BYTES = 32;

export class PepperError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PepperError';
  }
}

export function parsePepper(value: string, variable = 'KEYPOOL_KEY_PEPPER'): Uint8Array {
  const text = value.trim();
  let bytes: Buffer;
  if (text.startsWith('base64:')) {
    const encoded = text.slice('base64:'.length);
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(encoded) || encoded.length % 4 === 1) {
      throw new PepperError(`${variable}: the value after "base64:" is not valid base64`);
    }
    bytes = Buffer.from(encoded, 'base64');
  } else if (text.startsWith('hex:')) {
    const encoded = text.slice('hex:'.length);
    if (!/^(?:[0-9a-fA-F]{2})+$/.test(encoded)) throw new PepperError(`${variable}: the value after "hex:" is not valid hex`);
    bytes = Buffer.from(encoded, 'hex');
  } else {
    bytes = Buffer.from(text, 'utf8');
  }
  if (bytes.length < MIN_PEPPER_BYTES) {
    throw new PepperError(`${variable}: must be at least ${MIN_PEPPER_BYTES} bytes, got ${bytes.length} (generate one with: echo "base64:$(openssl rand -base64 32)")`);
  }
  return new Uint8Array(bytes);
}

/** A fresh random pepper in the `base64:` form. */
export function generatePepperSpec(): string {
  return `base64:${randomBytes(MIN_PEPPER_BYTES).toString('base64')}`;
}
