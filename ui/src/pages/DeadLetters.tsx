// Commands and events that could not be processed, and why (admin role when tokens are on).
import type { JSX } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import type { DeadLetter } from '../api';
import { ApiError, get } from '../api';
import { stamp } from '../format';

export function DeadLettersPage(): JSX.Element {
  const [letters, setLetters] = useState<DeadLetter[] | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [version, setVersion] = useState(0);
  useEffect(() => {
    get<{ dead_letters: DeadLetter[] }>('/api/dead-letters?limit=200')
      .then((body) => {
        setLetters(body.dead_letters.slice().reverse());
        setProblem(null);
      })
      .catch((e) =>
        setProblem(
          e instanceof ApiError && e.status === 403
            ? 'Dead letters need an admin token.'
            : e instanceof Error ? e.message : String(e),
        ),
      );
  }, [version]);
  return (
    <main id="main" class="page">
      <div class="page-head">
        <h1>Dead letters</h1>
        <button type="button" onClick={() => setVersion((v) => v + 1)}>Refresh</button>
      </div>
      <p class="muted">Input the engine, the projector or a worker could not process, newest first. Nothing else was lost.</p>
      {problem && <p class="error" role="alert">{problem}</p>}
      {letters === null ? (
        !problem && <p role="status">Loading…</p>
      ) : letters.length === 0 ? (
        <p class="empty">✓ None.</p>
      ) : (
        <table class="dead-letters">
          <thead>
            <tr><th scope="col">When</th><th scope="col">Source</th><th scope="col">Subject</th><th scope="col">Reason</th><th scope="col">Payload</th></tr>
          </thead>
          <tbody>
            {letters.map((l) => (
              <tr>
                <td class="small">{stamp(l.at)}</td>
                <td>{l.source}</td>
                <td class="mono small">{l.subject}{l.seq !== null ? ` #${l.seq}` : ''}</td>
                <td>{l.reason}</td>
                <td>
                  <details>
                    <summary>{l.payload_size} bytes</summary>
                    <pre class="payload">{l.payload}</pre>
                  </details>
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </main>
  );
}
