// Incremental reader of a response body for its token usage: fed chunks as the gateway forwards them, answers once at
// the end. Pure (no I/O, no clock) and bounded: a hostile or broken body can neither grow its memory past the limits
// below nor make it throw.
//
// Two body kinds, told apart by the first non-blank character unless the caller knows:
//   SSE  (`data: {...}` events)  each event's JSON payload is read as it completes; a line or event longer than
//        maxEventChars is skipped whole. Lines end with LF, CRLF or CR, split anywhere across chunks (a CR at a
//        chunk's end and the LF that starts the next are one line end). `[DONE]` and comments are ignored.
//   JSON (`{...}` or `[...]`)    buffered up to maxJsonChars and parsed at the end; a longer body keeps only its first
//        4 KiB and its last tailChars (usage sits at the end of every provider's answer, the model at the top or the
//        end), and the last usage object there is read alone.
// A stream that never reports usage (OpenAI without stream_options.include_usage, a cut stream) gets an estimate:
// output = generated characters / CHARS_PER_TOKEN, input 0 (unknown here), estimated: true.
import {
  anthropicUsage,
  estimateTokensFromChars,
  generatedChars,
  modelInText,
  modelOf,
  readJsonBody,
  usageFromJsonBody,
  usageFromMessage,
  type TokenUsage,
  type UsageShape,
} from './usage.js';

export type BodyKind = 'sse' | 'json' | 'auto';

export interface UsageReaderOptions {
  readonly kind?: BodyKind;
  /** Longest SSE line or event kept (characters); longer ones are skipped. Provider events are far below. */
  readonly maxEventChars?: number;
  /** Longest JSON body parsed whole (characters); beyond, only its head and tail are kept. */
  readonly maxJsonChars?: number;
  /** Characters of an oversized JSON body's end kept to find its usage in. */
  readonly tailChars?: number;
}

export const DEFAULT_MAX_EVENT_CHARS = 256 * 1024;
/**
 * A JSON body is buffered until it ends (its usage comes last), once per concurrent response: kept small, since a
 * larger body (an embeddings answer runs to megabytes) is read from its kept ends just as well.
 */
export const DEFAULT_MAX_JSON_CHARS = 256 * 1024;
export const DEFAULT_TAIL_CHARS = 64 * 1024;
/** Characters of an oversized JSON body's start kept to find its model in (providers put it near the top). */
const HEAD_CHARS = 4096;

const LF = 10;
const CR = 13;

export class UsageReader {
  private kind: BodyKind;
  private readonly decoder = new TextDecoder('utf-8');
  private readonly maxEventChars: number;
  private readonly maxJsonChars: number;
  private readonly tailChars: number;
  // SSE state.
  private line = '';
  private lineOverflow = false;
  private afterCR = false;
  private data: string[] = [];
  private dataChars = 0;
  private eventOverflow = false;
  private eventsRead = 0;
  private chars = 0;
  private reported: TokenUsage | null = null;
  /** Anthropic: message_delta carries the final output count; without one the stream was cut. */
  private sawFinalDelta = false;
  // JSON state.
  private json = '';
  private jsonTruncated = false;
  private head = '';
  private foundModel: string | null = null;

  constructor(
    private readonly shape: UsageShape,
    options: UsageReaderOptions = {},
  ) {
    this.kind = options.kind ?? 'auto';
    this.maxEventChars = options.maxEventChars ?? DEFAULT_MAX_EVENT_CHARS;
    this.maxJsonChars = options.maxJsonChars ?? DEFAULT_MAX_JSON_CHARS;
    this.tailChars = Math.min(options.tailChars ?? DEFAULT_TAIL_CHARS, this.maxJsonChars);
  }

  /** Feeds the next chunk of the body (bytes as they came, or already decoded text). */
  push(chunk: Uint8Array | string): void {
    const text = typeof chunk === 'string' ? chunk : this.decoder.decode(chunk, { stream: true });
    this.pushText(text);
  }

  /** The model the body named first (for the price table); known once finish() ran. */
  get model(): string | null {
    return this.foundModel;
  }

  /** The usage the body reported (or the estimate), after the last chunk; null when it said nothing readable. */
  finish(): TokenUsage | null {
    this.pushText(this.decoder.decode());
    if (this.kind === 'json') return this.finishJson();
    if (this.kind === 'auto') return null;
    if (!this.lineOverflow && this.line !== '') this.takeLine(this.line);
    this.line = '';
    this.dispatch();
    return this.finishSse();
  }

  private pushText(text: string): void {
    if (text === '') return;
    if (this.kind === 'auto') {
      const first = /\S/.exec(text);
      if (first === null) return;
      this.kind = first[0] === '{' || first[0] === '[' ? 'json' : 'sse';
      text = text.slice(first.index);
    }
    if (this.kind === 'json') this.pushJson(text);
    else this.pushSse(text);
  }

  private pushJson(text: string): void {
    if (this.head.length < HEAD_CHARS) this.head += text.slice(0, HEAD_CHARS - this.head.length);
    this.json += text;
    if (this.json.length > this.maxJsonChars) {
      this.json = this.json.slice(this.json.length - this.tailChars);
      this.jsonTruncated = true;
    }
  }

  private finishJson(): TokenUsage | null {
    if (!this.jsonTruncated) {
      const { usage, model } = readJsonBody(this.shape, this.json);
      this.json = '';
      this.foundModel = model;
      return usage;
    }
    // Providers name the model at the top (chat) or near the end (embeddings): look in both kept ends.
    this.foundModel = modelInText(this.head) ?? modelInText(this.json);
    const object = lastObjectAfterKey(this.json, this.shape === 'gemini' ? 'usageMetadata' : 'usage');
    if (object === null) return null;
    const key = this.shape === 'gemini' ? 'usageMetadata' : 'usage';
    return usageFromJsonBody(this.shape, `{"${key}":${object}}`);
  }

  private pushSse(text: string): void {
    let start = 0;
    for (let i = 0; i < text.length; i += 1) {
      const code = text.charCodeAt(i);
      if (this.afterCR) {
        // The previous chunk ended with CR: an LF starting this one completes that CRLF, not a second line end.
        this.afterCR = false;
        if (code === LF) {
          start = i + 1;
          continue;
        }
      }
      if (code !== LF && code !== CR) continue;
      this.appendLine(text, start, i);
      this.endLine();
      if (code === CR) {
        if (i + 1 === text.length) this.afterCR = true;
        else if (text.charCodeAt(i + 1) === LF) i += 1;
      }
      start = i + 1;
    }
    if (start < text.length) this.appendLine(text, start, text.length);
  }

  private appendLine(text: string, from: number, to: number): void {
    if (this.lineOverflow || from === to) return;
    if (this.line.length + (to - from) > this.maxEventChars) {
      this.line = '';
      this.lineOverflow = true;
      this.eventOverflow = true;
      return;
    }
    this.line += text.slice(from, to);
  }

  private endLine(): void {
    const line = this.line;
    const overflowed = this.lineOverflow;
    this.line = '';
    this.lineOverflow = false;
    if (overflowed) return;
    if (line === '') this.dispatch();
    else this.takeLine(line);
  }

  private takeLine(line: string): void {
    if (!line.startsWith('data')) return; // event:, id:, retry:, comments: the payload says what it is.
    let value: string;
    if (line.length === 4) value = '';
    else if (line.charCodeAt(4) === 58 /* : */) value = line.charCodeAt(5) === 32 ? line.slice(6) : line.slice(5);
    else return;
    this.dataChars += value.length + 1;
    if (this.dataChars > this.maxEventChars) {
      this.eventOverflow = true;
      this.data = [];
      return;
    }
    if (!this.eventOverflow) this.data.push(value);
  }

  private dispatch(): void {
    const data = this.data.join('\n');
    const overflowed = this.eventOverflow;
    this.data = [];
    this.dataChars = 0;
    this.eventOverflow = false;
    if (overflowed || data === '' || data === '[DONE]') return;
    let message: unknown;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (typeof message !== 'object' || message === null) return;
    this.eventsRead += 1;
    this.foundModel ??= modelOf(message);
    this.chars += generatedChars(this.shape, message);
    this.readEvent(message as Record<string, unknown>);
  }

  private readEvent(message: Record<string, unknown>): void {
    if (this.shape !== 'anthropic') {
      this.reported = usageFromMessage(this.shape, message) ?? this.reported;
      return;
    }
    if (message.type === 'message_start') {
      const start = typeof message.message === 'object' && message.message !== null ? (message.message as Record<string, unknown>).usage : undefined;
      this.reported = anthropicUsage(start, null) ?? this.reported;
    } else if (message.type === 'message_delta') {
      const next = anthropicUsage(message.usage, this.reported);
      if (next !== null) {
        this.reported = next;
        this.sawFinalDelta = true;
      }
    }
  }

  private finishSse(): TokenUsage | null {
    const estimate = estimateTokensFromChars(this.chars);
    if (this.reported === null) {
      if (this.eventsRead === 0) return null;
      return { inputTokens: 0, outputTokens: estimate, cachedInputTokens: 0, cacheCreationInputTokens: 0, estimated: true };
    }
    if (this.shape === 'anthropic' && !this.sawFinalDelta) {
      // message_start's output count is a placeholder (1 or so); the stream ended before its final count.
      return { ...this.reported, outputTokens: Math.max(this.reported.outputTokens, estimate), estimated: true };
    }
    return this.reported;
  }
}

/**
 * The text of the JSON object that follows the last `"key":` in `text` (strings skipped while matching braces), or
 * null. Inside a JSON string every quote is escaped, so an unescaped `"key"` is a real key.
 */
export function lastObjectAfterKey(text: string, key: string): string | null {
  const pattern = new RegExp(`(?<!\\\\)"${key}"\\s*:\\s*\\{`, 'g');
  let start = -1;
  for (let match = pattern.exec(text); match !== null; match = pattern.exec(text)) start = match.index + match[0].length - 1;
  if (start < 0) return null;
  let depth = 0;
  let inString = false;
  for (let i = start; i < text.length; i += 1) {
    const c = text[i];
    if (inString) {
      if (c === '\\') i += 1;
      else if (c === '"') inString = false;
    } else if (c === '"') inString = true;
    else if (c === '{') depth += 1;
    else if (c === '}') {
      depth -= 1;
      if (depth === 0) return text.slice(start, i + 1);
    }
  }
  return null;
}
