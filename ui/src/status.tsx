// Status shown as an icon and a word, never colour alone.
import type { JSX } from 'preact';

export const STATUSES = [
  'pending',
  'queued',
  'waiting',
  'parked',
  'running',
  'retrying',
  'succeeded',
  'failed',
  'skipped',
  'cancelled',
] as const;

export const TERMINAL = new Set(['succeeded', 'failed', 'skipped', 'cancelled']);

/** SVG path data on a 16x16 box, drawn with stroke (no fill). */
const ICON_PATHS: Record<string, string> = {
  pending: 'M8 2.5a5.5 5.5 0 1 0 0.01 0Z',
  queued: 'M8 2.5a5.5 5.5 0 1 0 0.01 0ZM8 5v3.5l2.5 1.5',
  running: 'M5.5 3.5v9l7-4.5Z',
  // parked by its handler (InProgress): looked at again later, on no worker: a pause sign
  parked: 'M8 2.5a5.5 5.5 0 1 0 0.01 0ZM6.5 5.5v5M9.5 5.5v5',
  // waiting for the outside world (a signal, a webhook): an hourglass
  waiting: 'M4.5 2.5h7M4.5 13.5h7M5 2.5c0 3.5 6 3.5 6 5.5s-6 2-6 5.5M11 2.5c0 3.5-6 3.5-6 5.5s6 2 6 5.5',
  retrying: 'M12.5 8a4.5 4.5 0 1 1-1.4-3.3M12 2.5v2.8H9.2',
  succeeded: 'M3 8.5l3.2 3.2L13 4.5',
  failed: 'M4 4l8 8M12 4l-8 8',
  skipped: 'M3 4.5l5 3.5-5 3.5ZM9 4.5l5 3.5-5 3.5Z',
  cancelled: 'M8 2.5a5.5 5.5 0 1 0 0.01 0ZM4.2 4.2l7.6 7.6',
  // a claim whose lease ran out (another claim took the attempt over)
  lost: 'M12.5 8a4.5 4.5 0 1 1-1.4-3.3M12 2.5v2.8H9.2',
  // workflow-only words
  'cancel requested': 'M8 2.5a5.5 5.5 0 1 0 0.01 0ZM4.2 4.2l7.6 7.6',
  paused: 'M5.5 3.5v9M10.5 3.5v9',
};

export function iconPath(status: string): string {
  return ICON_PATHS[status] ?? ICON_PATHS.pending;
}

export function StatusIcon({ status, size = 14 }: { status: string; size?: number }): JSX.Element {
  return (
    <svg class={`icon st-${cls(status)}`} width={size} height={size} viewBox="0 0 16 16" aria-hidden="true">
      <path d={iconPath(status)} />
    </svg>
  );
}

/** The status as a badge: icon and word. */
export function Status({ status }: { status: string }): JSX.Element {
  return (
    <span class={`status st-${cls(status)}`} data-status={status}>
      <StatusIcon status={status} />
      <span class="status-word">{status}</span>
    </span>
  );
}

export const cls = (status: string) => status.replace(/\s+/g, '-');
