// Server-sent events over fetch (EventSource cannot send the bearer token), reconnecting with
// Last-Event-ID after a drop. docs/http.md, "Server-sent events".
import { errorOf, headers } from './api';

export interface SseMessage {
  event: string;
  data: string;
  id: string | null;
}

export interface SseOptions {
  lastEventId?: string | null;
  /** Resume with Last-Event-ID after a drop (the events stream); else start over. */
  resumable?: boolean;
  onMessage: (message: SseMessage) => void;
  onState?: (state: 'open' | 'retrying' | 'closed', detail?: string) => void;
}

export interface SseStream {
  close(): void;
}

export function openStream(url: string, options: SseOptions): SseStream {
  const controller = new AbortController();
  let closed = false;
  let lastId = options.lastEventId ?? null;
  let failures = 0;

  async function once(): Promise<boolean> {
    const extra: Record<string, string> = { Accept: 'text/event-stream' };
    if (lastId !== null) extra['Last-Event-ID'] = lastId;
    const response = await fetch(url, { headers: headers(extra), signal: controller.signal });
    if (!response.ok || response.body === null) {
      const error = await errorOf(response);
      options.onState?.('retrying', error.message);
      return response.status >= 500; // 4xx: asking again will not help
    }
    failures = 0;
    options.onState?.('open');
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let ended = false;
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += value;
      let cut: number;
      while ((cut = boundary(buffer)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^(\r\n|\n|\r){2}/, '');
        const message = parse(block);
        if (message === null) continue;
        if (message.id !== null) lastId = message.id;
        if (message.event === 'end') ended = true;
        options.onMessage(message);
      }
    }
    return !ended;
  }

  (async () => {
    while (!closed) {
      let again: boolean;
      try {
        again = await once();
      } catch (error) {
        if (closed) return;
        options.onState?.('retrying', String(error));
        again = true;
      }
      if (!again || closed) break;
      if (!options.resumable) lastId = null;
      failures += 1;
      await new Promise((r) => setTimeout(r, Math.min(10_000, 500 * 2 ** Math.min(failures, 5))));
    }
    if (!closed) options.onState?.('closed');
  })();

  return {
    close() {
      closed = true;
      controller.abort();
    },
  };
}

function boundary(buffer: string): number {
  const match = /(\r\n|\n|\r){2}/.exec(buffer);
  return match ? match.index : -1;
}

function parse(block: string): SseMessage | null {
  let event = 'message';
  let id: string | null = null;
  const data: string[] = [];
  for (const line of block.split(/\r\n|\n|\r/)) {
    if (line === '' || line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') data.push(value);
    else if (field === 'event') event = value;
    else if (field === 'id') id = value;
  }
  return data.length ? { event, data: data.join('\n'), id } : null;
}
