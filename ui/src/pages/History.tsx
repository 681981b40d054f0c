// The history timeline: every event of the workflow in log order (the audit trail), the events
// that arrive live appended. Rows are drawn only where the list is scrolled to.
import type { JSX } from 'preact';
import { useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { EventRecord } from '../api';
import { get } from '../api';
import { clock, compact } from '../format';

const ROW = 26;

export function History({ workflowId, live }: { workflowId: string; live: EventRecord[] }): JSX.Element {
  const [loaded, setLoaded] = useState<EventRecord[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [open, setOpen] = useState<number | null>(null);
  useEffect(() => {
    get<{ events: EventRecord[] }>(`/api/workflows/${encodeURIComponent(workflowId)}/history`)
      .then((body) => setLoaded(body.events))
      .catch((e) => setProblem(String(e.message ?? e)));
  }, [workflowId]);
  const events = useMemo(() => {
    if (!loaded) return [];
    const last = loaded.length ? loaded[loaded.length - 1].seq : 0;
    return loaded.concat(live.filter((e) => e.seq > last));
  }, [loaded, live]);

  const box = useRef<HTMLDivElement>(null);
  const [top, setTop] = useState(0);
  const [height, setHeight] = useState(600);
  useEffect(() => {
    const el = box.current;
    if (!el) return;
    const observer = new ResizeObserver(() => setHeight(el.clientHeight));
    observer.observe(el);
    return () => observer.disconnect();
  }, [loaded]);

  if (problem) return <p class="error" role="alert">{problem}</p>;
  if (!loaded) return <p role="status">Loading the history…</p>;
  const first = Math.max(0, Math.floor(top / ROW) - 10);
  const last = Math.min(events.length, Math.ceil((top + height) / ROW) + 10);
  const shown = events.slice(first, last);
  return (
    <div class="history">
      <p class="muted">{events.length} events, in log order</p>
      <div class="history-rows" ref={box} onScroll={(e) => setTop(e.currentTarget.scrollTop)} tabIndex={0} aria-label="History timeline" role="list">
        <div style={{ height: `${events.length * ROW}px`, position: 'relative' }}>
          {shown.map((e, i) => (
            <div
              role="listitem"
              class={`event-row type-${e.type}`}
              style={{ top: `${(first + i) * ROW}px` }}
              title={JSON.stringify(e.data, null, 1)}
              onClick={() => setOpen(open === e.seq ? null : e.seq)}
            >
              <span class="seq mono">{e.seq}</span>
              <span class="time mono">{clock(e.time)}</span>
              <span class="actor">{e.actor}</span>
              <span class="type">{e.type}</span>
              <span class="data mono muted">{compact(withoutDefinition(e.data), 120)}</span>
            </div>
          ))}
        </div>
      </div>
      {open !== null && (
        <pre class="event-data" aria-label={`event ${open}`}>
          {JSON.stringify(events.find((e) => e.seq === open)?.data, null, 2)}
        </pre>
      )}
    </div>
  );
}

function withoutDefinition(data: Record<string, unknown>): Record<string, unknown> {
  if (!('definition' in data)) return data;
  const { definition: _, ...rest } = data;
  return rest;
}
