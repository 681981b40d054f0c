// A job: its status, definition, claims (epoch, attempt, worker, outcome) and its log streaming
// live, per attempt with headers, stderr marked.
import type { JSX } from 'preact';
import { useEffect, useRef, useState } from 'preact/hooks';
import type { GraphJob, JobDetail, LogLine } from '../api';
import { get } from '../api';
import type { Fan } from '../fanout';
import type { JobLive } from '../fold';
import { between, clock, stamp } from '../format';
import { openStream } from '../sse';
import { Status } from '../status';
import { jobHref } from '../router';
import { Instances } from './Instances';
import { JobActions } from './JobActions';

const MAX_LINES = 20_000;

export function JobPanel({
  workflowId,
  job,
  live,
  onClose,
  workflowStatus = '',
  fan,
  instance = null,
}: {
  workflowId: string;
  job: GraphJob;
  live: JobLive;
  onClose: () => void;
  workflowStatus?: string;
  /** A fanned-out job: its instances. */
  fan?: Fan;
  /** An instance: its fanned-out job and index. */
  instance?: [string, number] | null;
}): JSX.Element {
  const [detail, setDetail] = useState<JobDetail | null>(null);
  const base = `/api/workflows/${encodeURIComponent(workflowId)}/jobs/${encodeURIComponent(job.name)}`;
  // Claims change when the job does: read them again on every status or attempt change.
  useEffect(() => {
    get<JobDetail>(base).then(setDetail).catch(() => setDetail(null));
  }, [base, live.status, live.attempts]);

  const heading = useRef<HTMLHeadingElement>(null);
  useEffect(() => heading.current?.focus(), [job.name]);
  // Escape closes the job from anywhere on the page but a text field.
  useEffect(() => {
    const onKey = (event: KeyboardEvent) => {
      const typing = event.target instanceof HTMLInputElement || event.target instanceof HTMLTextAreaElement;
      if (event.key === 'Escape' && !typing && !event.defaultPrevented) onClose();
    };
    document.addEventListener('keydown', onKey);
    return () => document.removeEventListener('keydown', onKey);
  }, [onClose]);

  return (
    <div class="job-panel">
      <div class="job-head">
        <h2 ref={heading} tabIndex={-1}>
          <span class="muted">{instance ? 'instance' : 'job'}</span> {job.name}
        </h2>
        <button type="button" class="close" onClick={onClose} aria-label="Close the job (Escape)" title="Close (Escape)">×</button>
      </div>
      {instance && (
        <p class="instance-of">
          Instance {instance[1]} of <a href={jobHref(workflowId, instance[0])}>{instance[0]}</a>
          {detail?.instance_of && (
            <>
              {' '}· item <code>{JSON.stringify(detail.instance_of.item)}</code>
            </>
          )}
        </p>
      )}
      <dl class="facts">
        <div><dt>Status</dt><dd><Status status={live.status} /></dd></div>
        <div><dt>Attempt</dt><dd>{live.attempts || '–'}</dd></div>
        <div><dt>Duration</dt><dd>{between(live.started_at, live.status === 'running' ? null : live.ended_at)}</dd></div>
        <div><dt>Worker</dt><dd class="mono">{live.worker_id ?? '–'}</dd></div>
      </dl>
      <JobActions
        workflowId={workflowId}
        job={job.name}
        jobStatus={live.status}
        workflowStatus={workflowStatus}
        instance={instance !== null}
      />
      {fan && <Instances workflowId={workflowId} job={job.name} fan={fan} />}
      {live.error && (
        <section>
          <h3>Error</h3>
          <pre class="error-text">{live.error}</pre>
        </section>
      )}
      {/* A fanned-out job runs nothing itself: each instance has its claims and log. */}
      {!fan && <Logs url={`${base}/logs/stream`} claims={detail?.claims ?? []} />}
      {Object.keys(live.outputs).length > 0 && (
        <section>
          <h3>Outputs</h3>
          <table class="kv">
            <tbody>
              {Object.entries(live.outputs).map(([k, v]) => (
                <tr><th scope="row">{k}</th><td class="mono">{v}</td></tr>
              ))}
            </tbody>
          </table>
        </section>
      )}
      <section>
        <h3>Definition</h3>
        <table class="kv">
          <tbody>
            {job.needs.length > 0 && <tr><th scope="row">needs</th><td>{job.needs.join(', ')}</td></tr>}
            {job.needs_any.length > 0 && <tr><th scope="row">needs any</th><td>{job.needs_any.join(', ')}</td></tr>}
            {job.needs_at_least && (
              <tr><th scope="row">needs at least</th><td>{job.needs_at_least.count} of {job.needs_at_least.of.join(', ')}</td></tr>
            )}
            {job.labels.length > 0 && <tr><th scope="row">labels</th><td>{job.labels.join(', ')}</td></tr>}
            {job.if && <tr><th scope="row">if</th><td class="mono">{job.if}</td></tr>}
            {job.uses && <tr><th scope="row">uses</th><td class="mono">{job.uses}</td></tr>}
            {job.run && <tr><th scope="row">run</th><td><code class="block">{job.run}</code></td></tr>}
            {detail?.command && detail.command !== job.run && (
              <tr><th scope="row">command</th><td><code class="block">{detail.command}</code></td></tr>
            )}
          </tbody>
        </table>
      </section>
      {!fan && <section>
        <h3>Claims</h3>
        {detail && detail.claims.length ? (
          <table class="claims">
            <thead>
              <tr><th>attempt</th><th>epoch</th><th>worker</th><th>started</th><th>outcome</th></tr>
            </thead>
            <tbody>
              {detail.claims.map((c) => (
                <tr>
                  <td>{c.attempt}</td>
                  <td>{c.epoch}</td>
                  <td class="mono">{c.worker_id}</td>
                  <td title={stamp(c.started_at)}>{clock(c.started_at)}</td>
                  <td>
                    <Status status={c.outcome} />
                    {c.error && <div class="muted small">{c.error}</div>}
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        ) : (
          <p class="muted">{detail ? 'not claimed yet' : '…'}</p>
        )}
        {detail && detail.rejected.length > 0 && (
          <p class="muted small">
            Rejected late results:{' '}
            {detail.rejected.map((r) => `epoch ${r.epoch} (${r.worker_id ?? '?'}: ${r.outcome}, ${r.reason})`).join('; ')}
          </p>
        )}
      </section>}
    </div>
  );
}

function Logs({ url, claims }: { url: string; claims: JobDetail['claims'] }): JSX.Element {
  const [lines, setLines] = useState<LogLine[]>([]);
  const [ended, setEnded] = useState<string | null>(null);
  const [state, setState] = useState('connecting');
  const [follow, setFollow] = useState(true);
  const box = useRef<HTMLDivElement>(null);

  useEffect(() => {
    setLines([]);
    setEnded(null);
    const seen = new Set<string>();
    let pending: LogLine[] = [];
    let frame = 0;
    const flush = () => {
      frame = 0;
      const batch = pending;
      pending = [];
      setLines((current) => {
        const next = current.concat(batch);
        return next.length > MAX_LINES ? next.slice(next.length - MAX_LINES) : next;
      });
    };
    const stream = openStream(url, {
      resumable: false,
      onMessage: (message) => {
        if (message.event === 'end') {
          const end = JSON.parse(message.data) as { status: string | null };
          setEnded(end.status ?? 'ended');
          return;
        }
        const line = JSON.parse(message.data) as LogLine;
        const key = `${line.attempt}:${line.seq}:${line.stream}`;
        if (seen.has(key)) return; // sent again after a reconnect
        seen.add(key);
        pending.push(line);
        frame ||= requestAnimationFrame(flush);
      },
      onState: (s, detail) => setState(detail ? `${s}: ${detail}` : s),
    });
    return () => {
      stream.close();
      cancelAnimationFrame(frame);
    };
  }, [url]);

  useEffect(() => {
    const el = box.current;
    if (el && follow) el.scrollTop = el.scrollHeight;
  }, [lines, follow]);

  const rows: JSX.Element[] = [];
  let attempt = -1;
  for (const line of lines) {
    if (line.attempt !== attempt) {
      attempt = line.attempt;
      const claim = [...claims].reverse().find((c) => c.attempt === attempt);
      rows.push(
        <div class="log-attempt" role="heading" aria-level={4}>
          attempt {attempt}
          {claim ? ` · ${claim.worker_id} · epoch ${claim.epoch} · ${claim.outcome}` : ''}
        </div>,
      );
    }
    const err = line.stream === 'stderr';
    rows.push(
      <div class={`log-line${err ? ' stderr' : ''}`}>
        <span class="log-time" title={line.time}>{clock(line.time)}</span>
        <span class="log-stream" title={line.stream}>{err ? 'err' : line.stream === 'log' ? 'log' : ''}</span>
        <span class="log-text">{line.line}</span>
      </div>,
    );
  }
  return (
    <section class="logs">
      <div class="logs-head">
        <h3>Log</h3>
        <span class="muted small" role="status">
          {ended ? `ended: job ${ended}` : state === 'open' ? '● streaming' : state}
          {' · '}
          {lines.length} lines
        </span>
        <label class="small">
          <input type="checkbox" checked={follow} onChange={(e) => setFollow(e.currentTarget.checked)} /> follow
        </label>
      </div>
      <div class="log-box" ref={box} tabIndex={0} aria-label="Log lines">
        {rows.length ? rows : <p class="muted">no output yet</p>}
      </div>
    </section>
  );
}
