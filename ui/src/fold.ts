// Events applied to the views the page shows: the job view of the status object (README,
// "Status JSON") as the job actor's evolve makes it, and the workflow's status and reason.
import type { EventRecord, JobView } from './api';
import { TERMINAL } from './status';

export interface JobLive extends JobView {
  /** When the job last ended (kept while it is queued again for a retry). */
  last_end: string | null;
}

export interface WorkflowLive {
  status: string;
  reason: string | null;
  started_at: string | null;
  ended_at: string | null;
  cancel_requested: boolean;
  /** The workflow's result (its definition's outputs), once it succeeded. */
  outputs: Record<string, string>;
  /** Its workflow concurrency group (rendered), once queued for it. */
  group: string | null;
}

export function jobOf(record: EventRecord): string | null {
  return record.actor.startsWith('job ') ? record.actor.slice(4) : null;
}

export function live(view: JobView): JobLive {
  return { ...view, last_end: view.ended_at };
}

const s = (value: unknown): string | null => (typeof value === 'string' ? value : null);

/** ``job`` after the claim a result records with itself (``claimed``: a run that ended within
 * its worker's claim window appends no ``JobStarted`` of its own), else ``job``. */
function claimed(job: JobLive, d: Record<string, unknown>): JobLive {
  const claim = d.claimed as Record<string, unknown> | null | undefined;
  if (!claim || typeof d.worker_id !== 'string') return job;
  return { ...job, attempts: Number(d.attempt), worker_id: d.worker_id, started_at: s(claim.started_at) };
}

/** The job's view after ``record`` (a new object when it changed, else the same one). */
export function applyJob(job: JobLive, record: EventRecord): JobLive {
  const d = record.data;
  let next: JobLive;
  switch (record.type) {
    case 'JobQueued':
      next = { ...job, status: 'queued', attempts: Number(d.attempt), worker_id: null };
      break;
    case 'JobSkipped':
      // By an operator (``by``): its outputs stand in for a success's.
      next = {
        ...job,
        status: 'skipped',
        outputs: d.by ? ((d.outputs as Record<string, string>) ?? {}) : job.outputs,
        last_end: s(d.at),
      };
      break;
    case 'JobReopened':
      // An operator's retry: pending again, to run as a new attempt.
      next = { ...job, status: 'pending', outputs: {}, error: null, last_end: null };
      break;
    case 'JobStarted':
      next = {
        ...job,
        status: 'running',
        attempts: Number(d.attempt),
        worker_id: s(d.worker_id),
        started_at: s(d.started_at),
      };
      break;
    case 'JobSucceeded':
      next = {
        ...claimed(job, d),
        status: 'succeeded',
        outputs: (d.outputs as Record<string, string>) ?? {},
        error: null,
        last_end: s(d.ended_at),
      };
      break;
    case 'JobFailed':
      next = {
        ...claimed(job, d),
        status: d.will_retry ? 'retrying' : 'failed',
        error: s(d.error),
        last_end: s(d.ended_at),
      };
      break;
    case 'JobSleepStarted':
      // A sleep/until job: it waits on the engine's timer, for no worker.
      next = { ...job, status: 'queued', attempts: Number(d.attempt), sleeping_until: s(d.until) };
      break;
    case 'JobRetryScheduled':
      next = { ...job, status: 'retrying' };
      break;
    case 'JobParked':
      // InProgress: the attempt is looked at again later, holding no worker meanwhile.
      next = { ...job, status: 'parked', worker_id: null, outputs: (d.outputs as Record<string, string>) ?? {} };
      break;
    case 'JobWaiting':
      // wait_for: the engine holds it until a signal or a webhook (or its timeout), no worker.
      next = { ...job, status: 'waiting', attempts: Number(d.attempt), worker_id: null };
      break;
    case 'SubWorkflowStarted':
      // a workflow: job runs as a child workflow of its own.
      next = { ...job, status: 'running', attempts: Number(d.attempt), worker_id: s(d.child_id) };
      break;
    case 'JobLooped':
      // a loop: job's next iteration is about to be queued.
      next = { ...job, status: 'pending' };
      break;
    case 'JobCancelled':
      next = { ...job, status: 'cancelled', last_end: s(d.at) };
      break;
    case 'JobFannedOut':
      // a matrix or for_each job: it runs until its instances (fanout.ts) have ended.
      next = {
        ...job,
        status: 'running',
        attempts: Number(d.attempt),
        started_at: s(d.at),
        outputs: {},
        error: null,
        last_end: null,
      };
      break;
    case 'JobFannedIn':
      next = {
        ...job,
        status: d.succeeded ? 'succeeded' : 'failed',
        outputs: (d.outputs as Record<string, string>) ?? {},
        error: s(d.error),
        last_end: s(d.ended_at),
      };
      break;
    default:
      return job;
  }
  next.ended_at = TERMINAL.has(next.status) ? next.last_end : null;
  return next;
}

export function applyWorkflow(wf: WorkflowLive, record: EventRecord): WorkflowLive {
  const d = record.data;
  switch (record.type) {
    case 'WorkflowSucceeded':
      return {
        ...wf,
        status: 'succeeded',
        ended_at: s(d.ended_at),
        outputs: (d.outputs as Record<string, string>) ?? {},
      };
    case 'WorkflowFailed':
      return { ...wf, status: 'failed', reason: s(d.reason), ended_at: s(d.ended_at) };
    case 'WorkflowCancelled':
      return { ...wf, status: 'cancelled', reason: s(d.reason), ended_at: s(d.ended_at) };
    case 'WorkflowCancelRequested':
      return { ...wf, cancel_requested: true };
    case 'WorkflowPaused':
      return { ...wf, status: 'paused', reason: operatorNote('paused', d.by, d.reason) };
    case 'WorkflowResumed':
      return { ...wf, status: 'running', reason: null };
    case 'WorkflowQueued':
      // A concurrency group's run waits for a slot (the status object's words for why).
      return {
        ...wf,
        status: 'queued',
        group: s(d.group),
        reason: `waiting for concurrency group ${s(d.group)} (limit ${Number(d.limit)})`,
      };
    case 'WorkflowAdmitted':
      return { ...wf, status: 'running', reason: null, group: s(d.group) };
    case 'WorkflowRetried':
    case 'WorkflowRerun':
      return { ...wf, status: 'running', reason: null, ended_at: null, cancel_requested: false, outputs: {} };
    default:
      return wf;
  }
}

/** ``paused by ops: freeze``, as the status object's ``reason`` says it. */
function operatorNote(what: string, by: unknown, reason: unknown): string {
  const why = s(reason);
  return `${what} by ${s(by) ?? 'unknown'}${why ? `: ${why}` : ''}`;
}
