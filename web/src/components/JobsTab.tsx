import { useEffect, useMemo, useRef } from 'react';
import { JOB_STATUSES, type JobStatus } from '../api/types';
import type { UseFineTuningResult } from '../hooks/useFineTuning';
import { JobCard, type JobCardActions } from './JobCard';

/** Active Jobs: a card per job (newest first), filtered by status and vertical on the server. */
export function JobsTab({ ft, verticals, highlightId }: { ft: UseFineTuningResult; verticals: string[]; highlightId: string | null }) {
  const actions: JobCardActions = useMemo(
    () => ({
      startJob: ft.startJob,
      getMetrics: ft.getMetrics,
      getArtifacts: ft.getArtifacts,
      downloadArtifact: ft.downloadArtifact,
      subscribeToJob: ft.subscribeToJob,
      lastError: ft.lastError,
    }),
    [ft.startJob, ft.getMetrics, ft.getArtifacts, ft.downloadArtifact, ft.subscribeToJob, ft.lastError],
  );
  const listRef = useRef<HTMLDivElement>(null);
  useEffect(() => {
    if (!highlightId) return;
    listRef.current?.querySelector(`[data-job-id="${CSS.escape(highlightId)}"]`)?.scrollIntoView({ block: 'nearest' });
  }, [highlightId, ft.jobs.length]);

  const { status = '', vertical = '' } = ft.filters;
  const filtered = status !== '' || vertical !== '';
  const listFailed = ft.error && (ft.error.action === 'listJobs' || ft.error.action === 'jobCounts');
  return (
    <section aria-label="Active jobs">
      <div className="toolbar">
        <label>
          Status{' '}
          <select
            aria-label="Filter by status"
            value={status}
            onChange={(e) => ft.setFilters({ ...ft.filters, status: e.target.value as JobStatus | '' })}
          >
            <option value="">All statuses</option>
            {JOB_STATUSES.map((s) => (
              <option key={s} value={s}>
                {s}
              </option>
            ))}
          </select>
        </label>
        <label>
          Vertical{' '}
          <select aria-label="Filter by vertical" value={vertical} onChange={(e) => ft.setFilters({ ...ft.filters, vertical: e.target.value })}>
            <option value="">All verticals</option>
            {verticals.map((v) => (
              <option key={v} value={v}>
                {v}
              </option>
            ))}
          </select>
        </label>
        {filtered && (
          <button type="button" className="link" onClick={() => ft.setFilters({})}>
            Clear filters
          </button>
        )}
        <span className="muted">
          {ft.total} job{ft.total === 1 ? '' : 's'}
          {filtered ? ' match' : ''}
        </span>
        <button type="button" className="small" onClick={() => void ft.refresh()}>
          Refresh
        </button>
      </div>
      {listFailed && ft.jobs.length > 0 && (
        <p className="muted" data-testid="jobs-stale">
          Showing the jobs as last loaded{ft.jobsUpdatedAt ? ` at ${new Date(ft.jobsUpdatedAt).toLocaleTimeString()}` : ''}
          {ft.error?.isUnavailable ? '; they refresh by themselves once the service is back.' : `; the list cannot be refreshed: ${ft.error?.message}`}
        </p>
      )}
      <div className="job-list" ref={listRef} data-testid="job-list">
        {ft.loading && ft.jobs.length === 0 && <p className="muted">Loading jobs…</p>}
        {!ft.loading && ft.jobs.length === 0 && (
          <p className="empty" data-testid="no-jobs">
            {listFailed
              ? `Jobs cannot be loaded: ${ft.error?.message}`
              : filtered
                ? 'No job matches these filters.'
                : 'No jobs yet. Start one from the New Job tab.'}
          </p>
        )}
        {ft.jobs.map((job) => (
          <JobCard key={job.id} job={job} actions={actions} onCancel={() => ft.cancelJob(job.id)} highlighted={job.id === highlightId} />
        ))}
      </div>
    </section>
  );
}
