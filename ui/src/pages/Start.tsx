// Start a workflow from YAML, pasted or uploaded, with inputs. An invalid file comes back with
// every problem located (body:<line> ...): each is listed and its line marked in the editor.
import type { JSX } from 'preact';
import { useRef, useState } from 'preact/hooks';
import { ApiError, request } from '../api';
import { navigate, workflowHref } from '../router';

const EXAMPLE = `name: hello
inputs:
  who: {default: world}
jobs:
  greet:
    run: echo "hello \${{ inputs.who }}"
  shout:
    needs: [greet]
    run: echo "HELLO \${{ inputs.who }}" >&2
`;

interface Problem {
  line: number | null;
  text: string;
}

export function StartPage(): JSX.Element {
  const [yaml, setYaml] = useState(EXAMPLE);
  const [inputs, setInputs] = useState('');
  const [key, setKey] = useState('');
  const [problems, setProblems] = useState<Problem[]>([]);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const editor = useRef<HTMLTextAreaElement>(null);
  const gutter = useRef<HTMLDivElement>(null);
  const lines = yaml.split('\n').length;
  const marked = new Set(problems.map((p) => p.line).filter((l): l is number => l !== null));

  const upload = async (event: Event) => {
    const file = (event.currentTarget as HTMLInputElement).files?.[0];
    if (file) {
      setYaml(await file.text());
      setProblems([]);
      setError(null);
    }
  };

  const submit = async (event: Event) => {
    event.preventDefault();
    setBusy(true);
    setProblems([]);
    setError(null);
    const params = new URLSearchParams();
    for (const raw of inputs.split('\n')) {
      const line = raw.trim();
      if (line) params.append('input', line);
    }
    if (key.trim()) params.set('idempotency_key', key.trim());
    try {
      const started = await request<{ workflow_id: string }>(
        'POST',
        `/api/workflows${params.size ? `?${params}` : ''}`,
        yaml,
        'application/yaml',
      );
      navigate(workflowHref(started.workflow_id));
    } catch (e) {
      if (e instanceof ApiError && e.problems.length) {
        setProblems(e.problems.map(locate));
        setError(e.code === 'invalid_workflow' ? 'The workflow is invalid:' : e.message);
      } else {
        setError(e instanceof Error ? e.message : String(e));
      }
    } finally {
      setBusy(false);
    }
  };

  const goTo = (line: number) => {
    const el = editor.current;
    if (!el) return;
    const offset = yaml.split('\n').slice(0, line - 1).join('\n').length + (line > 1 ? 1 : 0);
    el.focus();
    el.setSelectionRange(offset, offset + (yaml.split('\n')[line - 1]?.length ?? 0));
    const lineHeight = parseFloat(getComputedStyle(el).lineHeight) || 18;
    el.scrollTop = Math.max(0, (line - 3) * lineHeight);
  };

  return (
    <main id="main" class="page start-page">
      <h1>Start a workflow</h1>
      <form onSubmit={submit} class="start-form">
        <div class="field">
          <div class="label-row">
            <label for="yaml">Workflow (YAML)</label>
            <label class="file">
              Upload a file… <input type="file" accept=".yaml,.yml,text/yaml" onChange={upload} />
            </label>
          </div>
          <div class="editor">
            <div class="gutter" ref={gutter} aria-hidden="true">
              {Array.from({ length: lines }, (_, i) => (
                <div class={marked.has(i + 1) ? 'bad' : ''}>{marked.has(i + 1) ? `✗ ${i + 1}` : i + 1}</div>
              ))}
            </div>
            <textarea
              id="yaml"
              ref={editor}
              value={yaml}
              spellcheck={false}
              rows={18}
              aria-invalid={problems.length > 0}
              aria-describedby={problems.length ? 'problems' : undefined}
              onInput={(e) => setYaml(e.currentTarget.value)}
              onScroll={(e) => {
                if (gutter.current) gutter.current.scrollTop = e.currentTarget.scrollTop;
              }}
            />
          </div>
        </div>
        {(error || problems.length > 0) && (
          <div class="problems" id="problems" role="alert">
            <p class="error">{error}</p>
            <ul>
              {problems.map((p) => (
                <li>
                  {p.line !== null ? (
                    <button type="button" class="link" onClick={() => goTo(p.line!)}>
                      line {p.line}
                    </button>
                  ) : null}{' '}
                  {p.text}
                </li>
              ))}
            </ul>
          </div>
        )}
        <div class="field">
          <label for="inputs">Inputs, one <code>key=value</code> a line (values that read as JSON are typed)</label>
          <textarea id="inputs" rows={3} value={inputs} placeholder="who=you" spellcheck={false} onInput={(e) => setInputs(e.currentTarget.value)} />
        </div>
        <div class="field">
          <label for="key">Idempotency key (optional: at most one workflow per key)</label>
          <input id="key" value={key} onInput={(e) => setKey(e.currentTarget.value)} />
        </div>
        <button type="submit" class="primary" disabled={busy}>{busy ? 'Starting…' : 'Start'}</button>
      </form>
    </main>
  );
}

/** ``body:4 jobs.a.needs[0]: unknown job 'zz'`` is line 4 of what was sent. */
function locate(problem: string): Problem {
  const match = /^body:(\d+)\s+(.*)$/s.exec(problem);
  return match ? { line: Number(match[1]), text: match[2] } : { line: null, text: problem.replace(/^body:\s*/, '') };
}
