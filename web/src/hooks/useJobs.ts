/**
 * useJobs: the job list (with the server-side filters), the job counts, and the job actions (create, start,
 * cancel, get, metrics, artifacts, download). Each action updates the list at once; `refresh` reloads the list
 * and the counts (concurrent refreshes share one round of requests).
 */
import { useCallback, useEffect, useRef, useState, type Dispatch, type MutableRefObject, type SetStateAction } from 'react';
import type { ApiClient, ApiError, ListJobsFilters } from '../api/client';
import { isTerminal, type CreateJobRequest, type Job, type JobArtifacts, type JobCounts, type JobMetrics } from '../api/types';
import type { Call } from './useApiCall';

/** Job counts by status; `running` is preparing + training. */
export type FineTuningStats = JobCounts;

const EMPTY_STATS: FineTuningStats = { running: 0, queued: 0, preparing: 0, training: 0, completed: 0, failed: 0, cancelled: 0, total: 0 };

export function countsToStats(c: JobCounts): FineTuningStats {
  return {
    running: c.running ?? c.preparing + c.training,
    queued: c.queued,
    preparing: c.preparing,
    training: c.training,
    completed: c.completed,
    failed: c.failed,
    cancelled: c.cancelled,
    total: c.total,
  };
}

export interface JobsState {
  jobs: Job[];
  setJobs: Dispatch<SetStateAction<Job[]>>;
  /** Jobs matching the filters on the server. */
  total: number;
  /** When `jobs` was last loaded from the server (ms since epoch), null before the first load. */
  jobsUpdatedAt: number | null;
  stats: FineTuningStats;
  /** True while the first load (or a refresh) is in flight. */
  loading: boolean;
  filters: ListJobsFilters;
  setFilters: (filters: ListJobsFilters) => void;
  loadCounts: () => Promise<JobCounts | null>;
  refresh: () => Promise<void>;
  /** Puts a job into the list (first when new). */
  upsert: (job: Job) => void;
  createJob: (request: CreateJobRequest) => Promise<Job | null>;
  startJob: (jobId: string) => Promise<Job | null>;
  cancelJob: (jobId: string) => Promise<Job | null>;
  getJob: (jobId: string) => Promise<Job | null>;
  getMetrics: (jobId: string) => Promise<JobMetrics | null>;
  getArtifacts: (jobId: string) => Promise<JobArtifacts | null>;
  /** Downloads one artifact file and hands it to the browser as a download. */
  downloadArtifact: (jobId: string, name: string) => Promise<boolean>;
}

export function useJobs(
  client: ApiClient,
  call: Call,
  mounted: MutableRefObject<boolean>,
  setError: (update: (prev: ApiError | null) => ApiError | null) => void,
  options: { autoLoad: boolean; filters?: ListJobsFilters },
): JobsState {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [total, setTotal] = useState(0);
  const [jobsUpdatedAt, setJobsUpdatedAt] = useState<number | null>(null);
  const [stats, setStats] = useState<FineTuningStats>(EMPTY_STATS);
  const [loading, setLoading] = useState<boolean>(options.autoLoad);
  const [filters, setFiltersState] = useState<ListJobsFilters>(options.filters ?? {});
  const filtersRef = useRef(filters);
  filtersRef.current = filters;

  const loadJobs = useCallback(async () => {
    const list = await call('listJobs', () => client.listJobs(filtersRef.current));
    if (list && mounted.current) {
      setJobs((prev) => mergeJobs(prev, list.jobs));
      setTotal(list.total);
      setJobsUpdatedAt(Date.now());
    }
    return list;
  }, [call, client, mounted]);

  const loadCounts = useCallback(async () => {
    const counts = await call('jobCounts', () => client.jobCounts());
    if (counts && mounted.current) setStats(countsToStats(counts));
    return counts;
  }, [call, client, mounted]);

  const refreshing = useRef<Promise<void> | null>(null);
  const refresh = useCallback(async () => {
    // Concurrent refreshes (a poll and an action) share one round of requests.
    if (refreshing.current) return refreshing.current;
    const run = (async () => {
      const [list, counts] = await Promise.all([loadJobs(), loadCounts()]);
      if (list && counts && mounted.current) {
        // A successful round clears a stale load error, not an action's error the user has yet to read.
        setError((prev) => (prev && (prev.action === 'listJobs' || prev.action === 'jobCounts' || prev.isUnavailable) ? null : prev));
      }
      if (mounted.current) setLoading(false);
    })();
    refreshing.current = run;
    try {
      await run;
    } finally {
      refreshing.current = null;
    }
  }, [loadCounts, loadJobs, mounted, setError]);

  const setFilters = useCallback((f: ListJobsFilters) => {
    filtersRef.current = f;
    setFiltersState(f);
  }, []);
  const firstFilters = useRef(true);
  useEffect(() => {
    if (firstFilters.current) {
      firstFilters.current = false;
      return;
    }
    // The list is replaced, not merged, when the filters change.
    setJobs([]);
    void refresh();
  }, [filters, refresh]);

  const upsert = useCallback(
    (job: Job) => {
      if (!mounted.current) return;
      setJobs((prev) => {
        const i = prev.findIndex((j) => j.id === job.id);
        if (i < 0) return [job, ...prev];
        const next = prev.slice();
        next[i] = job;
        return next;
      });
    },
    [mounted],
  );

  /** An action that returns the job: the list shows it at once, and the counts are reloaded. */
  const jobAction = useCallback(
    async (action: string, fn: () => Promise<Job>) => {
      const job = await call(action, fn);
      if (job) {
        upsert(job);
        void loadCounts();
      }
      return job;
    },
    [call, loadCounts, upsert],
  );

  const createJob = useCallback((request: CreateJobRequest) => jobAction('createJob', () => client.createJob(request)), [client, jobAction]);
  const startJob = useCallback((jobId: string) => jobAction('startJob', () => client.startJob(jobId)), [client, jobAction]);
  const cancelJob = useCallback((jobId: string) => jobAction('cancelJob', () => client.cancelJob(jobId)), [client, jobAction]);

  const getJob = useCallback(
    async (jobId: string) => {
      const job = await call('getJob', () => client.getJob(jobId));
      if (job) upsert(job);
      return job;
    },
    [call, client, upsert],
  );

  const getMetrics = useCallback((jobId: string) => call('getMetrics', () => client.getMetrics(jobId)), [call, client]);
  const getArtifacts = useCallback((jobId: string) => call('getArtifacts', () => client.getArtifacts(jobId)), [call, client]);

  const downloadArtifact = useCallback(
    async (jobId: string, name: string) => {
      const blob = await call('downloadArtifact', () => client.downloadArtifact(jobId, name));
      if (!blob) return false;
      saveBlob(blob, name.split('/').pop() || name);
      return true;
    },
    [call, client],
  );

  return {
    jobs,
    setJobs,
    total,
    jobsUpdatedAt,
    stats,
    loading,
    filters,
    setFilters,
    loadCounts,
    refresh,
    upsert,
    createJob,
    startJob,
    cancelJob,
    getJob,
    getMetrics,
    getArtifacts,
    downloadArtifact,
  };
}

/** Keeps the newer of each job: a poll must not roll back what the event stream already showed. */
function mergeJobs(prev: Job[], incoming: Job[]): Job[] {
  const byId = new Map(prev.map((j) => [j.id, j]));
  return incoming.map((j) => {
    const old = byId.get(j.id);
    if (!old) return j;
    const rank = (s: string) => ['queued', 'preparing', 'training', 'completed', 'failed', 'cancelled'].indexOf(s);
    const olderStatus = rank(j.status) < rank(old.status) && !isTerminal(j.status);
    if (olderStatus || (j.status === old.status && j.current_step < old.current_step)) {
      // The server's row is behind the stream: keep the live figures, take everything else from the server.
      const { status, progress, current_epoch, current_step, total_steps, loss, training_examples } = old;
      return { ...j, status, progress, current_epoch, current_step, total_steps, loss, training_examples };
    }
    return j;
  });
}

function saveBlob(blob: Blob, filename: string): void {
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = filename;
  a.style.display = 'none';
  document.body.appendChild(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 30000);
}
