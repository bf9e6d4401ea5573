import { describe, expect, it } from 'vitest';
import { compileAllowlist, normaliseClientAddress, parseCidr } from '../../src/core/cidr.js';

describe('parseCidr', () => {
  const accepted: Array<[string, string]> = [
    ['10.0.0.0/8', '10.0.0.0/8'],
    ['10.1.2.3/8', '10.0.0.0/8'], // host bits set: normalised to the network
    ['192.168.1.77/24', '192.168.1.0/24'],
    ['0.0.0.0/0', '0.0.0.0/0'],
    ['203.0.113.9', '203.0.113.9/32'],
    ['203.0.113.9/32', '203.0.113.9/32'],
    [' 10.0.0.0/8 ', '10.0.0.0/8'],
    ['0.0.0.0', '0.0.0.0/32'],
    ['2001:db8::/32', '2001:db8::/32'],
    ['2001:DB8:0:0:1::/64', '2001:db8::/64'],
    ['2001:db8::1', '2001:db8::1/128'],
    ['::1', '::1/128'],
    ['::/0', '::/0'],
    ['::ffff:10.0.0.0/104', '10.0.0.0/8'],
    ['::ffff:10.0.0.1', '10.0.0.1/32'],
    ['::ffff:a00:0/104', '10.0.0.0/8'],
    ['::ffff:0:0/96', '0.0.0.0/0'],
    ['::ffff:0:0/80', '::/80'], // shorter than /96: an IPv6 range, not an IPv4 one
  ];
  it.each(accepted)('accepts %s as %s', (text, cidr) => {
    expect(parseCidr(text)).toEqual({ ok: true, cidr });
  });

  const refused: string[] = [
    '',
    '   ',
    '010.0.0.1', // octal in inet_aton
    '10.0.0.01',
    '167772161', // one 32-bit number
    '10.1', // two-part form
    '10.0.1',
    '0x0a.0.0.1',
    '256.0.0.1',
    '10.0.0.0/33',
    '10.0.0.0/-1',
    '10.0.0.0/08', // leading zero in the prefix
    '10.0.0.0/',
    '10.0.0.0/8/8',
    '10.0.0.0/ 8',
    '2001:db8::/129',
    '2001:db8::g',
    '1::2::3',
    '::ffff:010.0.0.1', // embedded IPv4 must be strict too
    '::ffff:10.1',
    'fe80::1%eth0', // zones have no meaning in an allowlist
    'localhost',
    '10.0.0.0 /8',
    'a'.repeat(200),
  ];
  it.each(refused)('refuses %j', (text) => {
    const result = parseCidr(text);
    expect(result.ok).toBe(false);
    if (!result.ok) expect(result.error.length).toBeGreaterThan(0);
  });
});

describe('normaliseClientAddress', () => {
  const cases: Array<[string, string | null]> = [
    ['1.2.3.4', '1.2.3.4'],
    ['1.2.3.4:5678', '1.2.3.4'],
    ['1.2.3.4:65535', '1.2.3.4'],
    ['1.2.3.4:65536', null],
    ['1.2.3.4:', null],
    ['1.2.3.4:port', null],
    ['[::1]:443', '::1'],
    ['[::1]', '::1'],
    ['::1', '::1'],
    ['[2001:DB8::1]:8080', '2001:db8::1'],
    ['2001:db8:0:0:0:0:0:1', '2001:db8::1'],
    ['::ffff:10.0.0.1', '10.0.0.1'],
    ['[::ffff:10.0.0.1]:1234', '10.0.0.1'],
    ['::ffff:a00:1', '10.0.0.1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['[fe80::1%eth0]:80', 'fe80::1'],
    ['010.0.0.1', null],
    ['10.0.0.01', null],
    ['167772161', null],
    ['10.1', null],
    ['0x0a.0.0.1', null],
    ['00.1.2.3', null],
    ['1.2.3.4.5', null],
    ['1..2.3', null],
    ['.1.2.3', null],
    ['1.2.3.', null],
    ['1.2.3.256', null],
    ['1.2.3.-4', null],
    ['１.2.3.4', null], // full-width digit
    ['0.0.0.0', '0.0.0.0'],
    ['255.255.255.255:1', '255.255.255.255'],
    [' 1.2.3.4 ', '1.2.3.4'],
    ['::ffff:010.0.0.1', null],
    ['[::1', null],
    ['[::1]x', null],
    ['', null],
    ['garbage', null],
    ['unix:/var/run/envoy.sock', null],
    ['1'.repeat(100), null],
  ];
  it.each(cases)('%j -> %j', (address, expected) => {
    expect(normaliseClientAddress(address)).toBe(expected);
  });
});

describe('compileAllowlist', () => {
  it('returns null (any address) for an empty list', () => {
    expect(compileAllowlist([])).toBeNull();
  });

  const allowlist = compileAllowlist(['10.0.0.0/8', '192.168.1.7', '2001:db8::/32', '::ffff:172.16.0.0/108']);
  const cases: Array<[string, boolean]> = [
    ['10.0.0.1', true],
    ['10.255.255.255', true],
    ['11.0.0.0', false],
    ['9.255.255.255', false],
    ['192.168.1.7', true],
    ['192.168.1.8', false],
    ['172.16.0.1', true],
    ['172.31.255.255', true],
    ['172.32.0.0', false],
    ['2001:db8::1', true],
    ['2001:db8:ffff::1', true],
    ['2001:db9::1', false],
    ['::1', false],
    // contains() takes normalised addresses; anything else is not contained, never thrown on.
    ['garbage', false],
    ['', false],
    ['010.0.0.1', false],
  ];
  it.each(cases)('contains(%s) = %s', (ip, expected) => {
    expect(allowlist?.contains(ip)).toBe(expected);
  });

  it('matches an IPv4-mapped client against an IPv4 range once normalised', () => {
    const list = compileAllowlist(['10.0.0.0/8']);
    const address = normaliseClientAddress('::ffff:10.0.0.1');
    expect(address).toBe('10.0.0.1');
    expect(list?.contains(address ?? '')).toBe(true);
    // Even un-normalised, the mapped form is matched as IPv4.
    expect(list?.contains('::ffff:10.0.0.1')).toBe(true);
  });

  it('never lets an inet_aton form widen a match', () => {
    const list = compileAllowlist(['8.0.0.0/8']);
    expect(normaliseClientAddress('010.0.0.1')).toBeNull(); // would be 8.0.0.1 to inet_aton
    expect(list?.contains('010.0.0.1')).toBe(false);
  });

  it('keeps IPv6 ranges shorter than /96 away from IPv4 clients', () => {
    const list = compileAllowlist(['::/0']);
    expect(list?.contains('2001:db8::1')).toBe(true);
    expect(list?.contains('10.0.0.1')).toBe(false);
  });

  it('exposes canonical cidrs and drops invalid entries, failing closed', () => {
    const list = compileAllowlist(['10.1.2.3/8', 'not-a-cidr']);
    expect(list?.cidrs).toEqual(['10.0.0.0/8']);
    const none = compileAllowlist(['not-a-cidr']);
    expect(none).not.toBeNull();
    expect(none?.contains('10.0.0.1')).toBe(false);
  });

  it('matches /0 and /32 edges', () => {
    const any4 = compileAllowlist(['0.0.0.0/0']);
    expect(any4?.contains('255.255.255.255')).toBe(true);
    expect(any4?.contains('::2')).toBe(false);
    const host = compileAllowlist(['255.255.255.255/32']);
    expect(host?.contains('255.255.255.255')).toBe(true);
    expect(host?.contains('255.255.255.254')).toBe(false);
  });
});
