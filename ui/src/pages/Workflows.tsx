// Workflows, newest first, with the CLI's filters (status, name). The rows come from the
// projections; they are read again every 2 s while the page is visible (the events stream of
// every workflow would send the browser all of the server's traffic).
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { ListPage, Summary } from '../api';
import { get } from '../api';
import { ago, between, stamp } from '../format';
import { navigate, withNamespace, workflowHref } from '../router';
import { Status, STATUSES, StatusIcon } from '../status';

const REFRESH_MS = 2000;

export function WorkflowsPage({ query }: { query: URLSearchParams }): JSX.Element {
  const status = query.get('status') ?? '';
  const name = query.get('name') ?? '';
  const [rows, setRows] = useState<Summary[] | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [limit, setLimit] = useState(50);
  const [problem, setProblem] = useState<string | null>(null);
  const [lag, setLag] = useState(0);
  const [, setNow] = useState(0);
  const nameBox = useRef<HTMLInputElement>(null);

  useEffect(() => {
    let stopped = false;
    let timer = 0;
    const params = new URLSearchParams();
    if (status) params.set('status', status);
    if (name) params.set('name', name);
    params.set('limit', String(limit));
    const load = async () => {
      try {
        const [page, behind] = await Promise.all([
          get<ListPage>(`/api/workflows?${params}`),
          get<{ lag: number }>('/api/lag').catch(() => ({ lag: 0 })),
        ]);
        if (stopped) return;
        setRows(page.workflows);
        setNext(page.next);
        setLag(behind.lag);
        setProblem(null);
      } catch (e) {
        if (!stopped) setProblem(e instanceof Error ? e.message : String(e));
      }
      if (!stopped) timer = window.setTimeout(tick, REFRESH_MS);
    };
    const tick = () => {
      if (document.visibilityState === 'visible') load();
      else timer = window.setTimeout(tick, REFRESH_MS);
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [status, name, limit]);

  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      if (event.key === '/' && document.activeElement?.tagName !== 'INPUT') {
        event.preventDefault();
        nameBox.current?.focus();
      }
    };
    document.addEventListener('keydown', onKey);
    const timer = setInterval(() => setNow((n) => n + 1), 1000);
    return () => {
      document.removeEventListener('keydown', onKey);
      clearInterval(timer);
    };
  }, []);

  const setFilter = (key: string, value: string) => {
    const params = new URLSearchParams(location.search);
    if (value) params.set(key, value);
    else params.delete(key);
    const search = params.toString();
    navigate('/' + (search ? `?${search}` : ''), true);
  };

  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Workflows</h1>
        <a class="button primary" href={withNamespace('/start')}>Start a workflow</a>
      </div>
      <form class="filters" role="search" onSubmit={(e) => e.preventDefault()}>
        <label>
          Status{' '}
          <select value={status} onChange={(e) => setFilter('status', e.currentTarget.value)}>
            <option value="">any</option>
            {['queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'].map((s) => (
              <option value={s}>{s}</option>
            ))}
          </select>
        </label>
        <label>
          Name{' '}
          <input
            ref={nameBox}
            type="search"
            value={name}
            placeholder="exact name ( / )"
            onChange={(e) => setFilter('name', e.currentTarget.value.trim())}
          />
        </label>
        {lag > 0 && <span class="muted small">the list is {lag} events behind the log</span>}
      </form>
      {problem && <p class="error" role="alert">{problem}</p>}
      {rows === null ? (
        !problem && <p role="status">Loading…</p>
      ) : rows.length === 0 ? (
        <p class="empty">
          No workflows{status || name ? ' match these filters' : ' yet'}. <a href={withNamespace('/start')}>Start one</a>, or run{' '}
          <code>jetwork run examples/diamond.yaml</code>.
        </p>
      ) : (
        <table class="workflows">
          <thead>
            <tr>
              <th scope="col">Status</th>
              <th scope="col">Name</th>
              <th scope="col">Workflow</th>
              <th scope="col">Progress</th>
              <th scope="col">Jobs</th>
              <th scope="col">Started</th>
              <th scope="col">Duration</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((row) => (
              <Row row={row} />
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" onClick={() => setLimit((n) => Math.min(1000, n + 50))}>
          Show more
        </button>
      )}
    </main>
  );
}

function Row({ row }: { row: Summary }): JSX.Element {
  const c = row.job_counts;
  const total = Object.values(c).reduce((a, b) => a + b, 0);
  const done = (c.succeeded ?? 0) + (c.failed ?? 0) + (c.skipped ?? 0) + (c.cancelled ?? 0);
  return (
    <tr class="wf-row" data-workflow={row.workflow_id} data-status={row.status}>
      <td>
        <Status status={row.status} />
        {row.status === 'queued' && row.group && (
          <div class="group small muted">waiting for concurrency group <span class="mono">{row.group}</span></div>
        )}
      </td>
      <td><a href={workflowHref(row.workflow_id)}>{row.name}</a></td>
      <td class="mono small"><a href={workflowHref(row.workflow_id)} tabIndex={-1}>{row.workflow_id}</a></td>
      <td class="progress-cell">
        <div class="bar" role="img" aria-label={`${done} of ${total} jobs done`}>
          {STATUSES.filter((s) => c[s]).map((s) => (
            <span class={`seg st-${s}`} style={{ flexGrow: String(c[s]) }} />
          ))}
        </div>
        <span class="small">{done}/{total}</span>
      </td>
      <td class="counts small">
        {STATUSES.filter((s) => c[s]).map((s) => (
          <span class={`count st-${s}`} title={`${c[s]} ${s}`}>
            <StatusIcon status={s} size={12} />
            {c[s]}
            <span class="sr-only"> {s}</span>
          </span>
        ))}
      </td>
      <td title={stamp(row.started_at)}>{ago(row.started_at)}</td>
      <td>{between(row.started_at, row.ended_at)}</td>
    </tr>
  );
}
