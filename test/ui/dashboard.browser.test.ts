// The dashboard in a real headless Chromium (Debian's `chromium`, driven by playwright-core) against the real
// keypool (`startKeypool`: embedded store with the demo seed, admin token required). Traffic goes through keypool's
// ext_proc gRPC protocol as Envoy speaks it (test/envoy/ext-proc-client.ts), so a provider's 429 reaches the pool
// view the way it would in production. Screenshots of every view land in test-artifacts/ui/ (gitignored); set
// KEYPOOL_UPDATE_DOCS=1 to also refresh docs/dashboard-pool.png.
// Skips with a notice without a Chromium binary unless KEYPOOL_REQUIRE_BROWSER=1 (CI).
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium, type BrowserContext, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startKeypool, type RunningKeypool } from '../../src/main.js';
import { CLIENT_KEY_PREFIX } from '../../src/secrets/client-key.js';
import { ExtProcClient, requestHeadersMsg, responseHeadersMsg, setHeadersOf } from '../envoy/ext-proc-client.js';

for (const name of ['DATABASE_URL', 'REDIS_URL', 'KEYPOOL_ENCRYPTION_KEYS', 'KEYPOOL_KEY_PEPPER']) delete process.env[name];

const CHROMIUM = process.env['KEYPOOL_CHROMIUM'] ?? '/usr/bin/chromium';
const HAVE_CHROMIUM = existsSync(CHROMIUM);
if (!HAVE_CHROMIUM) {
  if (process.env['KEYPOOL_REQUIRE_BROWSER'] === '1') throw new Error(`KEYPOOL_REQUIRE_BROWSER=1 but ${CHROMIUM} is missing (apt-get install -y chromium)`);
  console.warn(`test/ui/dashboard.browser.test.ts skipped: no ${CHROMIUM} (apt-get install -y chromium)`);
}

const TOKEN = 'browser-test-admin-token-5f1c9a7e';
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const ARTIFACTS = join(ROOT, 'test-artifacts', 'ui');
/** The page polls every 2 s; generous bounds for a busy two-core runner. */
const SEEN_WITHIN_MS = 20_000;

describe.skipIf(!HAVE_CHROMIUM)('dashboard in a real browser', () => {
  let dataDir: string;
  let profileDir: string;
  let keypool: RunningKeypool;
  let context: BrowserContext;
  let page: Page;
  let grpc: ExtProcClient;
  let baseUrl: string;
  const consoleErrors: string[] = [];
  let clientKey = '';

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), 'keypool-ui-'));
    profileDir = mkdtempSync(join(tmpdir(), 'keypool-ui-chromium-'));
    mkdirSync(ARTIFACTS, { recursive: true });
    keypool = await startKeypool({
      dataDir,
      grpcListen: '127.0.0.1:0',
      adminListen: '127.0.0.1:0',
      adminToken: TOKEN,
      demoSeed: true,
      flushIntervalMs: 200,
      logLevel: process.env['KEYPOOL_TEST_LOG'] ?? 'silent',
    });
    baseUrl = `http://${keypool.adminAddress}`;
    grpc = new ExtProcClient(keypool.grpcAddress);
    context = await chromium.launchPersistentContext(profileDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      viewport: { width: 1440, height: 900 },
    });
    page = context.pages()[0] ?? (await context.newPage());
    page.setDefaultTimeout(SEEN_WITHIN_MS);
    page.on('console', (message) => {
      if (message.type() === 'error') consoleErrors.push(message.text());
    });
    page.on('pageerror', (error) => consoleErrors.push(`pageerror: ${error.message}`));
  }, 120_000);

  afterAll(async () => {
    await context?.close();
    grpc?.close();
    await keypool?.stop();
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(profileDir, { recursive: true, force: true });
  });

  const shot = (name: string) => page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
  const goto = async (hash: string) => {
    await page.evaluate((h) => (location.hash = h), hash);
  };
  const row = (name: string) => page.locator(`tr[data-account="${name}"]`);

  /** keypool's answer to one request's headers through ext_proc, as Envoy sends them; the stream is left open. */
  async function decide(): Promise<{ answer: Record<string, unknown>; call: ReturnType<ExtProcClient['process']> }> {
    const call = grpc.process({ 'x-keypool-provider': 'openai' });
    call.send(requestHeadersMsg({ ':method': 'POST', ':path': '/v1/chat/completions', authorization: `Bearer ${clientKey}` }));
    return { answer: await call.next(), call };
  }

  /** One allowed request through ext_proc; the provider's answer is `status` with `headers`. Returns the key's last 4. */
  async function proxied(status: number, headers: Record<string, string> = {}): Promise<string> {
    const { answer, call } = await decide();
    const upstreamAuth = setHeadersOf(answer)['authorization'] ?? '';
    expect(upstreamAuth, JSON.stringify(answer)).toMatch(/^Bearer sk-demo-/);
    call.send(responseHeadersMsg(status, headers));
    await call.next();
    call.halfClose();
    await call.status;
    return upstreamAuth.slice(-4);
  }

  it('refuses a wrong token, then logs in with the right one', async () => {
    await page.goto(`${baseUrl}/ui`);
    await page.fill('input[name=token]', 'not-the-token');
    await page.click('button[type=submit]');
    await expect.poll(() => page.locator('[role=alert]').textContent()).toContain('not valid');
    expect(await page.locator('header').count()).toBe(0);
    await shot('login');
    // The refused login shows in the console as a failed resource load: the only console error allowed.
    expect(consoleErrors.every((e) => e.includes('401'))).toBe(true);
    consoleErrors.length = 0;

    await page.fill('input[name=token]', TOKEN);
    await page.click('button[type=submit]');
    await page.waitForSelector('article.card[data-provider=openai]');
    const cookies = await context.cookies(baseUrl);
    const session = cookies.find((c) => c.name === 'keypool_session');
    expect(session).toMatchObject({ httpOnly: true, sameSite: 'Strict' });
    expect(await page.evaluate(() => document.cookie)).toBe(''); // HttpOnly: invisible to scripts
    expect(await page.content()).not.toContain(TOKEN);
  });

  it('overview: every provider with its accounts by state and its strategy', async () => {
    const openai = page.locator('article.card[data-provider=openai]');
    await expect.poll(() => openai.locator('[data-state=healthy]').textContent()).toContain('2');
    expect(await openai.textContent()).toContain('strategy');
    await shot('overview');
  });

  it('pool: the demo accounts with only the last four characters of their keys', async () => {
    await goto('#/pool/openai');
    await row('demo-openai-1').waitFor();
    await row('demo-openai-2').waitFor();
    expect(await row('demo-openai-1').textContent()).toContain('••••0001');
    const html = await page.content();
    expect(html).not.toContain('sk-demo-not-a-real-key');
  });

  it('keys: a new key is shown exactly once', async () => {
    await goto('#/keys');
    await page.click('text=Create key');
    await page.fill('form[data-form=create-key] input[name=name]', 'browser-key');
    await page.click('form[data-form=create-key] button[type=submit]');
    clientKey = (await page.locator('[data-issued=browser-key] [data-secret]').textContent()) ?? '';
    expect(clientKey.startsWith(CLIENT_KEY_PREFIX)).toBe(true);
    await shot('keys-created');
    await page.click('text=I stored it');
    await page.locator('tr[data-key=browser-key]').waitFor();
    expect(await page.content()).not.toContain(clientKey);
    await page.reload();
    await page.locator('tr[data-key=browser-key]').waitFor();
    expect(await page.content()).not.toContain(clientKey);
    await shot('keys');
  });

  it('a 429 through ext_proc shows as a cooldown in the pool view within its refresh interval', async () => {
    await goto('#/pool/openai');
    await row('demo-openai-1').waitFor();
    const okLast4 = await proxied(200, { 'x-ratelimit-remaining-requests': '41', 'x-ratelimit-limit-requests': '60' });
    const limitedLast4 = await proxied(429, { 'retry-after': '300' });
    const limited = limitedLast4 === '0001' ? 'demo-openai-1' : 'demo-openai-2';
    expect(['0001', '0002']).toContain(okLast4);
    await expect.poll(() => row(limited).getAttribute('data-state'), { timeout: SEEN_WITHIN_MS }).toBe('cooling');
    const cooldown = await row(limited).locator('[data-col=cooldown]').textContent();
    expect(Number(cooldown?.replace('s', ''))).toBeGreaterThan(200);
    expect(await row(limited).locator('[data-col=last429]').textContent()).toMatch(/s ago/);
    await shot('pool');
    if (process.env['KEYPOOL_UPDATE_DOCS'] === '1') copyFileSync(join(ARTIFACTS, 'pool.png'), join(ROOT, 'docs', 'dashboard-pool.png'));
  });

  it('usage: a chart renders the recorded requests', async () => {
    await goto('#/usage');
    await page.locator('select[name=provider] option[value=openai]').waitFor({ state: 'attached' });
    await page.selectOption('select[name=provider]', 'openai');
    // Usage is flushed to the store every 200 ms here; the view polls the series.
    await expect.poll(async () => Number((await page.locator('[data-total=requests]').textContent()) ?? 0), { timeout: SEEN_WITHIN_MS, interval: 1000 }).toBeGreaterThanOrEqual(2);
    await page.locator('[data-chart=requests] canvas').waitFor();
    await shot('usage');
  });

  it("pool: edit an account's weight", async () => {
    await goto('#/pool/openai');
    await row('demo-openai-2').locator('text=Edit').click();
    const form = page.locator('form[data-edit=demo-openai-2]');
    await form.locator('input[name=weight]').fill('7');
    await form.locator('button[type=submit]').click();
    await expect.poll(() => row('demo-openai-2').locator('[data-col=weight]').textContent()).toMatch(/^7 · /);
    const stored = await keypool.runtime.repository.accounts.list({ providerSlug: 'openai' });
    expect(stored.find((a) => a.name === 'demo-openai-2')?.weight).toBe(7);
  });

  it('pool: add an account; its key goes in a password field and never comes back', async () => {
    const secret = 'sk-browser-added-account-9z8y';
    await goto('#/pool/openai');
    await page.click('text=Add account');
    const form = page.locator('form[data-form=add-account]');
    expect(await form.locator('input[name=api_key]').getAttribute('type')).toBe('password');
    await form.locator('input[name=name]').fill('browser-added');
    await form.locator('input[name=api_key]').fill(secret);
    await form.locator('button[type=submit]').click();
    await row('browser-added').waitFor();
    expect(await row('browser-added').textContent()).toContain('••••9z8y');
    expect(await page.content()).not.toContain(secret);
    expect(await page.locator('input[name=api_key]').count()).toBe(0); // the form closed with the key in it
  });

  it('keys: revoke the key; keypool then refuses it', async () => {
    await goto('#/keys');
    const keyRow = page.locator('tr[data-key=browser-key]');
    await keyRow.locator('text=Revoke').click();
    await keyRow.locator('text=Confirm revoke').click();
    await expect.poll(() => page.locator('tr[data-key=browser-key]').count()).toBe(0); // the active filter hides it
    const stored = await keypool.runtime.repository.keys.get('browser-key');
    expect(stored.status).toBe('revoked');
    // Every replica reloads its snapshot on the change feed; then the key is refused.
    await expect
      .poll(
        async () => {
          const { answer, call } = await decide();
          call.cancel();
          return answer['immediate_response'] !== undefined;
        },
        { timeout: SEEN_WITHIN_MS, interval: 200 },
      )
      .toBe(true);
  });

  it("mappings: a rule's window is shown, and editing another field keeps it", async () => {
    const window = { days: ['mon', 'tue', 'wed', 'thu', 'fri'] as const, start: '08:00', end: '20:00', timezone: 'Europe/Berlin' };
    const created = await keypool.runtime.repository.mappings.create(
      { pattern: 'kp_browser-batch-', matchType: 'prefix', priority: 7, window: { ...window, days: [...window.days] } },
      'test',
    );
    await goto('#/mappings');
    const mappingRow = page.locator('tr[data-mapping="kp_browser-batch-"]');
    await expect.poll(() => mappingRow.textContent()).toContain('mon,tue,wed,thu,fri 08:00-20:00 Europe/Berlin');
    await mappingRow.locator('text=Edit').click();
    const form = page.locator('form:has(input[name=window])').first();
    expect(await form.locator('input[name=window]').inputValue()).toBe('mon,tue,wed,thu,fri 08:00-20:00 Europe/Berlin');
    await form.locator('input[name=priority]').fill('6');
    await form.locator('button[type=submit]').click();
    await expect.poll(async () => (await keypool.runtime.repository.mappings.get(created.id)).priority).toBe(6);
    expect((await keypool.runtime.repository.mappings.get(created.id)).window).toEqual(window);
    await keypool.runtime.repository.mappings.softDelete(created.id, 'test');
  });

  it('mappings and audit log render; no console errors anywhere', async () => {
    await goto('#/mappings');
    await page.locator('section h2:text("Mappings")').waitFor();
    await shot('mappings');
    await goto('#/audit');
    await page.locator('tr[data-action=revoked]').first().waitFor();
    await shot('audit');
    await goto('#/overview');
    const openai = page.locator('article.card[data-provider=openai]');
    await openai.locator('[data-state=cooling]').waitFor();
    expect(Number(await openai.locator('[data-figure=allowed]').textContent())).toBeGreaterThanOrEqual(2);
    await openai.locator('tr[data-denial=key_revoked]').waitFor();
    expect(consoleErrors).toEqual([]);
  });
});
