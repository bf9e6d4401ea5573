// Shared pieces of the views: the html tag (htm over Preact: no JSX build step), polling, and formatting.
import { h } from 'preact';
import { useCallback, useEffect, useRef, useState } from 'preact/hooks';
import htm from 'htm';

export const html = htm.bind(h);

/** How often live views refresh themselves (the pool view shows a new cooldown within this). */
export const REFRESH_MS = 2000;

/**
 * Loads `load()` now and every `intervalMs` while the tab is visible; `reload()` forces a refresh (after an action).
 * Keeps the last good data when a refresh fails and reports the failure beside it.
 */
export function usePoll(load, deps, intervalMs = REFRESH_MS) {
  const [state, setState] = useState({ data: null, error: null, loading: true });
  const generation = useRef(0);
  const run = useCallback(async () => {
    const mine = ++generation.current;
    try {
      const data = await load();
      if (mine === generation.current) setState({ data, error: null, loading: false });
    } catch (error) {
      if (mine === generation.current) setState((s) => ({ data: s.data, error, loading: false }));
    }
  }, deps);
  useEffect(() => {
    setState((s) => ({ ...s, loading: true }));
    run();
    if (!intervalMs) return undefined;
    const timer = setInterval(() => {
      if (!document.hidden) run();
    }, intervalMs);
    return () => {
      clearInterval(timer);
      generation.current++;
    };
  }, [run, intervalMs]);
  return { ...state, reload: run };
}

export function ErrorLine({ error }) {
  if (!error) return null;
  return html`<p class="error" role="alert">${error.message}</p>`;
}

export function fmtNumber(value) {
  if (value === null || value === undefined) return '–';
  return Number(value).toLocaleString('en-US', { maximumFractionDigits: 2 });
}

/** "12s ago", "3m ago" for an ISO instant; "–" for none. */
export function ago(iso) {
  if (!iso) return '–';
  const seconds = Math.max(0, Math.round((Date.now() - Date.parse(iso)) / 1000));
  if (seconds < 90) return `${seconds}s ago`;
  if (seconds < 5400) return `${Math.round(seconds / 60)}m ago`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)}h ago`;
  return `${Math.round(seconds / 86400)}d ago`;
}

/** "in 42s" for a future ISO instant. */
export function until(iso) {
  if (!iso) return '–';
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  if (seconds <= 0) return 'now';
  if (seconds < 120) return `in ${seconds}s`;
  if (seconds < 7200) return `in ${Math.round(seconds / 60)}m`;
  return `in ${Math.round(seconds / 3600)}h`;
}

export function fmtDate(iso) {
  return iso ? iso.replace('T', ' ').replace(/\.\d+Z$/, 'Z') : '–';
}

export function StateBadge({ state }) {
  return html`<span class=${`badge state-${state}`}>${state}</span>`;
}

/** Form values as an object of strings (FormData over the form element). */
export function formValues(form) {
  return Object.fromEntries(new FormData(form).entries());
}

/** "" -> null, "12" -> 12 (numeric limits where empty means "no limit"). */
export function optionalInt(text) {
  const trimmed = String(text ?? '').trim();
  return trimmed === '' ? null : Number(trimmed);
}
