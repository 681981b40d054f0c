// The live DAG: one node per job (name, status icon and word, attempt, duration), edges for
// `needs` (solid) and `needs_any` (dashed). A fanned-out job is one node drawn as a stack, with
// its instances counted and a bar of their statuses (fanout.ts); its panel lists them. Drag to pan, wheel or +/- to zoom, 0 to fit; arrow
// keys move between jobs, Enter opens one, Escape closes it.
import type { JSX } from 'preact';
import { memo } from 'preact/compat';
import { useCallback, useEffect, useMemo, useRef, useState } from 'preact/hooks';
import type { Fan, Fans } from '../fanout';
import { ended } from '../fanout';
import type { JobLive } from '../fold';
import { between } from '../format';
import { cls, iconPath, STATUSES } from '../status';
import type { Layout, Placed } from './layout';
import { NODE_H, NODE_W } from './layout';

interface Props {
  layout: Layout;
  jobs: Map<string, JobLive>;
  /** Fanned-out jobs' instances, by job. */
  fans: Fans;
  selected: string | null;
  onOpen: (job: string) => void;
  onClose: () => void;
  /** Changes every second while something runs: running nodes redraw their duration. */
  tick: number;
}

interface View {
  x: number;
  y: number;
  k: number;
}

const MAX_NAME = 24;
/** Below this zoom names cannot be read: nodes are drawn as status blocks, without text. */
const LOD_ZOOM = 0.45;
/** Graph units drawn beyond the edges of the pane, so panning shows no blank border. */
const MARGIN = 300;

type Box = [number, number, number, number];

export function Dag({ layout, jobs, fans, selected, onOpen, onClose, tick }: Props): JSX.Element {
  const pane = useRef<HTMLDivElement>(null);
  const stage = useRef<SVGGElement>(null);
  const view = useRef<View>({ x: 0, y: 0, k: 1 });
  const [focused, setFocused] = useState<string | null>(selected ?? layout.nodes[0]?.name ?? null);
  const [zoomText, setZoomText] = useState('100%');
  // What is on the screen (graph units) and whether names are readable: only that is drawn.
  const [shown, setShown] = useState<{ box: Box; lod: boolean }>({ box: [0, 0, 0, 0], lod: false });
  const frame = useRef(0);
  const index = useMemo(() => new Map(layout.nodes.map((n, i) => [n.name, { ...n, i }])), [layout]);

  const apply = useCallback(() => {
    const v = view.current;
    stage.current?.setAttribute('transform', `translate(${v.x},${v.y}) scale(${v.k})`);
    if (frame.current) return;
    frame.current = requestAnimationFrame(() => {
      frame.current = 0;
      const el = pane.current;
      if (!el) return;
      const { x, y, k } = view.current;
      const { width, height } = el.getBoundingClientRect();
      const box: Box = [-x / k - MARGIN, -y / k - MARGIN, (width - x) / k + MARGIN, (height - y) / k + MARGIN];
      setShown({ box, lod: k < LOD_ZOOM });
      setZoomText(`${Math.round(k * 100)}%`);
    });
  }, []);
  useEffect(() => () => cancelAnimationFrame(frame.current), []);

  const fit = useCallback(() => {
    const el = pane.current;
    if (!el) return;
    const { width, height } = el.getBoundingClientRect();
    const k = Math.min(1, width / Math.max(1, layout.width), height / Math.max(1, layout.height));
    view.current = {
      k,
      x: (width - layout.width * k) / 2,
      y: Math.max(0, (height - layout.height * k) / 2),
    };
    apply();
  }, [layout, apply]);

  // A graph that fits readably is shown whole; a bigger one from its start (its first jobs,
  // readable), and Fit (0) shows it whole. Once: ELK's layout replacing a sketch keeps the view.
  const placed = useRef(false);
  useEffect(() => {
    const el = pane.current;
    if (!el) return;
    if (placed.current) {
      apply();
      return;
    }
    placed.current = true;
    const { width, height } = el.getBoundingClientRect();
    const whole = Math.min(width / Math.max(1, layout.width), height / Math.max(1, layout.height));
    if (whole >= LOD_ZOOM) fit();
    else {
      view.current = { k: 0.8, x: 8, y: 8 };
      apply();
    }
  }, [layout, fit, apply]);

  const zoom = useCallback(
    (factor: number, cx?: number, cy?: number) => {
      const el = pane.current;
      if (!el) return;
      const rect = el.getBoundingClientRect();
      const px = cx ?? rect.width / 2;
      const py = cy ?? rect.height / 2;
      const v = view.current;
      const k = Math.min(2.5, Math.max(0.05, v.k * factor));
      view.current = { k, x: px - ((px - v.x) * k) / v.k, y: py - ((py - v.y) * k) / v.k };
      apply();
    },
    [apply],
  );

  const reveal = useCallback(
    (name: string) => {
      const el = pane.current;
      const node = index.get(name);
      if (!el || !node) return;
      const { width, height } = el.getBoundingClientRect();
      const v = view.current;
      if (v.k < 0.5) v.k = 0.8;
      const left = node.x * v.k + v.x;
      const top = node.y * v.k + v.y;
      const right = left + NODE_W * v.k;
      const bottom = top + NODE_H * v.k;
      if (left < 8 || right > width - 8) v.x = width / 2 - (node.x + NODE_W / 2) * v.k;
      if (top < 8 || bottom > height - 8) v.y = height / 2 - (node.y + NODE_H / 2) * v.k;
      apply();
    },
    [index, apply],
  );

  useEffect(() => {
    if (selected) {
      setFocused(selected);
      reveal(selected);
    }
  }, [selected, reveal]);

  // Wheel zoom must not scroll the page: a non-passive listener.
  useEffect(() => {
    const el = pane.current;
    if (!el) return;
    const onWheel = (event: WheelEvent) => {
      event.preventDefault();
      const rect = el.getBoundingClientRect();
      zoom(Math.exp(-event.deltaY * 0.0015), event.clientX - rect.left, event.clientY - rect.top);
    };
    el.addEventListener('wheel', onWheel, { passive: false });
    return () => el.removeEventListener('wheel', onWheel);
  }, [zoom]);

  const drag = useRef<{ x: number; y: number; moved: boolean } | null>(null);
  const onPointerDown = (event: PointerEvent) => {
    if (event.button !== 0) return;
    drag.current = { x: event.clientX, y: event.clientY, moved: false };
  };
  const onPointerMove = (event: PointerEvent) => {
    const d = drag.current;
    if (!d || !(event.buttons & 1)) return;
    const dx = event.clientX - d.x;
    const dy = event.clientY - d.y;
    if (!d.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    if (!d.moved) (event.currentTarget as Element).setPointerCapture(event.pointerId);
    d.moved = true;
    d.x = event.clientX;
    d.y = event.clientY;
    view.current.x += dx;
    view.current.y += dy;
    apply();
  };
  const onPointerUp = (event: PointerEvent) => {
    const d = drag.current;
    drag.current = null;
    if (d?.moved) return;
    const target = (event.target as Element).closest?.('[data-job]');
    const name = target?.getAttribute('data-job');
    if (name) {
      setFocused(name);
      onOpen(name);
    }
  };

  const move = (dx: number, dy: number) => {
    const from = focused ? index.get(focused) : undefined;
    if (!from) {
      setFocused(layout.nodes[0]?.name ?? null);
      return;
    }
    const next = nearest(layout.nodes, from, dx, dy);
    if (next) {
      setFocused(next.name);
      reveal(next.name);
    }
  };

  const onKeyDown = (event: KeyboardEvent) => {
    const keys: Record<string, () => void> = {
      ArrowRight: () => move(1, 0),
      ArrowLeft: () => move(-1, 0),
      ArrowUp: () => move(0, -1),
      ArrowDown: () => move(0, 1),
      Enter: () => focused && onOpen(focused),
      ' ': () => focused && onOpen(focused),
      Escape: onClose,
      '+': () => zoom(1.25),
      '=': () => zoom(1.25),
      '-': () => zoom(0.8),
      '0': fit,
    };
    const action = keys[event.key];
    if (action && !event.ctrlKey && !event.metaKey && !event.altKey) {
      event.preventDefault();
      action();
    }
  };

  const [x0, y0, x1, y1] = shown.box;
  const focusedJob = focused ? jobs.get(focused) : undefined;
  const drawn = layout.nodes.filter(
    (n) => n.x + NODE_W >= x0 && n.x <= x1 && n.y + NODE_H >= y0 && n.y <= y1,
  );
  const near = selected;
  const edges = useMemo(
    () =>
      layout.edges
        .filter((e) => e.box[2] >= x0 && e.box[0] <= x1 && e.box[3] >= y0 && e.box[1] <= y1)
        .map((e) => (
        <path
          key={`${e.from}>${e.to}`}
          class={`edge${e.any ? ' any' : ''}${near === e.from || near === e.to ? ' hl' : ''}`}
          d={e.d}
          marker-end={e.any ? 'url(#arrow-any)' : 'url(#arrow)'}
        />
      )),
    [layout, near, x0, y0, x1, y1],
  );

  return (
    <div class="dag-wrap">
      <div
        class="dag"
        ref={pane}
        tabIndex={0}
        role="application"
        aria-roledescription="workflow graph"
        aria-label={`Graph of ${layout.nodes.length} jobs. Arrow keys move between jobs, Enter opens one, plus and minus zoom, 0 fits.`}
        aria-activedescendant={focused ? `node-${index.get(focused)?.i}` : undefined}
        onKeyDown={onKeyDown}
        onPointerDown={onPointerDown}
        onPointerMove={onPointerMove}
        onPointerUp={onPointerUp}
      >
        <svg class={`dag-svg${shown.lod ? ' lod' : ''}${layout.sketch ? ' sketch' : ''}`} width="100%" height="100%" data-drawn-nodes={drawn.length}>
          <defs>
            <marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">
              <path d="M0,0L10,5L0,10Z" class="arrow" />
            </marker>
            <marker id="arrow-any" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="8" markerHeight="8" orient="auto-start-reverse">
              <path d="M1,1L9,5L1,9Z" class="arrow-any" />
            </marker>
          </defs>
          <g ref={stage}>
            <g class="edges">{edges}</g>
            <g class="nodes">
              {drawn.map((node) => {
                const job = jobs.get(node.name);
                return job ? (
                  <Node
                    key={node.name}
                    id={`node-${index.get(node.name)?.i}`}
                    node={node}
                    job={job}
                    fan={fans.get(node.name)}
                    selected={node.name === selected}
                    focused={node.name === focused}
                    tick={job.status === 'running' ? tick : 0}
                  />
                ) : null;
              })}
            </g>
          </g>
        </svg>
      </div>
      <div class="dag-tools" role="toolbar" aria-label="Graph view">
        <button type="button" onClick={() => zoom(1.25)} aria-label="Zoom in" title="Zoom in (+)">+</button>
        <button type="button" onClick={() => zoom(0.8)} aria-label="Zoom out" title="Zoom out (-)">−</button>
        <button type="button" onClick={fit} aria-label="Fit the whole graph" title="Fit the whole graph (0)">Fit</button>
        <span class="zoom" aria-live="off">{zoomText}</span>
      </div>
      <div class="dag-legend" aria-hidden="true">
        <svg width="34" height="10"><path class="edge" d="M1,5H26" marker-end="url(#arrow)" /></svg> needs
        <svg width="34" height="10"><path class="edge any" d="M1,5H26" marker-end="url(#arrow-any)" /></svg> needs any
      </div>
      <p class="sr-only" aria-live="polite">
        {focusedJob && focused ? `${focused}: ${focusedJob.status}` : ''}
      </p>
    </div>
  );
}

interface NodeProps {
  id: string;
  node: Placed;
  job: JobLive;
  fan?: Fan;
  selected: boolean;
  focused: boolean;
  tick: number;
}

const Node = memo(function Node({ id, node, job, fan, selected, focused }: NodeProps) {
  const name = node.name.length > MAX_NAME ? node.name.slice(0, MAX_NAME - 1) + '…' : node.name;
  const took = between(job.started_at, job.status === 'running' ? null : job.ended_at);
  const detail = fan
    ? [job.status, `${ended(fan)}/${fan.instances.length} done`, fan.counts.failed ? `${fan.counts.failed} failed` : '']
        .filter(Boolean)
        .join(' · ')
    : [job.status, job.attempts ? `attempt ${job.attempts}` : '', took].filter(Boolean).join(' · ');
  const spoken = fan ? `${job.status}; ${fan.instances.length} instances: ${countWords(fan)}` : detail;
  return (
    <g
      id={id}
      class={`node st-${cls(job.status)}${fan ? ' fanned' : ''}${selected ? ' selected' : ''}${focused ? ' focused' : ''}`}
      transform={`translate(${node.x},${node.y})`}
      data-job={node.name}
      data-status={job.status}
      data-instances={fan?.instances.length}
      role="button"
      aria-label={`job ${node.name}: ${spoken}`}
    >
      <title>{`${node.name}\n${spoken}${job.error ? `\n${job.error}` : ''}`}</title>
      {fan && fan.instances.length > 1 && (
        <>
          <rect class="box stack" x="6" y="-6" width={NODE_W} height={NODE_H} rx="6" />
          <rect class="box stack" x="3" y="-3" width={NODE_W} height={NODE_H} rx="6" />
        </>
      )}
      <rect class="box" width={NODE_W} height={NODE_H} rx="6" />
      <rect class="stripe" width="5" height={NODE_H} rx="2" />
      <g transform="translate(13,9)" class="node-icon">
        <path d={iconPath(job.status)} />
      </g>
      <text class="node-name" x="36" y="22" {...fit(name, 7.9)}>{name}</text>
      <text class="node-detail" x="36" y={fan ? 38 : 41} {...fit(detail, 6.2)}>{detail}</text>
      {fan && <FanBar fan={fan} />}
    </g>
  );
});

/** The instances' statuses as one bar under the text: a segment per status, as wide as its
 * share (words in the node's label and title, the panel's list; colour is not the only cue). */
function FanBar({ fan }: { fan: Fan }): JSX.Element {
  const total = Math.max(1, fan.instances.length);
  let x = 36;
  const segments: JSX.Element[] = [];
  for (const status of STATUSES) {
    const n = fan.counts[status] ?? 0;
    if (!n) continue;
    const width = (BAR_W * n) / total;
    segments.push(<rect class={`seg st-${status}`} data-status={status} data-count={n} x={x} y={NODE_H - 11} width={width} height="6" />);
    x += width;
  }
  return (
    <g class="fan-bar" aria-hidden="true">
      <rect class="track" x="36" y={NODE_H - 11} width={BAR_W} height="6" rx="1" />
      {segments}
    </g>
  );
}

const BAR_W = NODE_W - 36 - 10;

function countWords(fan: Fan): string {
  return STATUSES.filter((s) => fan.counts[s])
    .map((s) => `${fan.counts[s]} ${s}`)
    .join(', ');
}

/** Room for text right of the icon; a longer text is squeezed into it rather than overflow. */
const TEXT_ROOM = NODE_W - 36 - 8;

function fit(text: string, charWidth: number): Record<string, string> {
  return text.length * charWidth > TEXT_ROOM
    ? { textLength: String(TEXT_ROOM), lengthAdjust: 'spacingAndGlyphs' }
    : {};
}

function nearest(nodes: Placed[], from: Placed, dx: number, dy: number): Placed | null {
  let best: Placed | null = null;
  let bestScore = Infinity;
  for (const node of nodes) {
    if (node === from || node.name === from.name) continue;
    const ox = node.x - from.x;
    const oy = node.y - from.y;
    const along = ox * dx + oy * dy; // distance in the asked direction
    if (along <= 0) continue;
    const across = Math.abs(ox * dy) + Math.abs(oy * dx);
    const score = along + across * 3;
    if (score < bestScore) {
      bestScore = score;
      best = node;
    }
  }
  return best;
}
