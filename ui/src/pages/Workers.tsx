// Live workers (labels, handlers, running jobs, last seen) and the label sets with queued jobs,
// those that no live worker serves marked. Read again every 3 s while visible.
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { QueuedLabelSet, Worker } from '../api';
import { get } from '../api';
import { ago, stamp } from '../format';
import { jobHref, workflowHref } from '../router';

export function WorkersPage(): JSX.Element {
  const [workers, setWorkers] = useState<Worker[] | null>(null);
  const [sets, setSets] = useState<{ label_sets: QueuedLabelSet[]; complete: boolean } | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  useEffect(() => {
    let stopped = false;
    let timer = 0;
    const load = async () => {
      if (document.visibilityState === 'visible') {
        try {
          const [w, q] = await Promise.all([
            get<{ workers: Worker[] }>('/api/workers'),
            get<{ label_sets: QueuedLabelSet[]; complete: boolean }>('/api/label-sets'),
          ]);
          if (stopped) return;
          setWorkers(w.workers);
          setSets(q);
          setProblem(null);
        } catch (e) {
          if (!stopped) setProblem(e instanceof Error ? e.message : String(e));
        }
      }
      if (!stopped) timer = window.setTimeout(load, 3000);
    };
    load();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, []);

  const unserved = sets?.label_sets.filter((s) => !s.workers.length) ?? [];
  return (
    <main id="main" class="page">
      <h1>Workers</h1>
      {problem && <p class="error" role="alert">{problem}</p>}
      {workers === null ? (
        !problem && <p role="status">Loading…</p>
      ) : workers.length === 0 ? (
        <p class="empty">No live worker. Start one: <code>jetwork worker --labels linux</code>.</p>
      ) : (
        <table class="workers">
          <thead>
            <tr>
              <th scope="col">Worker</th><th scope="col">Host</th><th scope="col">Labels</th>
              <th scope="col">Handlers</th><th scope="col">Running</th><th scope="col">Last seen</th>
            </tr>
          </thead>
          <tbody>
            {workers.map((w) => (
              <tr class={w.stale ? 'stale' : ''}>
                <td class="mono">{w.worker_id}{w.stale && <span class="badge warn" title="missed its recent heartbeats"> ⚠ stale</span>}</td>
                <td class="small">{w.host}{w.pid ? ` · pid ${w.pid}` : ''}</td>
                <td>{w.labels.length ? w.labels.map((l) => <span class="chip">{l}</span>) : <span class="muted">none</span>}</td>
                <td>{w.handlers.length ? w.handlers.map((h) => <span class="chip">{h}</span>) : <span class="muted">–</span>}</td>
                <td class="small">
                  {w.running.length ? (
                    <ul class="plain">
                      {w.running.map((r) => (
                        <li><a href={jobHref(r.workflow_id, r.job)}>{r.job}</a> <span class="muted mono">{r.workflow_id}</span></li>
                      ))}
                    </ul>
                  ) : (
                    <span class="muted">idle{w.concurrency ? ` (${w.concurrency} slots)` : ''}</span>
                  )}
                </td>
                <td title={stamp(w.last_seen)}>{ago(w.last_seen)}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      <h2>Queued jobs by label set</h2>
      {sets === null ? null : sets.label_sets.length === 0 ? (
        <p class="muted">No job is queued.</p>
      ) : (
        <>
          {unserved.length > 0 && (
            <p class="warn-box" role="alert">
              ⚠ {unserved.length === 1 ? 'One label set has' : `${unserved.length} label sets have`} queued jobs
              that no live worker serves: they wait until a worker with those labels starts.
            </p>
          )}
          <table class="label-sets">
            <thead>
              <tr><th scope="col">Needs</th><th scope="col">Queued</th><th scope="col">Served by</th><th scope="col">Workflows</th></tr>
            </thead>
            <tbody>
              {sets.label_sets.map((s) => (
                <tr class={s.workers.length ? '' : 'unserved'}>
                  <td>{s.requirements.length ? s.requirements.map((r) => <span class="chip">{r}</span>) : <span class="muted">any worker</span>}</td>
                  <td>{s.queued}</td>
                  <td>
                    {s.workers.length ? (
                      s.workers.join(', ')
                    ) : (
                      <span class="badge warn">⚠ nobody serves these</span>
                    )}
                  </td>
                  <td class="small mono">
                    {s.workflows.map((wf) => (
                      <a href={workflowHref(wf)}>{wf}</a>
                    ))}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
          {!sets.complete && <p class="muted small">Counted over the newest running workflows only.</p>}
        </>
      )}
    </main>
  );
}
