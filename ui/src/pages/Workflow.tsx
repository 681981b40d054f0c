// A workflow: the live DAG, and beside it the overview (status, inputs, outputs, reason), the
// history timeline, or the job opened from the graph. Built on GET .../graph and the events
// stream followed from the graph's position (no gap, no replay, no reload).
import type { JSX } from 'preact';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { EventRecord, Graph } from '../api';
import { ApiError, get, post, urlNamespace } from '../api';
import { Dag } from '../dag/Dag';
import type { Layout } from '../dag/layout';
import { BIG, layout as computeLayout, elkReadyAt, sketch, warmUp } from '../dag/layout';
import type { Fans } from '../fanout';
import { applyFans, countAll, fansOf, findJobs, instanceOf } from '../fanout';
import type { JobLive, WorkflowLive } from '../fold';
import { applyJob, applyWorkflow, jobOf, live } from '../fold';
import { between, stamp } from '../format';
import { jobHref, navigate, withNamespace, workflowHref } from '../router';
import { openStream } from '../sse';
import { Status, STATUSES, StatusIcon } from '../status';
import { History } from './History';
import { JobPanel } from './JobPanel';

declare global {
  interface Window {
    /** Figures the browser tests read: when the graph was drawn, how long its layout took. */
    __jetwork?: {
      graphJobs: number;
      graphMs: number;
      /** The first drawing (for a big graph: the sketch). */
      drawnMs: number;
      elkReadyMs?: number;
      layoutMs?: number;
      /** ELK's layout drawn. */
      laidOutMs?: number;
    };
  }
}

type Tab = 'overview' | 'history';

/** Layouts of the workflows seen last (a workflow's jobs and edges never change). */
const laidOut = new Map<string, Layout>();

export function WorkflowPage({ id, job }: { id: string; job: string | null }): JSX.Element {
  const [graph, setGraph] = useState<Graph | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [jobs, setJobs] = useState<Map<string, JobLive>>(new Map());
  const [fans, setFans] = useState<Fans>(new Map());
  const [wf, setWf] = useState<WorkflowLive | null>(null);
  const [dag, setDag] = useState<Layout | null>(null);
  const [connection, setConnection] = useState('connecting');
  const [tab, setTab] = useState<Tab>('overview');
  const [tick, setTick] = useState(0);
  const [live_events, setLiveEvents] = useState<EventRecord[]>([]);
  const opened = useRef(performance.now());
  const fetched = useRef(0);

  // Load the graph (retrying while the start waits for an engine), then follow its events.
  useEffect(() => {
    let cancelled = false;
    let stream: { close(): void } | null = null;
    let timer = 0;
    const pending: EventRecord[] = [];
    let frame = 0;
    opened.current = performance.now();
    window.__jetwork = undefined;
    setGraph(null);
    setDag(null);
    setProblem(null);
    setLiveEvents([]);

    const flush = () => {
      frame = 0;
      const batch = pending.splice(0);
      if (!batch.length) return;
      setJobs((current) => {
        let next: Map<string, JobLive> | null = null;
        for (const record of batch) {
          const name = jobOf(record);
          const before = name ? (next ?? current).get(name) : undefined;
          if (!name || !before) continue;
          const after = applyJob(before, record);
          if (after !== before) (next ??= new Map(current)).set(name, after);
        }
        return next ?? current;
      });
      setFans((current) => applyFans(current, batch));
      setWf((current) => current && batch.reduce(applyWorkflow, current));
      setLiveEvents((current) => current.concat(batch));
    };

    const load = async () => {
      warmUp();
      try {
        const loaded = await get<Graph>(`/api/workflows/${encodeURIComponent(id)}/graph`);
        if (cancelled) return;
        fetched.current = performance.now() - opened.current;
        setGraph(loaded);
        setJobs(new Map(loaded.jobs.map((j) => [j.name, live(j.view)])));
        setFans(fansOf(loaded.jobs));
        setWf({
          status: loaded.status,
          reason: loaded.reason,
          started_at: loaded.started_at,
          ended_at: loaded.ended_at,
          cancel_requested: false,
          outputs: loaded.outputs ?? {},
          group: loaded.group ?? null,
        });
        stream = openStream(`/api/events?workflow_id=${encodeURIComponent(id)}`, {
          lastEventId: String(loaded.seq),
          resumable: true,
          onMessage: (message) => {
            pending.push(JSON.parse(message.data) as EventRecord);
            frame ||= requestAnimationFrame(flush);
          },
          onState: (state, detail) => setConnection(detail ? `${state}: ${detail}` : state),
        });
        const known = laidOut.get(id);
        if (!known && loaded.jobs.length > BIG) setDag(sketch(loaded.jobs));
        const placed = known ?? (await computeLayout(loaded.jobs));
        laidOut.delete(id);
        laidOut.set(id, placed);
        if (laidOut.size > 8) laidOut.delete(laidOut.keys().next().value!);
        if (!cancelled) setDag(placed);
      } catch (error) {
        if (cancelled) return;
        if (error instanceof ApiError && (error.code === 'not_started' || error.status === 0)) {
          setProblem(error.code === 'not_started' ? 'Waiting for an engine to start this workflow…' : error.message);
          timer = window.setTimeout(load, 1000);
          return;
        }
        setProblem(error instanceof Error ? error.message : String(error));
      }
    };
    load();
    return () => {
      cancelled = true;
      stream?.close();
      clearTimeout(timer);
      cancelAnimationFrame(frame);
    };
  }, [id]);

  // Record when the graph is on the screen, sketched and laid out (read by the browser tests).
  useEffect(() => {
    if (!dag || !graph) return;
    requestAnimationFrame(() => {
      const now = Math.round(performance.now() - opened.current);
      const figures = window.__jetwork;
      window.__jetwork = {
        graphJobs: graph.jobs.length,
        graphMs: Math.round(fetched.current),
        drawnMs: figures?.drawnMs ?? now,
        ...(dag.sketch
          ? {}
          : {
              elkReadyMs: Math.round(elkReadyAt - opened.current),
              layoutMs: Math.round(dag.millis),
              laidOutMs: now,
            }),
      };
    });
  }, [dag, graph]);

  const running = wf?.status === 'running' || wf?.status === 'queued';
  useEffect(() => {
    if (!running) return;
    const timer = setInterval(() => setTick((n) => n + 1), 1000);
    return () => clearInterval(timer);
  }, [running]);

  const open = useCallback((name: string) => navigate(jobHref(id, name)), [id]);
  const close = useCallback(() => {
    navigate(workflowHref(id));
    document.querySelector<HTMLElement>('.dag')?.focus(); // back where the job was opened
  }, [id]);

  if (!graph || !wf) {
    return (
      <main id="main" class="page">
        <p><a href={withNamespace('/')}>← Workflows</a></p>
        <h1 class="mono">{id}</h1>
        <p role="status">{problem ?? 'Loading…'}</p>
        {problem && urlNamespace() && <p class="muted">Looked for in namespace {urlNamespace()}.</p>}
      </main>
    );
  }

  // An instance `<job>-<index>` opens in the panel as a job of its own; the graph marks its job.
  const instance = job !== null && !jobs.has(job) ? instanceOf(fans, job) : null;
  const parent = instance ? graph.jobs.find((j) => j.name === instance[0]) : undefined;
  const structure = parent ? { ...parent, name: job! } : (graph.jobs.find((j) => j.name === job) ?? null);
  const liveJob = instance ? fans.get(instance[0])!.instances[instance[1]] : job ? jobs.get(job) : undefined;
  return (
    <main id="main" class="page workflow-page">
      <WorkflowHeader graph={graph} wf={wf} jobs={jobs} fans={fans} connection={connection} tick={tick} />
      <div class="split">
        <section class="graph-pane" aria-label="Graph">
          {dag ? (
            <Dag key={id} layout={dag} jobs={jobs} fans={fans} selected={instance ? instance[0] : job} onOpen={open} onClose={close} tick={tick} />
          ) : (
            <p class="placeholder" role="status">Laying out {graph.jobs.length} jobs…</p>
          )}
        </section>
        <aside class="side" aria-label="Details">
          {job ? (
            structure && liveJob ? (
              <JobPanel
                workflowId={id}
                job={structure}
                live={liveJob}
                onClose={close}
                workflowStatus={wf.status}
                fan={fans.get(job)}
                instance={instance}
              />
            ) : (
              <p>
                No job named <code>{job}</code> in this workflow. <a href={workflowHref(id)}>Back</a>
              </p>
            )
          ) : (
            <>
              <div class="tabs" role="tablist" aria-label="Workflow details">
                {(['overview', 'history'] as Tab[]).map((t) => (
                  <button
                    type="button"
                    role="tab"
                    aria-selected={tab === t}
                    class={tab === t ? 'active' : ''}
                    onClick={() => setTab(t)}
                  >
                    {t === 'overview' ? 'Overview' : 'History'}
                  </button>
                ))}
              </div>
              {tab === 'overview' ? (
                <Overview graph={graph} wf={wf} jobs={jobs} fans={fans} />
              ) : (
                <History workflowId={id} live={live_events} />
              )}
            </>
          )}
        </aside>
      </div>
    </main>
  );
}

function WorkflowHeader({
  graph,
  wf,
  jobs,
  fans,
  connection,
  tick,
}: {
  graph: Graph;
  wf: WorkflowLive;
  jobs: Map<string, JobLive>;
  fans: Fans;
  connection: string;
  tick: number;
}): JSX.Element {
  const [asking, setAsking] = useState(false);
  const [reason, setReason] = useState('cancelled from the web UI');
  const [force, setForce] = useState(false);
  const [error, setError] = useState<string | null>(null);
  // Every job of the status object: a fanned-out job once, and each of its instances once.
  const by = useMemo(() => countAll(jobs, fans), [jobs, fans]);
  const total = Object.values(by).reduce((a, b) => a + b, 0);
  const done = (by.succeeded ?? 0) + (by.failed ?? 0) + (by.skipped ?? 0) + (by.cancelled ?? 0);
  const shown = wf.status === 'running' && wf.cancel_requested ? 'cancel requested' : wf.status;
  void tick;

  // Pause, resume, retry: the HTTP API answers 409 with the reason when it makes no sense.
  const control = (what: 'pause' | 'resume' | 'retry') => async () => {
    setError(null);
    try {
      await post(`/api/workflows/${encodeURIComponent(graph.workflow_id)}/${what}`, {
        by: 'web UI',
      });
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  // Restart: a new run with the same definition and inputs; the page goes to it.
  const restart = async () => {
    setError(null);
    try {
      const answer = await post<{ restarted_as: string }>(
        `/api/workflows/${encodeURIComponent(graph.workflow_id)}/restart`,
        { by: 'web UI' },
      );
      navigate(workflowHref(answer.restarted_as));
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  const cancel = async (event: Event) => {
    event.preventDefault();
    setError(null);
    try {
      await post(`/api/workflows/${encodeURIComponent(graph.workflow_id)}/cancel`, { reason, force });
      setAsking(false);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };

  return (
    <header class="wf-header">
      <div class="crumbs">
        <a href={withNamespace('/')}>← Workflows</a>
      </div>
      <div class="wf-title">
        <h1>{graph.name}</h1>
        <Status status={shown} />
        <span class="mono muted" title="workflow id">{graph.workflow_id}</span>
        <span class="chip" title="the namespace it runs in">namespace {graph.namespace ?? 'default'}</span>
      </div>
      <dl class="facts">
        <div><dt>Started</dt><dd>{stamp(wf.started_at)}</dd></div>
        <div><dt>Duration</dt><dd>{between(wf.started_at, wf.ended_at)}</dd></div>
        {wf.group && (
          <div class="group" title="workflow concurrency group">
            <dt>Concurrency group</dt>
            <dd class="mono">{wf.group}</dd>
          </div>
        )}
        <div class="jobs">
          <dt>Jobs</dt>
          <dd>
            {done} of {total} done
            <progress max={total} value={done} aria-label="jobs done" />
          </dd>
        </div>
        <div class="counts">
          <dt class="sr-only">By status</dt>
          <dd>
            {STATUSES.filter((s) => by[s]).map((s) => (
              <span class={`count st-${s}`} title={s}>
                <StatusIcon status={s} /> {by[s]} {s}
              </span>
            ))}
          </dd>
        </div>
        <div class="live" title="live updates from the events stream">
          <dt class="sr-only">Live</dt>
          <dd>{wf.status === 'running' || wf.status === 'paused' || wf.status === 'queued' ? (connection === 'open' ? '● live' : `○ ${connection}`) : ''}</dd>
        </div>
      </dl>
      <div class="actions">
        {wf.status === 'running' && !asking && !wf.cancel_requested && (
          <button type="button" onClick={control('pause')}>Pause</button>
        )}
        {wf.status === 'paused' && !asking && (
          <button type="button" onClick={control('resume')}>Resume</button>
        )}
        {(wf.status === 'failed' || wf.status === 'cancelled') && (
          <button type="button" onClick={control('retry')}>Retry failed jobs</button>
        )}
        {(wf.status === 'succeeded' || wf.status === 'failed' || wf.status === 'cancelled') && (
          <button type="button" onClick={restart}>Restart as a new run</button>
        )}
        {!asking && error && <span class="error" role="alert">{error}</span>}
        {(wf.status === 'running' || wf.status === 'paused' || wf.status === 'queued') && !asking && (
          <button type="button" class="danger" onClick={() => setAsking(true)} disabled={wf.cancel_requested}>
            {wf.cancel_requested ? 'Cancel requested' : 'Cancel workflow…'}
          </button>
        )}
        {asking && (
          <form class="cancel-form" onSubmit={cancel} aria-label="Cancel the workflow">
            <label>
              Reason <input value={reason} onInput={(e) => setReason(e.currentTarget.value)} autoFocus />
            </label>
            <label title="also stop if: always() clean-ups">
              <input type="checkbox" checked={force} onChange={(e) => setForce(e.currentTarget.checked)} /> force
            </label>
            <button type="submit" class="danger">Cancel it</button>
            <button type="button" onClick={() => setAsking(false)}>Keep running</button>
            {error && <span class="error" role="alert">{error}</span>}
          </form>
        )}
      </div>
    </header>
  );
}

function Overview({
  graph,
  wf,
  jobs,
  fans,
}: {
  graph: Graph;
  wf: WorkflowLive;
  jobs: Map<string, JobLive>;
  fans: Fans;
}): JSX.Element {
  const [find, setFind] = useState('');
  const outputs = [...jobs.entries()].filter(([, j]) => Object.keys(j.outputs).length);
  const inputs = Object.entries(graph.inputs);
  // The jobs and the fan-outs' instances (`<job>-<index>`) whose names hold what is typed.
  const matches = find ? findJobs(jobs, fans, find, 40) : [];
  return (
    <div class="overview">
      {wf.reason && (
        <section>
          <h2>Reason</h2>
          <p class={`reason st-${wf.status}`}>{wf.reason}</p>
        </section>
      )}
      <section>
        <h2>Inputs</h2>
        {inputs.length ? (
          <table class="kv">
            <tbody>
              {inputs.map(([k, v]) => (
                <tr><th scope="row">{k}</th><td class="mono">{JSON.stringify(v)}</td></tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">none</p>
        )}
        {graph.idempotency_key && (
          <p class="muted">idempotency key <code>{graph.idempotency_key}</code></p>
        )}
      </section>
      {Object.keys(wf.outputs).length > 0 && (
        <section>
          <h2>Result</h2>
          <table class="kv">
            <tbody>
              {Object.entries(wf.outputs).map(([k, v]) => (
                <tr><th scope="row">{k}</th><td class="mono">{v}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      <section>
        <h2>Outputs</h2>
        {outputs.length ? (
          <table class="kv">
            <tbody>
              {outputs.flatMap(([name, j]) =>
                Object.entries(j.outputs).map(([k, v]) => (
                  <tr>
                    <th scope="row"><a href={jobHref(graph.workflow_id, name)}>{name}</a>.{k}</th>
                    <td class="mono">{v}</td>
                  </tr>
                )),
              )}
            </tbody>
          </table>
        ) : (
          <p class="muted">{wf.status === 'running' || wf.status === 'queued' ? 'none yet' : 'none'}</p>
        )}
      </section>
      <section>
        <h2><label for="find-job">Find a job</label></h2>
        <input id="find-job" type="search" placeholder="name, or job-3…" value={find} onInput={(e) => setFind(e.currentTarget.value)} />
        <ul class="job-list">
          {matches.map(([name, status]) => (
            <li>
              <a href={jobHref(graph.workflow_id, name)}>{name}</a> <Status status={status} />
            </li>
          ))}
        </ul>
      </section>
    </div>
  );
}
