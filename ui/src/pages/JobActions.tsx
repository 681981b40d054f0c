// An operator's actions on one job: Skip (with optional outputs) while the workflow is open, and
// "Rerun from here" once it has ended. The HTTP API answers 409 with the reason when it makes no
// sense, shown as is.
import type { JSX } from 'preact';
import { useState } from 'preact/hooks';
import { post } from '../api';

const SKIPPABLE = new Set(['pending', 'queued', 'retrying', 'failed']);
const OPEN = new Set(['running', 'paused']);
const ENDED = new Set(['succeeded', 'failed', 'cancelled']);

// "k=v, k2=v2" (or one per line) into outputs; a part without "=" is reported.
export function parseOutputs(text: string): Record<string, string> {
  const outputs: Record<string, string> = {};
  for (const part of text.split(/[,\n]/)) {
    const item = part.trim();
    if (!item) continue;
    const at = item.indexOf('=');
    if (at < 1) throw new Error(`"${item}" is not KEY=VALUE`);
    outputs[item.slice(0, at).trim()] = item.slice(at + 1).trim();
  }
  return outputs;
}

export function JobActions({
  workflowId,
  job,
  jobStatus,
  workflowStatus,
  instance = false,
}: {
  workflowId: string;
  job: string;
  jobStatus: string;
  workflowStatus: string;
  /** A fan-out's instance: it can be skipped, not rerun (its fanned-out job can). */
  instance?: boolean;
}): JSX.Element | null {
  const [skipping, setSkipping] = useState(false);
  const [outputs, setOutputs] = useState('');
  const [error, setError] = useState<string | null>(null);
  const [done, setDone] = useState<string | null>(null);
  const base = `/api/workflows/${encodeURIComponent(workflowId)}`;
  const canSkip = OPEN.has(workflowStatus) && SKIPPABLE.has(jobStatus);
  const canRerun = ENDED.has(workflowStatus) && !instance;
  if (!canSkip && !canRerun && !error && !done) return null;

  const act = async (what: () => Promise<unknown>, said: string) => {
    setError(null);
    setDone(null);
    try {
      await what();
      setDone(said);
      setSkipping(false);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
    }
  };
  const skip = (event: Event) => {
    event.preventDefault();
    let parsed: Record<string, string>;
    try {
      parsed = parseOutputs(outputs);
    } catch (e) {
      setError(e instanceof Error ? e.message : String(e));
      return;
    }
    void act(
      () => post(`${base}/jobs/${encodeURIComponent(job)}/skip`, { outputs: parsed, by: 'web UI' }),
      `skipped ${job}`,
    );
  };
  const rerun = () =>
    act(() => post(`${base}/rerun`, { from: job, by: 'web UI' }), `rerunning from ${job}`);

  return (
    <section class="job-actions" aria-label="Operate">
      <div class="actions">
        {canSkip && !skipping && (
          <button type="button" onClick={() => setSkipping(true)}>Skip…</button>
        )}
        {canRerun && (
          <button type="button" onClick={rerun}>Rerun from here</button>
        )}
      </div>
      {skipping && (
        <form class="skip-form" onSubmit={skip}>
          <label>
            Outputs for its dependents (optional, <code>KEY=VALUE</code>, comma-separated)
            <input
              type="text"
              name="outputs"
              value={outputs}
              onInput={(e) => setOutputs((e.target as HTMLInputElement).value)}
              placeholder="version=1.2.3"
            />
          </label>
          <button type="submit">Skip job</button>
          <button type="button" onClick={() => setSkipping(false)}>Back</button>
        </form>
      )}
      {error && <p class="error" role="alert">{error}</p>}
      {done && !error && <p class="muted" role="status">{done}</p>}
    </section>
  );
}
