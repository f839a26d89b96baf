import { useCallback, useEffect, useMemo, useState } from 'react';
import type { BaseModel, Job } from './api/types';
import { ConnectionBanner } from './components/ConnectionBanner';
import { ExportsTab } from './components/ExportsTab';
import { JobsTab } from './components/JobsTab';
import { KeysPanel } from './components/KeysPanel';
import { ModelsTab } from './components/ModelsTab';
import { NewJobTab } from './components/NewJobTab';
import { PlaygroundTab } from './components/PlaygroundTab';
import { StatsBar } from './components/StatsBar';
import { TokenPrompt } from './components/TokenPrompt';
import { useFineTuning } from './hooks/useFineTuning';

export type Tab = 'jobs' | 'new' | 'models' | 'exports' | 'playground' | 'keys';

const TABS: { id: Tab; label: string; path: string }[] = [
  { id: 'jobs', label: 'Active Jobs', path: 'jobs' },
  { id: 'new', label: 'New Job', path: 'new' },
  { id: 'models', label: 'Available Models', path: 'models' },
  { id: 'exports', label: 'Exports', path: 'exports' },
  { id: 'playground', label: 'Playground', path: 'playground' },
  { id: 'keys', label: 'Keys', path: 'keys' },
];

/** The page is served at /training and /admin/training; each tab has its own sub-path under either. */
export function parseLocation(pathname: string): { base: string; tab: Tab } {
  const m = pathname.match(/^(.*?\/training)(?:\/([^/]*))?/);
  const base = m ? m[1] : '/training';
  const seg = m?.[2] ?? '';
  const tab = TABS.find((t) => t.path === seg)?.id ?? 'jobs';
  return { base, tab };
}

export function App() {
  // Polling backs up the live event streams (counts, new jobs from other clients); 5 s keeps the stats bar current.
  const ft = useFineTuning({ autoLoad: true, pollInterval: 5000, retryInterval: 2000 });
  const [{ base, tab }, setRoute] = useState(() => parseLocation(window.location.pathname));
  const [highlightId, setHighlightId] = useState<string | null>(null);
  const [preselectModel, setPreselectModel] = useState<string | null>(null);
  const [tokenDismissed, setTokenDismissed] = useState(false);
  const [tokenPromptOpen, setTokenPromptOpen] = useState(false);

  useEffect(() => {
    const onPop = () => setRoute(parseLocation(window.location.pathname));
    window.addEventListener('popstate', onPop);
    return () => window.removeEventListener('popstate', onPop);
  }, []);

  const go = useCallback(
    (next: Tab) => {
      const path = `${base}/${TABS.find((t) => t.id === next)!.path}`;
      if (window.location.pathname !== path) window.history.pushState(null, '', path);
      setRoute({ base, tab: next });
    },
    [base],
  );

  const verticalStats = ft.trainingStats?.debates_per_vertical ?? {};
  const verticals = useMemo(() => {
    const all = new Set<string>([...Object.keys(verticalStats), ...ft.models.flatMap((m) => m.verticals), ...ft.jobs.map((j) => j.vertical)]);
    all.delete('');
    return Array.from(all).sort();
  }, [verticalStats, ft.models, ft.jobs]);

  const onStarted = useCallback(
    (job: Job) => {
      setHighlightId(job.id);
      // The new job must be visible: drop filters that would hide it.
      if (ft.filters.status || (ft.filters.vertical && ft.filters.vertical !== job.vertical)) ft.setFilters({});
      go('jobs');
    },
    [ft, go],
  );

  const onUseModel = useCallback(
    (m: BaseModel) => {
      setPreselectModel(m.id);
      go('new');
    },
    [go],
  );

  const troubled = ft.connection.status === 'offline' || ft.connection.status === 'degraded';
  const showTokenPrompt = tokenPromptOpen || (ft.unauthorized && !tokenDismissed);
  const unexpected = ft.error && !ft.error.isUnavailable && !ft.error.isUnauthorized && ['listJobs', 'jobCounts', 'listModels', 'stats'].includes(ft.error.action);

  return (
    <div className="app">
      <header className="top">
        <div>
          <h1>Fine-tuning</h1>
          <p className="muted">LoRA fine-tuning on debate outcomes: export the data, train adapters, watch them live.</p>
        </div>
        <div className="top-right">
          <span className={`health health-${ft.connection.status}`} data-testid="health" title={Object.entries(ft.connection.services).map(([k, v]) => `${k}: ${v}`).join('\n')}>
            {ft.connection.status === 'ok' ? '● All services up' : ft.connection.status === 'unknown' ? '○ Connecting…' : ft.connection.status === 'degraded' ? '● Degraded' : '● Offline'}
          </span>
          <button type="button" className="link" onClick={() => setTokenPromptOpen(true)} hidden={!ft.unauthorized && !ft.token}>
            {ft.token ? 'API key set' : 'Set API key'}
          </button>
          <a href="/docs" className="link">
            API docs
          </a>
        </div>
      </header>
      <ConnectionBanner connection={ft.connection} onRetry={() => void ft.refresh()} />
      {ft.unauthorized && tokenDismissed && (
        <div className="banner banner-auth" role="alert">
          The gateway needs an API token.{' '}
          <button type="button" className="link" onClick={() => setTokenDismissed(false)}>
            Enter it
          </button>
        </div>
      )}
      {unexpected && (
        <div className="banner banner-error" role="alert">
          {ft.error!.message}
        </div>
      )}
      <StatsBar stats={ft.stats} stale={troubled} />
      <nav className="tabs" role="tablist">
        {TABS.filter((t) => t.id !== 'keys' || base.startsWith('/admin')).map((t) => (
          <a
            key={t.id}
            role="tab"
            href={`${base}/${t.path}`}
            aria-selected={tab === t.id}
            className={tab === t.id ? 'active' : ''}
            onClick={(e) => {
              e.preventDefault();
              go(t.id);
            }}
          >
            {t.label}
            {t.id === 'jobs' && ft.stats.running > 0 ? <span className="count">{ft.stats.running}</span> : null}
          </a>
        ))}
      </nav>
      <main>
        {tab === 'jobs' && <JobsTab ft={ft} verticals={verticals} highlightId={highlightId} />}
        {tab === 'new' && (
          <NewJobTab
            ft={ft}
            verticals={verticals.map((v) => ({ name: v, debates: verticalStats[v] ?? null }))}
            preselectModel={preselectModel}
            onStarted={onStarted}
          />
        )}
        {tab === 'models' && <ModelsTab models={ft.models} loading={ft.loading} onUse={onUseModel} />}
        {tab === 'exports' && <ExportsTab ft={ft} verticals={verticals} />}
        {tab === 'playground' && <PlaygroundTab client={ft.client} />}
        {tab === 'keys' && <KeysPanel client={ft.client} />}
      </main>
      {showTokenPrompt && (
        <TokenPrompt
          hadToken={!!ft.token}
          onSubmit={(t) => {
            ft.setToken(t);
            setTokenDismissed(false);
            setTokenPromptOpen(false);
          }}
          onForget={
            ft.token
              ? () => {
                  ft.setToken(null);
                  setTokenPromptOpen(false);
                }
              : undefined
          }
          onDismiss={() => {
            setTokenDismissed(true);
            setTokenPromptOpen(false);
          }}
        />
      )}
    </div>
  );
}
