// Fan-out instances on a workflow's page. A fanned-out job `test` (matrix, for_each) runs as
// instances `test-0`, `test-1` ... that are not in the definition: the graph answers their views
// with their job, and their events come on the workflow's stream like any job's. They are kept
// here, per fanned-out job, with their count by status, so that the graph draws one node per
// fanned-out job (a status bar of its instances) and its panel lists the instances: 1,000 of
// them as nodes would bury the rest of the graph.
import type { EventRecord, GraphJob, JobView } from './api';
import type { JobLive } from './fold';
import { applyJob, jobOf, live } from './fold';

export interface Fan {
  /** Instance i is `${job}-${i}`, in item order. */
  instances: JobLive[];
  counts: Record<string, number>;
}

export type Fans = Map<string, Fan>;

const NONE: JobView = {
  status: 'pending',
  attempts: 0,
  outputs: {},
  error: null,
  worker_id: null,
  started_at: null,
  ended_at: null,
};

function made(instances: JobLive[]): Fan {
  const counts: Record<string, number> = {};
  for (const instance of instances) counts[instance.status] = (counts[instance.status] ?? 0) + 1;
  return { instances, counts };
}

/** The fan-outs of a graph just read. */
export function fansOf(jobs: GraphJob[]): Fans {
  const fans: Fans = new Map();
  for (const job of jobs) {
    if (job.instances) fans.set(job.name, made(job.instances.map((v) => live({ ...NONE, ...v }))));
  }
  return fans;
}

/** `["test", 3]` for `test-3` when `test` fanned out into at least 4 instances. */
export function instanceOf(fans: Fans, name: string): [string, number] | null {
  const cut = name.lastIndexOf('-');
  const tail = name.slice(cut + 1);
  if (cut < 1 || !/^\d+$/.test(tail)) return null;
  const parent = name.slice(0, cut);
  const index = Number(tail);
  const fan = fans.get(parent);
  return fan && index < fan.instances.length ? [parent, index] : null;
}

export const instanceName = (job: string, index: number) => `${job}-${index}`;

/** The fan-outs after a batch of events: the same map when none of them touched an instance. A
 * fan-out touched is copied once per batch, not once per event. */
export function applyFans(fans: Fans, batch: EventRecord[]): Fans {
  let next: Fans | null = null;
  const own = new Set<string>(); // fans copied for this batch: changed in place
  for (const record of batch) {
    const name = jobOf(record);
    if (!name) continue;
    if (record.type === 'JobFannedOut') {
      // (Fanned out again after a retry: its instances were reopened, by events, just before.)
      const items = Array.isArray(record.data.items) ? record.data.items : [];
      const before = (next ?? fans).get(name);
      (next ??= new Map(fans)).set(name, made(items.map((_, i) => before?.instances[i] ?? live(NONE))));
      own.add(name);
      continue;
    }
    const found = instanceOf(next ?? fans, name);
    if (!found) continue;
    const [parent, index] = found;
    let fan = (next ?? fans).get(parent)!;
    const before = fan.instances[index];
    const after = applyJob(before, record);
    if (after === before) continue;
    if (!own.has(parent)) {
      fan = { instances: fan.instances.slice(), counts: { ...fan.counts } };
      (next ??= new Map(fans)).set(parent, fan);
      own.add(parent);
    }
    fan.instances[index] = after;
    if (after.status !== before.status) {
      fan.counts[before.status] = (fan.counts[before.status] ?? 1) - 1;
      fan.counts[after.status] = (fan.counts[after.status] ?? 0) + 1;
    }
  }
  return next ?? fans;
}

/** How many instances ended (succeeded, failed, skipped or cancelled). */
export function ended(fan: Fan): number {
  const c = fan.counts;
  return (c.succeeded ?? 0) + (c.failed ?? 0) + (c.skipped ?? 0) + (c.cancelled ?? 0);
}

/** Every job by status as the status object counts them: each job of the definition (a
 * fanned-out job too, running until its instances end) and each instance of a fan-out. */
export function countAll(jobs: Map<string, JobLive>, fans: Fans): Record<string, number> {
  const out: Record<string, number> = {};
  for (const job of jobs.values()) out[job.status] = (out[job.status] ?? 0) + 1;
  for (const fan of fans.values()) {
    for (const [status, n] of Object.entries(fan.counts)) if (n) out[status] = (out[status] ?? 0) + n;
  }
  return out;
}

/** The first `limit` jobs and instances whose name contains `text` (case ignored), each job
 * followed by its instances, with their status. Instance names are made as they are compared:
 * 10,000 of them are a few milliseconds. */
export function findJobs(
  jobs: Map<string, JobLive>,
  fans: Fans,
  text: string,
  limit: number,
): [string, string][] {
  const wanted = text.toLowerCase();
  const found: [string, string][] = [];
  for (const [name, job] of jobs) {
    if (name.toLowerCase().includes(wanted)) found.push([name, job.status]);
    if (found.length >= limit) return found;
    const fan = fans.get(name);
    if (!fan) continue;
    for (let i = 0; i < fan.instances.length; i++) {
      const instance = instanceName(name, i);
      if (!instance.toLowerCase().includes(wanted)) continue;
      found.push([instance, fan.instances[i].status]);
      if (found.length >= limit) return found;
    }
  }
  return found;
}
