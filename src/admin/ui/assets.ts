// The dashboard's built files (`npm run build` bundles web/ into dist/ui/ with esbuild), read into memory once at
// start and served by the admin listener: nothing is fetched from the internet at run time. Bundles carry a content
// hash in their names and are cached for a year; the page itself is never cached, so a new build shows at once.
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface UiAsset {
  readonly contentType: string;
  readonly content: string;
  readonly etag: string;
}

/**
 * Only same-origin scripts, styles, fetches and images; no inline script or style element, no framing, no form
 * posts elsewhere. Preact and uPlot set styles through the CSSOM, which style-src does not restrict.
 */
export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self' data:",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** Headers on every dashboard file. */
export const UI_SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'content-security-policy': CONTENT_SECURITY_POLICY,
  'x-frame-options': 'DENY',
  'referrer-policy': 'no-referrer',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
};

const TYPES: Readonly<Record<string, string>> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
};
/** Asset names as the build writes them (`app-3F2A1B.js`); anything else is not looked up. */
const ASSET_NAME = /^[A-Za-z0-9._-]{1,100}$/;

export class UiAssets {
  private constructor(
    private readonly page: UiAsset | null,
    private readonly files: ReadonlyMap<string, UiAsset>,
  ) {}

  /** Reads the built dashboard from `dir` (default: dist/ui next to the compiled server). */
  static load(dir: string | null = defaultDir()): UiAssets {
    if (dir === null || !existsSync(join(dir, 'index.html'))) return new UiAssets(null, new Map());
    const files = new Map<string, UiAsset>();
    const assetsDir = join(dir, 'assets');
    for (const name of existsSync(assetsDir) ? readdirSync(assetsDir) : []) {
      const type = TYPES[extname(name)];
      if (type !== undefined && ASSET_NAME.test(name)) files.set(name, asset(readFileSync(join(assetsDir, name), 'utf8'), type));
    }
    return new UiAssets(asset(readFileSync(join(dir, 'index.html'), 'utf8'), TYPES['.html']!), files);
  }

  /** The page, or null when the dashboard was not built. */
  index(): UiAsset | null {
    return this.page;
  }

  file(name: string): UiAsset | undefined {
    return ASSET_NAME.test(name) ? this.files.get(name) : undefined;
  }
}

function asset(content: string, contentType: string): UiAsset {
  return { content, contentType, etag: `"${createHash('sha256').update(content).digest('base64url').slice(0, 22)}"` };
}

/** dist/ui from the compiled server (dist/src/admin/ui/) or from the sources run by vitest (src/admin/ui/). */
function defaultDir(): string | null {
  const candidates = [new URL('../../../ui/', import.meta.url), new URL('../../../dist/ui/', import.meta.url)];
  for (const candidate of candidates) {
    const dir = fileURLToPath(candidate);
    if (existsSync(join(dir, 'index.html'))) return dir;
  }
  return null;
}
