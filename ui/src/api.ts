// The gateway's client API (docs/http.md): JSON over fetch, bearer token from localStorage.

export class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
    readonly problems: string[] = [],
  ) {
    super(message);
  }
}

const TOKEN_KEY = 'jetwork.token';
type Listener = () => void;
const tokenListeners = new Set<Listener>();
let tokenWanted = false;

export function token(): string | null {
  return localStorage.getItem(TOKEN_KEY);
}

export function setToken(value: string | null): void {
  if (value) localStorage.setItem(TOKEN_KEY, value);
  else localStorage.removeItem(TOKEN_KEY);
  tokenWanted = false;
  tokenListeners.forEach((l) => l());
}

/** True once a request was refused for want of a (valid) token. */
export function isTokenWanted(): boolean {
  return tokenWanted;
}

export function onTokenChange(listener: Listener): () => void {
  tokenListeners.add(listener);
  return () => tokenListeners.delete(listener);
}

/** The namespace the page works in: the URL's `?namespace=` (links carry it, so they are
 * shareable); null: the gateway's own. Every request and stream names it (Jetwork-Namespace). */
export function urlNamespace(): string | null {
  return new URLSearchParams(location.search).get('namespace') || null;
}

export const NAMESPACE_NAME = /^[A-Za-z0-9_-]{1,64}$/;

export function headers(extra: Record<string, string> = {}): Record<string, string> {
  const t = token();
  const ns = urlNamespace();
  const named = ns ? { ...extra, 'Jetwork-Namespace': ns } : extra;
  return t ? { ...named, Authorization: `Bearer ${t}` } : named;
}

export async function errorOf(response: Response): Promise<ApiError> {
  let body: { error?: string; code?: string; problems?: string[] } = {};
  try {
    body = await response.json();
  } catch {
    /* not JSON: a proxy's page, say */
  }
  if (response.status === 401 && !tokenWanted) {
    tokenWanted = true;
    tokenListeners.forEach((l) => l());
  }
  return new ApiError(
    response.status,
    body.code ?? 'http',
    body.error ?? `${response.status} ${response.statusText}`,
    body.problems ?? [],
  );
}

export async function request<T>(
  method: string,
  path: string,
  body?: BodyInit,
  contentType = 'application/json',
): Promise<T> {
  let response: Response;
  try {
    response = await fetch(path, {
      method,
      body,
      headers: headers(body === undefined ? {} : { 'Content-Type': contentType }),
    });
  } catch (error) {
    throw new ApiError(0, 'network', `the gateway did not answer (${String(error)})`);
  }
  if (!response.ok) throw await errorOf(response);
  return (await response.json()) as T;
}

export const get = <T>(path: string) => request<T>('GET', path);
export const post = <T>(path: string, body: unknown) =>
  request<T>('POST', path, JSON.stringify(body));

// --- the shapes the API answers (docs/http.md) ---

export type JobStatus =
  | 'pending'
  | 'queued'
  | 'waiting'
  | 'parked'
  | 'running'
  | 'retrying'
  | 'succeeded'
  | 'failed'
  | 'skipped'
  | 'cancelled';

export interface JobView {
  status: JobStatus;
  attempts: number;
  outputs: Record<string, string>;
  error: string | null;
  worker_id: string | null;
  started_at: string | null;
  ended_at: string | null;
  /** A sleep/until job: when it wakes. */
  sleeping_until?: string | null;
}

export interface AtLeast {
  count: number;
  of: string[];
}

export interface GraphJob {
  name: string;
  needs: string[];
  needs_any: string[];
  needs_at_least?: AtLeast | null;
  labels: string[];
  uses: string | null;
  run: string | null;
  if: string | null;
  view: JobView;
  /** A fanned-out job (matrix, for_each): its instances' views in item order, their null
   * fields left out (instance i is `<name>-<i>`); null before it fans out. */
  instances?: Partial<JobView>[] | null;
}

export interface Graph {
  workflow_id: string;
  name: string;
  status: string;
  reason: string | null;
  started_at: string | null;
  ended_at: string | null;
  inputs: Record<string, unknown>;
  idempotency_key: string | null;
  seq: number;
  jobs: GraphJob[];
  /** The workflow's result, once it succeeded. */
  outputs?: Record<string, string>;
  /** Its workflow concurrency group (rendered), once queued: status `queued` waits for it. */
  group?: string | null;
  /** The namespace it runs in. */
  namespace?: string;
}

export interface EventRecord {
  seq: number;
  time: string;
  subject: string;
  actor: string;
  type: string;
  data: Record<string, unknown>;
}

export interface Summary {
  workflow_id: string;
  name: string;
  status: string;
  started_at: string | null;
  ended_at: string | null;
  job_counts: Record<string, number>;
  /** Its workflow concurrency group (status `queued`: waits for a slot of it). */
  group?: string | null;
}

export interface ListPage {
  workflows: Summary[];
  next: string | null;
  limit: number;
}

export interface Claim {
  attempt: number;
  epoch: number;
  worker_id: string;
  started_at: string;
  lease_ttl: number;
  outcome: string;
  ended_at: string | null;
  error: string | null;
}

export interface JobDetail {
  workflow_id: string;
  job: string;
  needs: string[];
  needs_any: string[];
  labels: string[];
  uses: string | null;
  run: string | null;
  if: string | null;
  command: string | null;
  view: JobView;
  claims: Claim[];
  /** An instance `<job>-<index>` of a fan-out: its fanned-out job and item. */
  instance_of?: { job: string; index: number; item: unknown } | null;
  /** A fanned-out job: its instances in item order. */
  instances?: { name: string; index: number; item: unknown; status: JobStatus; attempts: number }[] | null;
  rejected: {
    attempt: number;
    epoch: number;
    worker_id: string | null;
    outcome: string;
    reason: string;
    at: string;
  }[];
}

export interface LogLine {
  attempt: number;
  seq: number;
  stream: string;
  line: string;
  time: string;
}

export interface Worker {
  worker_id: string;
  labels: string[];
  handlers: string[];
  concurrency: number;
  started_at: string | null;
  last_seen: string | null;
  running: { workflow_id: string; job: string; attempt?: number }[];
  host: string;
  pid: number;
  stale: boolean;
}

export interface QueuedLabelSet {
  requirements: string[];
  queued: number;
  workflows: string[];
  workers: string[];
}

export interface DeadLetter {
  source: string;
  subject: string;
  seq: number | null;
  reason: string;
  payload: string;
  payload_size: number;
  at: string;
}

export interface NamespaceQuota {
  max_running_workflows: number | null;
  max_running_jobs: number | null;
  over_quota: string;
  running_workflows: number;
  running_jobs: number;
}

export interface KnownNamespace {
  namespace: string;
  workers: number;
  quota: NamespaceQuota | null;
}

export interface NamespacesOut {
  namespaces: KnownNamespace[];
  /** The one the request worked in; `gateway`: the gateway's own. */
  current: string;
  gateway: string;
}
