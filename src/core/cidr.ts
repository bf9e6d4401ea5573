// CIDR allowlists: strict parsing at write time, compiled once per snapshot into numeric ranges, and a
// client-address normaliser for the request path.
//
// Strictness rule: ipaddr.js (like inet_aton) also reads `010.0.0.1` as octal 8.0.0.1, `167772161` and
// `10.1` as 10.0.0.1, `0x0a.0.0.1` as hex. An operator who writes those almost certainly means something
// else, and a client address in such a form must never widen a match. So IPv4 is accepted only as four
// decimal parts 0-255 without leading zeros (`0` itself is fine), here and inside IPv6 (`::ffff:1.2.3.4`);
// ipaddr.js is used for IPv6 only.
//
// Normalisation rule: a CIDR whose address has host bits set (`10.1.2.3/8`) is accepted and stored in
// network form (`10.0.0.0/8`): that is what a router would match, and it keeps the stored list canonical.
// A bare address is a single-host range (/32, /128). IPv4-mapped IPv6 (`::ffff:10.0.0.0/104`,
// `::ffff:10.0.0.1`) is rewritten to IPv4 (`10.0.0.0/8`, `10.0.0.1`), in allowlists and client addresses
// alike, so the two spellings of one client always match the same entries. An IPv6 entry shorter than
// /96 (`::/0`) stays IPv6 and does not admit IPv4 clients (fail closed: list IPv4 ranges for those).
import ipaddr from 'ipaddr.js';
import type { Allowlist } from './types.js';

export type CidrParse = { readonly ok: true; readonly cidr: string } | { readonly ok: false; readonly error: string };

// An IPv6 text ending in a dotted quad: the quad must be strict too.
const TRAILING_DOTTED_QUAD = /:([^:]*\.[^:]*)$/;
const PREFIX_DIGITS = /^(?:0|[1-9]\d{0,2})$/;
const IPV4_MAPPED_PREFIX_BITS = 96;
const MAX_ADDRESS_TEXT = 64;

/** An address in numeric form: IPv4 as one unsigned 32-bit word, IPv6 as four. */
type ParsedAddress = { readonly v4: number } | { readonly v6: Uint32Array };

/** Parses an allowlist entry; returns it in canonical network form or a reason it is refused. */
export function parseCidr(text: string): CidrParse {
  const range = parseRange(text);
  return typeof range === 'string' ? { ok: false, error: range } : { ok: true, cidr: formatRange(range) };
}

/** Parses one CIDR (or bare address) into a compiled range, or returns why it is refused. */
function parseRange(text: string): CompiledRange | string {
  if (typeof text !== 'string') return 'CIDR must be a string';
  const trimmed = text.trim();
  if (trimmed.length === 0) return 'empty CIDR';
  if (trimmed.length > MAX_ADDRESS_TEXT + 4) return `CIDR too long: ${trimmed.slice(0, 32)}...`;
  const slashAt = trimmed.indexOf('/');
  const addressText = slashAt === -1 ? trimmed : trimmed.slice(0, slashAt);
  const address = parseStrictAddress(addressText);
  if (address === null) return `not a valid IPv4 (four decimal parts) or IPv6 address: ${addressText}`;
  const maxBits = 'v4' in address ? 32 : 128;
  let prefixBits = maxBits;
  if (slashAt !== -1) {
    const prefixText = trimmed.slice(slashAt + 1);
    if (!PREFIX_DIGITS.test(prefixText) || Number(prefixText) > maxBits) {
      return `prefix length must be a whole number from 0 to ${maxBits}: ${trimmed}`;
    }
    prefixBits = Number(prefixText);
  }
  // ::ffff:a.b.c.d/p with p >= 96 describes IPv4 addresses only: store it as IPv4.
  if ('v6' in address && prefixBits >= IPV4_MAPPED_PREFIX_BITS && isIpv4MappedWords(address.v6)) {
    return compileRange({ v4: address.v6[3] ?? 0 }, prefixBits - IPV4_MAPPED_PREFIX_BITS);
  }
  return compileRange(address, prefixBits);
}

/**
 * Reduces a client address as a gateway reports it (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:443`, `::1`,
 * `::ffff:10.0.0.1`, `fe80::1%eth0`) to canonical text (`1.2.3.4`, `::1`, `10.0.0.1`, `fe80::1`), or
 * null when it is not an address. The zone of a scoped IPv6 address is dropped: it names an interface,
 * not a different host.
 */
export function normaliseClientAddress(address: string): string | null {
  if (typeof address !== 'string' || address.length === 0 || address.length > MAX_ADDRESS_TEXT) return null;
  const hostText = stripPort(address.trim());
  if (hostText === null) return null;
  const parsed = parseStrictAddress(hostText, true);
  return parsed === null ? null : formatAddress(unmapIpv4(parsed));
}

/** Compiles validated CIDR texts once per snapshot. Empty list -> null (any address allowed). */
export function compileAllowlist(cidrs: readonly string[]): Allowlist | null {
  if (cidrs.length === 0) return null;
  const ranges: CompiledRange[] = [];
  for (const text of cidrs) {
    const range = parseRange(text);
    // Entries are validated on write; one that still fails (hand-edited row) is dropped, which can only
    // narrow access. A list whose every entry is invalid stays an allowlist that matches nothing.
    if (typeof range !== 'string') ranges.push(range);
  }
  return new CompiledAllowlist(ranges);
}

interface CompiledRange {
  readonly family: 4 | 6;
  /** Network address words with host bits cleared: one word for IPv4, four for IPv6. */
  readonly network: Uint32Array;
  /** Per-word masks matching network. */
  readonly mask: Uint32Array;
  readonly prefixBits: number;
}

class CompiledAllowlist implements Allowlist {
  readonly cidrs: readonly string[];
  readonly #v4Network: Uint32Array;
  readonly #v4Mask: Uint32Array;
  readonly #v6: readonly CompiledRange[];

  constructor(ranges: readonly CompiledRange[]) {
    this.cidrs = Object.freeze(ranges.map(formatRange));
    const v4 = ranges.filter((range) => range.family === 4);
    this.#v4Network = Uint32Array.from(v4, (range) => range.network[0] ?? 0);
    this.#v4Mask = Uint32Array.from(v4, (range) => range.mask[0] ?? 0);
    this.#v6 = ranges.filter((range) => range.family === 6);
  }

  /** ip should come from normaliseClientAddress; anything unparseable is simply not contained. */
  contains(ip: string): boolean {
    if (typeof ip !== 'string' || ip.length > MAX_ADDRESS_TEXT) return false;
    const parsed = parseStrictAddress(ip, true);
    if (parsed === null) return false;
    const address = unmapIpv4(parsed);
    if ('v4' in address) return this.#containsV4(address.v4);
    return this.#v6.some((range) => matchesWords(address.v6, range));
  }

  #containsV4(word: number): boolean {
    const networks = this.#v4Network;
    const masks = this.#v4Mask;
    for (let index = 0; index < networks.length; index++) {
      if (((word & (masks[index] ?? 0)) >>> 0) === networks[index]) return true;
    }
    return false;
  }
}

function matchesWords(words: Uint32Array, range: CompiledRange): boolean {
  for (let index = 0; index < 4; index++) {
    if (((words[index] ?? 0) & (range.mask[index] ?? 0)) >>> 0 !== range.network[index]) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------------------------
// Parsing and formatting
// ---------------------------------------------------------------------------------------------

/** `host:port` / `[v6]:port` / `[v6]` -> host; a bare IPv6 (several colons) is left as is. */
function stripPort(text: string): string | null {
  if (text.startsWith('[')) {
    const closeAt = text.indexOf(']');
    if (closeAt === -1) return null;
    const rest = text.slice(closeAt + 1);
    if (rest !== '' && !isPortSuffix(rest)) return null;
    return text.slice(1, closeAt);
  }
  const firstColon = text.indexOf(':');
  if (firstColon !== -1 && firstColon === text.lastIndexOf(':')) {
    // Exactly one colon: IPv4 with a port.
    return isPortSuffix(text.slice(firstColon)) ? text.slice(0, firstColon) : null;
  }
  return text;
}

function isPortSuffix(text: string): boolean {
  return /^:\d{1,5}$/.test(text) && Number(text.slice(1)) <= 65_535;
}

/**
 * Strict address parser shared by allowlists and client addresses (IPv4-mapped IPv6 stays IPv6 here).
 * allowZone: client addresses may carry `%zone` (dropped); allowlist entries may not.
 */
function parseStrictAddress(text: string, allowZone = false): ParsedAddress | null {
  const v4 = strictIpv4Word(text);
  if (v4 !== -1) return { v4 };
  if (!text.includes(':')) return null;
  let v6Text = text;
  const zoneAt = v6Text.indexOf('%');
  if (zoneAt !== -1) {
    if (!allowZone) return null;
    v6Text = v6Text.slice(0, zoneAt);
  }
  const dotted = TRAILING_DOTTED_QUAD.exec(v6Text);
  if (dotted !== null && strictIpv4Word(dotted[1] ?? '') === -1) return null;
  if (!ipaddr.IPv6.isValid(v6Text)) return null;
  const parts = ipaddr.IPv6.parse(v6Text).parts;
  const words = new Uint32Array(4);
  for (let index = 0; index < 4; index++) {
    words[index] = (((parts[index * 2] ?? 0) << 16) | (parts[index * 2 + 1] ?? 0)) >>> 0;
  }
  return { v6: words };
}

/**
 * A client reaching a dual-stack listener over IPv4 shows up as ::ffff:a.b.c.d: match it as a.b.c.d.
 * IPv6 allowlist entries shorter than /96 (`::/0`) deliberately do not admit IPv4 clients: an operator
 * who lists only IPv6 ranges means IPv6 clients; IPv4 is admitted by IPv4 entries (or ::ffff:0:0/96+).
 */
function unmapIpv4(address: ParsedAddress): ParsedAddress {
  return 'v6' in address && isIpv4MappedWords(address.v6) ? { v4: address.v6[3] ?? 0 } : address;
}

function isIpv4MappedWords(words: Uint32Array): boolean {
  return words[0] === 0 && words[1] === 0 && words[2] === 0xffff;
}

/**
 * Four decimal parts 0-255, no leading zeros, nothing else -> the address as an unsigned 32-bit number;
 * -1 otherwise. Hand-rolled because it runs on every request with an allowlist (no regex, no split).
 */
function strictIpv4Word(text: string): number {
  if (text.length < 7 || text.length > 15) return -1;
  let word = 0;
  let part = 0;
  let digits = 0;
  let dots = 0;
  for (let index = 0; index < text.length; index++) {
    const code = text.charCodeAt(index);
    if (code >= 0x30 && code <= 0x39) {
      if (digits > 0 && part === 0) return -1; // leading zero: `01` would be octal to inet_aton
      part = part * 10 + (code - 0x30);
      digits++;
      if (part > 255) return -1;
    } else if (code === 0x2e && digits > 0 && dots < 3) {
      word = word * 256 + part;
      part = 0;
      digits = 0;
      dots++;
    } else {
      return -1;
    }
  }
  return dots === 3 && digits > 0 ? word * 256 + part : -1;
}

function compileRange(address: ParsedAddress, prefixBits: number): CompiledRange {
  if ('v4' in address) {
    const mask = prefixMaskWord(prefixBits);
    return { family: 4, network: Uint32Array.of((address.v4 & mask) >>> 0), mask: Uint32Array.of(mask), prefixBits };
  }
  const words = address.v6;
  const mask = new Uint32Array(4);
  const network = new Uint32Array(4);
  for (let index = 0; index < 4; index++) {
    mask[index] = prefixMaskWord(Math.min(32, Math.max(0, prefixBits - index * 32)));
    network[index] = ((words[index] ?? 0) & (mask[index] ?? 0)) >>> 0;
  }
  return { family: 6, network, mask, prefixBits };
}

function prefixMaskWord(bits: number): number {
  return bits <= 0 ? 0 : bits >= 32 ? 0xffffffff : (0xffffffff << (32 - bits)) >>> 0;
}

function formatRange(range: CompiledRange): string {
  if (range.family === 4) return `${formatV4(range.network[0] ?? 0)}/${range.prefixBits}`;
  return `${formatV6(range.network)}/${range.prefixBits}`;
}

function formatAddress(address: ParsedAddress): string {
  return 'v4' in address ? formatV4(address.v4) : formatV6(address.v6);
}

function formatV4(word: number): string {
  return `${word >>> 24}.${(word >>> 16) & 0xff}.${(word >>> 8) & 0xff}.${word & 0xff}`;
}

function formatV6(words: Uint32Array): string {
  const parts: number[] = [];
  for (const word of words) parts.push(word >>> 16, word & 0xffff);
  return new ipaddr.IPv6(parts).toRFC5952String();
}
