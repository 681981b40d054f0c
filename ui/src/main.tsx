// The shell: navigation, the token prompt (when the gateway has tokens) and the pages.
import type { JSX } from 'preact';
import { Fragment, render } from 'preact';
import { useEffect, useState } from 'preact/hooks';
import { isTokenWanted, onTokenChange, setToken, token, urlNamespace } from './api';
import { DeadLettersPage } from './pages/DeadLetters';
import { StartPage } from './pages/Start';
import { WorkersPage } from './pages/Workers';
import { WorkflowPage } from './pages/Workflow';
import { WorkflowsPage } from './pages/Workflows';
import { NamespacePicker } from './Namespace';
import { route, useLocation, withNamespace } from './router';
import './styles.css';

function App(): JSX.Element {
  const { path, query } = useLocation();
  const current = route(path);
  const [, setTokenTick] = useState(0);
  useEffect(() => onTokenChange(() => setTokenTick((n) => n + 1)), []);
  useEffect(() => {
    const titles: Record<string, string> = {
      workflows: 'Workflows',
      workers: 'Workers',
      'dead-letters': 'Dead letters',
      start: 'Start a workflow',
      missing: 'Not found',
    };
    document.title = `${current.page === 'workflow' ? current.id : titles[current.page]} · jetwork`;
  }, [path]);

  const nav = (href: string, label: string, active: boolean) => (
    <a href={withNamespace(href)} aria-current={active ? 'page' : undefined}>{label}</a>
  );
  let page: JSX.Element;
  switch (current.page) {
    case 'workflows':
      page = <WorkflowsPage query={query} />;
      break;
    case 'workflow':
      // Keyed by id: another workflow (a restart's new run) is a page of its own, not a stale one.
      page = <WorkflowPage key={current.id} id={current.id} job={current.job} />;
      break;
    case 'workers':
      page = <WorkersPage />;
      break;
    case 'dead-letters':
      page = <DeadLettersPage />;
      break;
    case 'start':
      page = <StartPage />;
      break;
    default:
      page = (
        <main id="main" class="page">
          <h1>Not found</h1>
          <p>No page at <code>{path}</code>. <a href={withNamespace('/')}>Workflows</a></p>
        </main>
      );
  }
  return (
    <>
      <a class="skip" href="#main">Skip to the content</a>
      <nav class="top" aria-label="Main">
        <a class="brand" href={withNamespace('/')}>jetwork</a>
        {nav('/', 'Workflows', current.page === 'workflows' || current.page === 'workflow')}
        {nav('/workers', 'Workers', current.page === 'workers')}
        {nav('/dead-letters', 'Dead letters', current.page === 'dead-letters')}
        {nav('/start', 'Start', current.page === 'start')}
        <span class="spacer" />
        <NamespacePicker />
        <a href="/docs">API</a>
        {token() && (
          <button type="button" class="link" onClick={() => setToken(null)}>Forget token</button>
        )}
      </nav>
      {isTokenWanted() && <TokenPrompt />}
      {/* Keyed by namespace: another namespace's page loads afresh (its lists, its streams). */}
      <Fragment key={urlNamespace() ?? ''}>{page}</Fragment>
    </>
  );
}

function TokenPrompt(): JSX.Element {
  const [value, setValue] = useState('');
  return (
    <form
      class="token-prompt"
      role="alert"
      onSubmit={(e) => {
        e.preventDefault();
        setToken(value.trim());
        location.reload();
      }}
    >
      <label>
        This gateway needs a token (client or admin role):{' '}
        <input type="password" value={value} onInput={(e) => setValue(e.currentTarget.value)} autoFocus />
      </label>
      <button type="submit">Use it</button>
    </form>
  );
}

render(<App />, document.getElementById('app')!);
