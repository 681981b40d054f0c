// The DAG laid out left to right by ELK's layered (Sugiyama) algorithm, in a Web Worker so the
// page stays responsive while it runs. A workflow's structure never changes: laid out once.
import ELK from 'elkjs/lib/elk-api.js';
import type { ElkExtendedEdge, ElkNode } from 'elkjs/lib/elk-api';
import workerUrl from 'elkjs/lib/elk-worker.min.js?url';

export const NODE_W = 212;
export const NODE_H = 54;

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
}

export interface Structure {
  name: string;
  needs: string[];
  needs_any: string[];
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
  const edges: { from: string; to: string; any: boolean }[] = [];
  for (const job of jobs) {
    for (const up of job.needs) edges.push({ from: up, to: job.name, any: false });
    for (const up of job.needs_any)
      if (!job.needs.includes(up)) edges.push({ from: up, to: job.name, any: true });
  }
  // Big graphs: the fast end of ELK's options, measured on 1,000-job shapes (stages, fan-out,
  // chains, random): jobs keep the order they are written in within a layer (no crossing
  // minimisation: a third of the time), layers by longest path, polyline edges, which also keep
  // the layers narrow. Small graphs get ELK's full effort.
  const big = jobs.length > 300;
  const fast: Record<string, string> = big
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
      'elk.spacing.nodeNode': '16',
      'elk.layered.spacing.nodeNodeBetweenLayers': '56',
      'elk.layered.spacing.edgeNodeBetweenLayers': '16',
      'elk.padding': '[top=24,left=24,bottom=24,right=24]',
      ...fast,
    },
    children: jobs.map((job) => ({ id: job.name, width: NODE_W, height: NODE_H })),
    edges: edges.map(
      (edge, i): ElkExtendedEdge => ({ id: `e${i}`, sources: [edge.from], targets: [edge.to] }),
    ),
  };
  const result = await engine.layout(graph);
  const nodes = (result.children ?? []).map((n) => ({ name: n.id, x: n.x ?? 0, y: n.y ?? 0 }));
  const paths = (result.edges ?? []).map((edge, i): Edge => {
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
    return { ...edges[i], d: parts.join(''), box };
  });
  return {
    nodes,
    edges: paths,
    width: result.width ?? 0,
    height: result.height ?? 0,
    millis: performance.now() - started,
  };
}
