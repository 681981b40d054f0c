// The DAG laid out left to right by ELK's layered (Sugiyama) algorithm, in a Web Worker so the
// page stays responsive while it runs. A workflow's structure never changes: laid out once.
import ELK from 'elkjs/lib/elk-api.js';
import type { ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api';
import workerUrl from 'elkjs/lib/elk-worker.min.js?url';

export const NODE_W = 212;
export const NODE_H = 54;
/** Above this many jobs ELK runs with its fastest options, and a sketch is drawn meanwhile. */
export const BIG = 300;
const GAP_X = 56;
const GAP_Y = 16;
const PAD = 24;

export interface Placed {
  name: string;
  x: number;
  y: number;
}

export interface Edge {
  from: string;
  to: string;
  /** needs_any: one of these is enough (drawn dashed). */
  any: boolean;
  d: string;
  /** Bounding box, to draw only what is on the screen. */
  box: [number, number, number, number];
}

export interface Layout {
  nodes: Placed[];
  edges: Edge[];
  width: number;
  height: number;
  millis: number;
  /** True for `sketch`'s quick placement, until ELK's layout replaces it. */
  sketch?: boolean;
}

export interface Structure {
  name: string;
  needs: string[];
  needs_any: string[];
  /** needs_at_least: count of these are enough (drawn dashed, as needs_any). */
  needs_at_least?: { count: number; of: string[] } | null;
}

type Link = { from: string; to: string; any: boolean };

function linksOf(jobs: Structure[]): Link[] {
  const links: Link[] = [];
  for (const job of jobs) {
    for (const up of job.needs) links.push({ from: up, to: job.name, any: false });
    for (const up of job.needs_any)
      if (!job.needs.includes(up)) links.push({ from: up, to: job.name, any: true });
    for (const up of job.needs_at_least?.of ?? [])
      if (!job.needs.includes(up) && !job.needs_any.includes(up)) links.push({ from: up, to: job.name, any: true });
  }
  return links;
}

let elk: InstanceType<typeof ELK> | null = null;
/** When the layout worker had loaded ELK (performance.now()), for the figures. */
export let elkReadyAt = 0;

/** Start the layout worker (loading and compiling ELK takes a moment) before it is needed. */
export function warmUp(): InstanceType<typeof ELK> {
  if (elk) return elk;
  elk = new ELK({ workerUrl });
  void elk
    .layout({ id: 'warm', children: [{ id: 'a', width: 10, height: 10 }] })
    .then(() => (elkReadyAt = performance.now()))
    .catch(() => {});
  return elk;
}

export async function layout(jobs: Structure[]): Promise<Layout> {
  const started = performance.now();
  const engine = warmUp();
  const links = linksOf(jobs);
  // Big graphs: the fast end of ELK's options, measured on 1,000-job shapes (stages, fan-out,
  // chains, random): jobs keep the order they are written in within a layer (no crossing
  // minimisation: a third of the time), layers by longest path to the jobs that end the graph
  // (as `sketch` draws them; from the jobs that start took twice as long), polyline edges, which
  // also keep the layers narrow. Small graphs get ELK's full effort.
  const fast: Record<string, string> =
    jobs.length > BIG
      ? {
          'elk.layered.crossingMinimization.strategy': 'NONE',
          'elk.layered.layering.strategy': 'LONGEST_PATH',
          'elk.edgeRouting': 'POLYLINE',
          'elk.layered.nodePlacement.strategy': 'LINEAR_SEGMENTS',
        }
      : { 'elk.layered.considerModelOrder.strategy': 'NODES_AND_EDGES' };
  const graph: ElkNode = {
    id: 'root',
    layoutOptions: {
      'elk.algorithm': 'layered',
      'elk.direction': 'RIGHT',
      'elk.spacing.nodeNode': String(GAP_Y),
      'elk.layered.spacing.nodeNodeBetweenLayers': String(GAP_X),
      'elk.layered.spacing.edgeNodeBetweenLayers': '16',
      'elk.padding': `[top=${PAD},left=${PAD},bottom=${PAD},right=${PAD}]`,
      ...fast,
    },
    children: jobs.map((job) => ({ id: job.name, width: NODE_W, height: NODE_H })),
    edges: links.map(
      (link, i): ElkExtendedEdge => ({ id: `e${i}`, sources: [link.from], targets: [link.to] }),
    ),
  };
  const result = await engine.layout(graph);
  const nodes = (result.children ?? []).map((n) => ({ name: n.id, x: n.x ?? 0, y: n.y ?? 0 }));
  const edges = (result.edges ?? []).map((edge, i): Edge => {
    const parts: string[] = [];
    const box: Edge['box'] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const section of edge.sections ?? []) {
      const points = [section.startPoint, ...(section.bendPoints ?? []), section.endPoint];
      for (const p of points) {
        box[0] = Math.min(box[0], p.x);
        box[1] = Math.min(box[1], p.y);
        box[2] = Math.max(box[2], p.x);
        box[3] = Math.max(box[3], p.y);
      }
      parts.push('M' + points.map((p) => `${Math.round(p.x)},${Math.round(p.y)}`).join('L'));
    }
    return { ...links[i], d: parts.join(''), box };
  });
  return {
    nodes,
    edges,
    width: result.width ?? 0,
    height: result.height ?? 0,
    millis: performance.now() - started,
  };
}

/**
 * What ELK's fast options place, without its node placement and edge routing: layers by longest
 * path to the jobs that end the graph (each job as late as its dependents allow), jobs in the
 * order given (topological) within a layer, straight edges. Drawn at once for a big graph while
 * ELK works (a second or more), then replaced by ELK's layout.
 */
export function sketch(jobs: Structure[]): Layout {
  const started = performance.now();
  const links = linksOf(jobs);
  const below = new Map<string, string[]>();
  for (const link of links) below.set(link.from, [...(below.get(link.from) ?? []), link.to]);
  const toEnd = new Map<string, number>();
  for (let i = jobs.length - 1; i >= 0; i--) {
    let height = 0;
    for (const down of below.get(jobs[i].name) ?? [])
      height = Math.max(height, (toEnd.get(down) ?? 0) + 1);
    toEnd.set(jobs[i].name, height);
  }
  const last = Math.max(0, ...toEnd.values());
  const rows: number[] = [];
  const nodes: Placed[] = jobs.map((job) => {
    const layer = last - (toEnd.get(job.name) ?? 0);
    const row = rows[layer] ?? 0;
    rows[layer] = row + 1;
    return { name: job.name, x: PAD + layer * (NODE_W + GAP_X), y: PAD + row * (NODE_H + GAP_Y) };
  });
  const at = new Map(nodes.map((n) => [n.name, n]));
  const edges = links.map((link): Edge => {
    const a = at.get(link.from)!;
    const b = at.get(link.to)!;
    const [x1, y1, x2, y2] = [a.x + NODE_W, a.y + NODE_H / 2, b.x, b.y + NODE_H / 2];
    return { ...link, d: `M${x1},${y1}L${x2},${y2}`, box: [x1, Math.min(y1, y2), x2, Math.max(y1, y2)] };
  });
  return {
    nodes,
    edges,
    width: PAD * 2 + rows.length * (NODE_W + GAP_X) - GAP_X,
    height: PAD * 2 + Math.max(0, ...rows) * (NODE_H + GAP_Y) - GAP_Y,
    millis: performance.now() - started,
    sketch: true,
  };
}
