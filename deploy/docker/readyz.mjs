// Container HEALTHCHECK: exits 0 when keypool's admin API answers /readyz with 200 (configuration loaded, not
// draining), 1 otherwise, within 3 s. Reads the address keypool listens on (KEYPOOL_ADMIN_LISTEN); a wildcard
// address is probed on loopback. Plain Node: the slim image has no curl.
const listen = process.env.KEYPOOL_ADMIN_LISTEN?.trim() || '127.0.0.1:9901';
const match = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(listen);
if (!match) process.exit(1);
const host = match[1] === '0.0.0.0' || match[1] === '' ? '127.0.0.1' : match[1] === '::' ? '::1' : match[1];
const url = `http://${host.includes(':') ? `[${host}]` : host}:${match[2]}/readyz`;
try {
  const response = await fetch(url, { signal: AbortSignal.timeout(3_000) });
  process.exit(response.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
