// The namespace selector in the header: the namespaces the gateway knows (GET /api/namespaces),
// or any other name typed in; the choice goes into the URL (`?namespace=`), which every request
// and stream then names. The current namespace's quota (running / max) is shown beside it.
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { KnownNamespace, NamespacesOut } from './api';
import { get, NAMESPACE_NAME, urlNamespace } from './api';
import { navigate } from './router';

const OTHER = '\u0000other';
// The quota's running counts move; the list rarely does (it is read again when the select is opened).
const REFRESH_MS = 10_000;

/** Go to `name`: the same page there, except a workflow's (it is another namespace's). */
export function switchNamespace(name: string): void {
  const path = location.pathname.startsWith('/workflows/') ? '/' : location.pathname;
  navigate(`${path}?namespace=${encodeURIComponent(name)}`);
}

export function NamespacePicker(): JSX.Element {
  const wanted = urlNamespace();
  const [known, setKnown] = useState<NamespacesOut | null>(null);
  const [typing, setTyping] = useState(false);
  const [typed, setTyped] = useState('');
  const [problem, setProblem] = useState<string | null>(null);

  const [reload, setReload] = useState(0);
  useEffect(() => {
    let cancelled = false;
    const load = () =>
      get<NamespacesOut>('/api/namespaces')
        .then((found) => !cancelled && setKnown(found))
        .catch(() => !cancelled && setKnown(null));
    load();
    const timer = setInterval(load, REFRESH_MS);
    return () => {
      cancelled = true;
      clearInterval(timer);
    };
  }, [wanted, reload]);

  const current = known?.current ?? wanted ?? '';
  const names = new Set((known?.namespaces ?? []).map((n) => n.namespace));
  if (current) names.add(current);
  const mine = known?.namespaces.find((n) => n.namespace === current);

  const go = (event: Event) => {
    event.preventDefault();
    const name = typed.trim();
    if (!NAMESPACE_NAME.test(name)) {
      setProblem(`'${name}' is not a namespace (1-64 letters, digits, '_' or '-')`);
      return;
    }
    setProblem(null);
    setTyping(false);
    setTyped('');
    switchNamespace(name);
  };

  return (
    <form class="namespace" onSubmit={go}>
      <label>
        <span class="ns-label">Namespace</span>{' '}
        <select
          aria-label="Namespace"
          value={typing ? OTHER : current}
          onFocus={() => setReload((n) => n + 1)}
          onChange={(e) => {
            const value = e.currentTarget.value;
            if (value === OTHER) setTyping(true);
            else {
              setTyping(false);
              switchNamespace(value);
            }
          }}
        >
          {current === '' && <option value="">the gateway's</option>}
          {[...names].sort().map((name) => (
            <option value={name}>{name}</option>
          ))}
          <option value={OTHER}>Other…</option>
        </select>
      </label>
      {typing && (
        <>
          <input
            aria-label="Namespace name"
            placeholder="team-a"
            value={typed}
            onInput={(e) => setTyped(e.currentTarget.value)}
            autoFocus
          />
          <button type="submit">Go</button>
        </>
      )}
      {problem && <span class="ns-problem" role="alert">{problem}</span>}
      {mine && <QuotaBadge ns={mine} />}
    </form>
  );
}

function QuotaBadge({ ns }: { ns: KnownNamespace }): JSX.Element | null {
  const q = ns.quota;
  if (q === null) return null;
  const parts: string[] = [];
  if (q.max_running_workflows !== null)
    parts.push(`${q.running_workflows} / ${q.max_running_workflows} workflows`);
  if (q.max_running_jobs !== null) parts.push(`${q.running_jobs} / ${q.max_running_jobs} jobs`);
  const full =
    (q.max_running_workflows !== null && q.running_workflows >= q.max_running_workflows) ||
    (q.max_running_jobs !== null && q.running_jobs >= q.max_running_jobs);
  return (
    <span
      class={`ns-quota${full ? ' full' : ''}`}
      title={`quota of ${ns.namespace}: running / max (over quota: ${q.over_quota})`}
    >
      {parts.join(' · ')}
    </span>
  );
}
