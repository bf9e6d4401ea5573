// The one logger factory. Redaction covers every place a credential could ride along in a log object.
import { pino, type Logger } from 'pino';

export type { Logger };

/** Paths pino replaces with "[redacted]" wherever they appear in a logged object. */
export const REDACTED_PATHS: readonly string[] = [
  'authorization',
  'headers.authorization',
  'headers["x-api-key"]',
  'headers["api-key"]',
  'headers["x-goog-api-key"]',
  'headers["proxy-authorization"]',
  'headers.cookie',
  '*.authorization',
  '*["x-api-key"]',
  '*["api-key"]',
  '*["x-goog-api-key"]',
  'apiKey',
  'secret',
  'plaintextKey',
  'key',
  '*.apiKey',
  '*.secret',
  '*.plaintextKey',
  'adminToken',
  'pepper',
  'encryptionKeys',
  'keyPepper',
  'databaseUrl',
  'redisUrl',
];

export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  return pino(
    {
      level,
      base: { service: 'keypool' },
      redact: { paths: [...REDACTED_PATHS], censor: '[redacted]' },
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    destination as pino.DestinationStream | undefined,
  );
}
