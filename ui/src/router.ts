// Real paths (/, /workflows/<id>, /workflows/<id>/jobs/<job>, /workers, /dead-letters, /start),
// each served as the same page by the gateway; links are plain <a href> taken over here.
import { useEffect, useState } from 'preact/hooks';
import { urlNamespace } from './api';

const listeners = new Set<() => void>();

/** `href` (a page of the UI) in the page's namespace, unless it names one itself. */
export function withNamespace(href: string): string {
  const ns = urlNamespace();
  if (ns === null || href.startsWith('#')) return href;
  const url = new URL(href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api')) return href;
  if (url.searchParams.has('namespace')) return href;
  url.searchParams.set('namespace', ns);
  return url.pathname + url.search + url.hash;
}

export function navigate(href: string, replace = false): void {
  href = withNamespace(href);
  if (href === location.pathname + location.search) return;
  if (replace) history.replaceState(null, '', href);
  else history.pushState(null, '', href);
  listeners.forEach((l) => l());
}

window.addEventListener('popstate', () => listeners.forEach((l) => l()));

document.addEventListener('click', (event) => {
  if (event.defaultPrevented || event.button !== 0) return;
  if (event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const anchor = (event.target as Element).closest?.('a');
  if (!anchor || anchor.target || anchor.hasAttribute('download')) return;
  const url = new URL(anchor.href, location.href);
  if (url.origin !== location.origin || url.pathname.startsWith('/api')) return;
  if (url.pathname === '/docs' || url.pathname === '/openapi.json') return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});

export function useLocation(): { path: string; query: URLSearchParams } {
  const [, setTick] = useState(0);
  useEffect(() => {
    const listener = () => setTick((n) => n + 1);
    listeners.add(listener);
    return () => {
      listeners.delete(listener);
    };
  }, []);
  return { path: location.pathname, query: new URLSearchParams(location.search) };
}

export type Route =
  | { page: 'workflows' }
  | { page: 'workflow'; id: string; job: string | null }
  | { page: 'workers' }
  | { page: 'dead-letters' }
  | { page: 'start' }
  | { page: 'missing' };

export function route(path: string): Route {
  if (path === '/' || path === '') return { page: 'workflows' };
  const wf = /^\/workflows\/([^/]+)(?:\/jobs\/([^/]+))?\/?$/.exec(path);
  if (wf) return { page: 'workflow', id: decodeURIComponent(wf[1]), job: wf[2] ? decodeURIComponent(wf[2]) : null };
  if (path === '/workers') return { page: 'workers' };
  if (path === '/dead-letters') return { page: 'dead-letters' };
  if (path === '/start') return { page: 'start' };
  return { page: 'missing' };
}

export const workflowHref = (id: string) => withNamespace(`/workflows/${encodeURIComponent(id)}`);
export const jobHref = (id: string, job: string) =>
  withNamespace(`/workflows/${encodeURIComponent(id)}/jobs/${encodeURIComponent(job)}`);
