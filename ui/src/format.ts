// Times and durations as people read them.

export function duration(seconds: number): string {
  if (!isFinite(seconds) || seconds < 0) return '';
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 1 : 0)} s`;
  const m = Math.floor(seconds / 60);
  if (m < 60) return `${m} min ${Math.floor(seconds % 60)} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

export function between(start: string | null, end: string | null, now = Date.now()): string {
  if (!start) return '';
  const from = Date.parse(start);
  const to = end ? Date.parse(end) : now;
  return duration((to - from) / 1000);
}

export function ago(time: string | null, now = Date.now()): string {
  if (!time) return '';
  const seconds = (now - Date.parse(time)) / 1000;
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function clock(time: string | null): string {
  if (!time) return '';
  const d = new Date(time);
  return d.toLocaleTimeString(undefined, { hour12: false }) + '.' + String(d.getMilliseconds()).padStart(3, '0');
}

export function stamp(time: string | null): string {
  if (!time) return '';
  return new Date(time).toLocaleString(undefined, { hour12: false });
}

export function compact(value: unknown, limit = 160): string {
  const text = typeof value === 'string' ? value : JSON.stringify(value);
  return text.length <= limit ? text : text.slice(0, limit - 1) + '…';
}
