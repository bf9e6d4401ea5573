// Every call the page makes goes through here: same-origin, JSON both ways, and the session's CSRF token on each
// state-changing request. The page never holds the admin token beyond the login form's submit.
let csrfToken = null;
let onLoggedOut = () => {};

export function setCsrfToken(token) {
  csrfToken = token;
}

export function whenLoggedOut(callback) {
  onLoggedOut = callback;
}

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? null;
    this.body = body;
  }
}

export async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  // Every write says JSON, even without a body: the server refuses any other (a cross-site form cannot send it).
  if (body !== undefined || method !== 'GET') headers['content-type'] = 'application/json';
  if (method !== 'GET' && csrfToken) headers['x-csrf-token'] = csrfToken;
  const response = await fetch(path, {
    method,
    headers,
    credentials: 'same-origin',
    cache: 'no-store',
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  const parsed = text ? JSON.parse(text) : null;
  if (!response.ok) {
    if (response.status === 401 && !path.startsWith('/ui/session')) onLoggedOut();
    throw new ApiError(response.status, parsed);
  }
  return parsed;
}

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '' && value !== false) search.set(name, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}
