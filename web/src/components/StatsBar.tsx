import type { FineTuningStats } from '../hooks/useFineTuning';

/** The guide's stats bar: Training (running) / Queued / Completed / Failed. */
export function StatsBar({ stats, stale }: { stats: FineTuningStats; stale?: boolean }) {
  const items: { key: string; label: string; value: number; hint: string }[] = [
    { key: 'training', label: 'Training', value: stats.running, hint: 'Running jobs (preparing or training)' },
    { key: 'queued', label: 'Queued', value: stats.queued, hint: 'Jobs waiting to start' },
    { key: 'completed', label: 'Completed', value: stats.completed, hint: 'Jobs that finished successfully' },
    { key: 'failed', label: 'Failed', value: stats.failed, hint: 'Jobs that ended with an error' },
  ];
  return (
    <section className={`stats-bar${stale ? ' stale' : ''}`} aria-label="Job counts">
      {items.map((it) => (
        <div key={it.key} className={`stat stat-${it.key}`} title={it.hint} data-testid={`stat-${it.key}`}>
          <span className="stat-value" data-testid={`stat-${it.key}-value`}>
            {it.value}
          </span>
          <span className="stat-label">{it.label}</span>
        </div>
      ))}
      <div className="stat stat-other" title="Cancelled jobs and all jobs">
        <span className="stat-minor">{stats.cancelled} cancelled</span>
        <span className="stat-minor">{stats.total} in all</span>
      </div>
    </section>
  );
}
