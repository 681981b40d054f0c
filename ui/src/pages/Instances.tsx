// A fanned-out job's instances, in its panel: counted by status (each count a filter) and one
// cell per instance in item order — its status as an icon, its name and status in its label — a
// link to the instance's own panel (claims, log). Live: the cells follow the events.
import type { JSX } from 'preact';
import { useMemo, useState } from 'preact/hooks';
import type { Fan } from '../fanout';
import { instanceName } from '../fanout';
import { jobHref } from '../router';
import { cls, STATUSES, StatusIcon } from '../status';

/** Cells drawn at a time (10,000 instances are a page of their own); "Show more" adds as many. */
const PAGE = 1000;

export function Instances({ workflowId, job, fan }: { workflowId: string; job: string; fan: Fan }): JSX.Element {
  const [only, setOnly] = useState<string | null>(null);
  const [shown, setShown] = useState(PAGE);
  const picked = useMemo(() => {
    const out: number[] = [];
    fan.instances.forEach((instance, i) => {
      if (only === null || instance.status === only) out.push(i);
    });
    return out;
  }, [fan, only]);
  const choose = (status: string | null) => {
    setOnly(status === only ? null : status);
    setShown(PAGE);
  };
  return (
    <section class="instances" aria-label="Instances">
      <h3>
        Instances <span class="muted">({fan.instances.length})</span>
      </h3>
      <div class="instance-filter" role="group" aria-label="Show the instances of one status">
        <button type="button" aria-pressed={only === null} onClick={() => choose(null)}>
          all {fan.instances.length}
        </button>
        {STATUSES.filter((s) => fan.counts[s]).map((s) => (
          <button type="button" class={`count st-${s}`} data-status={s} aria-pressed={only === s} onClick={() => choose(s)}>
            <StatusIcon status={s} /> {fan.counts[s]} {s}
          </button>
        ))}
      </div>
      {picked.length ? (
        <ol class="instance-grid">
          {picked.slice(0, shown).map((i) => {
            const instance = fan.instances[i];
            const name = instanceName(job, i);
            const said = `${name}: ${instance.status}${instance.attempts > 1 ? `, attempt ${instance.attempts}` : ''}`;
            return (
              <li key={i}>
                <a
                  class={`cell st-${cls(instance.status)}`}
                  href={jobHref(workflowId, name)}
                  data-job={name}
                  data-status={instance.status}
                  title={said}
                  aria-label={said}
                >
                  <StatusIcon status={instance.status} size={12} />
                </a>
              </li>
            );
          })}
        </ol>
      ) : (
        <p class="muted">none {only}</p>
      )}
      {picked.length > shown && (
        <button type="button" onClick={() => setShown(shown + PAGE)}>
          Show {Math.min(PAGE, picked.length - shown)} more (of {picked.length - shown} left)
        </button>
      )}
    </section>
  );
}
