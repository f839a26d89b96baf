/**
 * useFineTuning: the fine-tuning API as a React hook (the user guide's "React Hook").
 *
 *   const { jobs, stats, loading, error, createJob, startJob, cancelJob, exportSFT } =
 *     useFineTuning({ autoLoad: true, pollInterval: 30000 });
 *
 * It keeps the job list, the job counts (`stats.running` = preparing + training) and the base-model catalogue
 * current (polling every `pollInterval` ms, and at once after each action), follows the gateway's health (a
 * backend down shows in `connection`, and everything reloads by itself when it returns), and gives a live
 * subscription to one job's Server-Sent Events (`subscribeToJob`, or the `useJobEvents` hook below) whose
 * updates also flow into `jobs`.
 *
 * Actions resolve with their result, or with `null` on failure; the failure is then in `error` (an `ApiError`
 * with the HTTP status, the gateway's code and, for a 422, `fieldErrors`), and `lastError()` returns it at once.
 *
 * The gateway serves this file at /training/hooks/useFineTuning.ts and the modules it imports at
 * /training/api/*.ts, so another frontend can copy the three files into `src/hooks` and `src/api`.
 */
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiClient, ApiError, TOKEN_STORAGE_KEY, type ListJobsFilters } from '../api/client';
import { watchJob, type JobStreamHandlers, type StreamState, type WatchOptions } from '../api/events';
import {
  isTerminal,
  type BaseModel,
  type CreateJobRequest,
  type DPORecord,
  type ExportFilters,
  type ExportFormat,
  type GauntletRecord,
  type Health,
  type Job,
  type JobArtifacts,
  type JobCounts,
  type JobEvent,
  type JobMetrics,
  type SFTRecord,
  type StepEvent,
  type TrainingStats,
  type WrittenExport,
} from '../api/types';

export type { ListJobsFilters } from '../api/client';
export { ApiError } from '../api/client';

export interface UseFineTuningOptions {
  /** Load jobs, counts, models and data stats on mount (default true). */
  autoLoad?: boolean;
  /** Milliseconds between refreshes of jobs and counts; 0 turns polling off (default 30000). */
  pollInterval?: number;
  /** Milliseconds between health checks while the gateway or a backend is down (default 3000). */
  retryInterval?: number;
  /** Prefix of the gateway's URLs ('' for the page's own origin). */
  baseUrl?: string;
  /** An API token to send as `Authorization: Bearer`; when omitted, the one saved in localStorage (if any). */
  token?: string | null;
  /** Server-side filters of the job list. */
  filters?: ListJobsFilters;
  /** The fetch to use (tests pass their own). */
  fetch?: typeof fetch;
  /** The EventSource class to use (tests pass their own). */
  EventSourceImpl?: typeof EventSource;
}

/** Job counts by status; `running` is preparing + training. */
export interface FineTuningStats {
  running: number;
  queued: number;
  preparing: number;
  training: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
}

/** What the page knows about the gateway and its backends. */
export interface ConnectionState {
  /** 'ok': all serving; 'degraded': the gateway answers but a backend does not; 'offline': no gateway. */
  status: 'unknown' | 'ok' | 'degraded' | 'offline';
  /** Each service's health as /healthz reports it (empty when offline). */
  services: Record<string, string>;
  /** A sentence for people. */
  message: string;
  /** When the current trouble began (ms since epoch), null when ok. */
  since: number | null;
  /** When the page last heard from the gateway (ms since epoch). */
  lastOk: number | null;
}

export interface UseFineTuningResult {
  jobs: Job[];
  /** Jobs matching the filters on the server. */
  total: number;
  /** When `jobs` was last loaded from the server (ms since epoch), null before the first load. */
  jobsUpdatedAt: number | null;
  stats: FineTuningStats;
  models: BaseModel[];
  /** Training-data statistics from the exporter (`GET /api/training/stats`). */
  trainingStats: TrainingStats | null;
  /** True while the first load (or a refresh) is in flight. */
  loading: boolean;
  /** The latest failure, null after the next success of the same kind. */
  error: ApiError | null;
  connection: ConnectionState;
  /** The gateway answered 401: an API token is needed (or the one set is wrong). */
  unauthorized: boolean;
  token: string | null;
  /** Sets (and saves in localStorage) the API token, or clears it with null; reloads everything. */
  setToken: (token: string | null) => void;
  filters: ListJobsFilters;
  setFilters: (filters: ListJobsFilters) => void;
  refresh: () => Promise<void>;
  createJob: (request: CreateJobRequest) => Promise<Job | null>;
  startJob: (jobId: string) => Promise<Job | null>;
  cancelJob: (jobId: string) => Promise<Job | null>;
  getJob: (jobId: string) => Promise<Job | null>;
  getMetrics: (jobId: string) => Promise<JobMetrics | null>;
  getArtifacts: (jobId: string) => Promise<JobArtifacts | null>;
  /** Downloads one artifact file and hands it to the browser as a download. */
  downloadArtifact: (jobId: string, name: string) => Promise<boolean>;
  exportSFT: (filters?: ExportFilters) => Promise<SFTRecord[] | null>;
  exportDPO: (filters?: ExportFilters) => Promise<DPORecord[] | null>;
  exportGauntlet: (filters?: ExportFilters) => Promise<GauntletRecord[] | null>;
  /** An export as JSONL text. */
  exportJsonl: (format: ExportFormat, filters?: ExportFilters) => Promise<string | null>;
  /** Writes an export into the exporter's export directory. */
  writeExport: (format: ExportFormat, filters?: ExportFilters) => Promise<WrittenExport | null>;
  loadTrainingStats: () => Promise<TrainingStats | null>;
  loadModels: () => Promise<BaseModel[] | null>;
  /** A live subscription to one job's events; returns the unsubscribe function. */
  subscribeToJob: (jobId: string, handlers: JobStreamHandlers, options?: WatchOptions) => () => void;
  /** The latest failure, read synchronously (right after an action resolved with null). */
  lastError: () => ApiError | null;
  clearError: () => void;
  client: ApiClient;
}

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

function readSavedToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(TOKEN_STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

function saveToken(token: string | null): void {
  try {
    if (token) globalThis.localStorage?.setItem(TOKEN_STORAGE_KEY, token);
    else globalThis.localStorage?.removeItem(TOKEN_STORAGE_KEY);
  } catch {
    /* storage disabled: the token lasts for this page only */
  }
}

/** A step event applied to the job it belongs to. */
export function applyStep(job: Job, e: StepEvent): Job {
  return {
    ...job,
    status: job.status === 'queued' || job.status === 'preparing' ? 'training' : job.status,
    progress: e.progress,
    current_step: e.step,
    total_steps: e.total_steps || job.total_steps,
    // The event's epoch is fractional and counts from 0 (1.5: half-way through the second); the job's counts from 1.
    current_epoch: Math.max(1, Math.ceil(e.epoch)),
    loss: e.loss,
    training_examples: e.examples_seen,
  };
}

/** Any event applied to its job (status changes move the status; steps move the figures). */
export function applyEvent(job: Job, e: JobEvent): Job {
  if (e.type === 'step') return applyStep(job, e);
  if (e.type === 'status') {
    const next: Job = { ...job, status: e.to_status };
    if (e.to_status === 'failed' && e.reason) next.error = e.reason;
    if (isTerminal(e.to_status) && !next.completed_at) next.completed_at = e.time;
    if (e.to_status === 'completed') next.progress = 1;
    if ((e.to_status === 'preparing' || e.to_status === 'training') && !next.started_at) next.started_at = e.time;
    return next;
  }
  return job;
}

function describeHealth(health: Health): string {
  const down = Object.entries(health.services).filter(([, v]) => v !== 'SERVING');
  if (down.length === 0) return 'All services are running.';
  const names = down.map(([k, v]) => `the ${k} service (${v})`).join(' and ');
  return `The gateway cannot reach ${names}.`;
}

export function useFineTuning(options: UseFineTuningOptions = {}): UseFineTuningResult {
  const { autoLoad = true, pollInterval = 30000, retryInterval = 3000, baseUrl = '' } = options;

  const [token, setTokenState] = useState<string | null>(() => (options.token !== undefined ? options.token : readSavedToken()));
  const tokenRef = useRef(token);
  tokenRef.current = token;
  useEffect(() => {
    if (options.token !== undefined) setTokenState(options.token);
  }, [options.token]);

  const fetchRef = useRef(options.fetch);
  fetchRef.current = options.fetch;
  const client = useMemo(
    () =>
      new ApiClient({
        baseUrl,
        getToken: () => tokenRef.current,
        fetch: (input, init) => (fetchRef.current ?? globalThis.fetch)(input, init),
      }),
    [baseUrl],
  );

  const [jobs, setJobs] = useState<Job[]>([]);
  const [total, setTotal] = useState(0);
  const [jobsUpdatedAt, setJobsUpdatedAt] = useState<number | null>(null);
  const [stats, setStats] = useState<FineTuningStats>(EMPTY_STATS);
  const [models, setModels] = useState<BaseModel[]>([]);
  const [trainingStats, setTrainingStats] = useState<TrainingStats | null>(null);
  const [loading, setLoading] = useState<boolean>(autoLoad);
  const [error, setError] = useState<ApiError | null>(null);
  const errorRef = useRef<ApiError | null>(null);
  const [unauthorized, setUnauthorized] = useState(false);
  const [connection, setConnection] = useState<ConnectionState>({ status: 'unknown', services: {}, message: '', since: null, lastOk: null });
  const connectionRef = useRef(connection);
  connectionRef.current = connection;
  const [filters, setFiltersState] = useState<ListJobsFilters>(options.filters ?? {});
  const filtersRef = useRef(filters);
  filtersRef.current = filters;
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);

  const recordError = useCallback((err: unknown, action: string): ApiError => {
    const apiErr = err instanceof ApiError ? err : new ApiError(0, { detail: String((err as Error)?.message ?? err), code: 'CLIENT' }, action);
    if (!apiErr.action) apiErr.action = action;
    errorRef.current = apiErr;
    if (mounted.current) {
      setError(apiErr);
      if (apiErr.isUnauthorized) setUnauthorized(true);
    }
    return apiErr;
  }, []);

  const markOk = useCallback(() => {
    if (!mounted.current) return;
    setUnauthorized(false);
    const c = connectionRef.current;
    // An answer from the API proves the gateway is up, not that every backend is: only 'offline' clears here.
    if (c.status === 'offline' || c.status === 'unknown') {
      checkHealthRef.current?.();
    } else if (c.status === 'ok') {
      setConnection((prev) => ({ ...prev, lastOk: Date.now() }));
    }
  }, []);

  const noteFailure = useCallback((err: ApiError) => {
    if (err.isUnavailable) checkHealthRef.current?.();
  }, []);

  /** Runs one call; on failure records the error and resolves with null. */
  const call = useCallback(
    async <T,>(action: string, fn: () => Promise<T>): Promise<T | null> => {
      try {
        const result = await fn();
        markOk();
        return result;
      } catch (err) {
        const apiErr = recordError(err, action);
        noteFailure(apiErr);
        return null;
      }
    },
    [markOk, noteFailure, recordError],
  );

  const loadJobs = useCallback(async () => {
    const list = await call('listJobs', () => client.listJobs(filtersRef.current));
    if (list && mounted.current) {
      setJobs((prev) => mergeJobs(prev, list.jobs));
      setTotal(list.total);
      setJobsUpdatedAt(Date.now());
    }
    return list;
  }, [call, client]);

  const loadCounts = useCallback(async () => {
    const counts = await call('jobCounts', () => client.jobCounts());
    if (counts && mounted.current) setStats(countsToStats(counts));
    return counts;
  }, [call, client]);

  const loadModels = useCallback(async () => {
    const list = await call('listModels', () => client.listModels());
    if (list && mounted.current) setModels(list.models);
    return list ? list.models : null;
  }, [call, client]);

  const loadTrainingStats = useCallback(async () => {
    const s = await call('stats', () => client.stats());
    if (s && mounted.current) setTrainingStats(s);
    return s;
  }, [call, client]);

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
  }, [loadCounts, loadJobs]);

  const refreshAll = useCallback(async () => {
    await Promise.all([refresh(), loadModels(), loadTrainingStats()]);
  }, [loadModels, loadTrainingStats, refresh]);

  // --- health: the banner's source, and what brings the page back by itself -------------------------------
  const checkHealthRef = useRef<(() => Promise<void>) | null>(null);
  const checkingHealth = useRef(false);
  const checkHealth = useCallback(async () => {
    if (checkingHealth.current) return;
    checkingHealth.current = true;
    const before = connectionRef.current.status;
    let next: ConnectionState;
    try {
      const { ok, health } = await client.health();
      next = ok
        ? { status: 'ok', services: health.services, message: '', since: null, lastOk: Date.now() }
        : {
            status: 'degraded',
            services: health.services,
            message: describeHealth(health),
            since: connectionRef.current.since ?? Date.now(),
            lastOk: Date.now(),
          };
    } catch (err) {
      const e = err as ApiError;
      if (e.isUnauthorized) {
        // A gateway that guards /healthz too: it is up; the token prompt is what the user needs.
        checkingHealth.current = false;
        if (mounted.current) setUnauthorized(true);
        return;
      }
      next = {
        status: 'offline',
        services: {},
        message: e.status === 0 ? 'Cannot reach the gateway.' : `The gateway answered ${e.status}: ${e.message}`,
        since: connectionRef.current.since ?? Date.now(),
        lastOk: connectionRef.current.lastOk,
      };
    } finally {
      checkingHealth.current = false;
    }
    if (!mounted.current) return;
    connectionRef.current = next;
    setConnection(next);
    if (next.status === 'ok' && before !== 'ok' && before !== 'unknown') {
      // Back again: reload what may have changed while the page could not see it.
      void refreshAll();
    }
  }, [client, refreshAll]);
  checkHealthRef.current = checkHealth;

  useEffect(() => {
    if (!autoLoad) return;
    void checkHealth();
    void refreshAll();
    // Reload when the token changes (a 401 fixed by a new token).
  }, [autoLoad, token, checkHealth, refreshAll]);

  // Polling: jobs and counts every pollInterval; health every pollInterval, or every retryInterval while down.
  const troubled = connection.status === 'offline' || connection.status === 'degraded';
  useEffect(() => {
    if (!autoLoad) return;
    const timers: ReturnType<typeof setInterval>[] = [];
    if (pollInterval > 0) timers.push(setInterval(() => void refresh(), pollInterval));
    const healthEvery = troubled ? retryInterval : pollInterval;
    if (healthEvery > 0) timers.push(setInterval(() => void checkHealth(), healthEvery));
    return () => timers.forEach(clearInterval);
  }, [autoLoad, pollInterval, retryInterval, troubled, refresh, checkHealth]);

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

  const setToken = useCallback((t: string | null) => {
    const clean = t && t.trim() ? t.trim() : null;
    saveToken(clean);
    tokenRef.current = clean;
    setUnauthorized(false);
    setTokenState(clean);
  }, []);

  const upsert = useCallback((job: Job) => {
    if (!mounted.current) return;
    setJobs((prev) => {
      const i = prev.findIndex((j) => j.id === job.id);
      if (i < 0) return [job, ...prev];
      const next = prev.slice();
      next[i] = job;
      return next;
    });
  }, []);

  // --- actions ----------------------------------------------------------------------------------------------
  const createJob = useCallback(
    async (request: CreateJobRequest) => {
      const job = await call('createJob', () => client.createJob(request));
      if (job) {
        upsert(job);
        void loadCounts();
      }
      return job;
    },
    [call, client, loadCounts, upsert],
  );

  const startJob = useCallback(
    async (jobId: string) => {
      const job = await call('startJob', () => client.startJob(jobId));
      if (job) {
        upsert(job);
        void loadCounts();
      }
      return job;
    },
    [call, client, loadCounts, upsert],
  );

  const cancelJob = useCallback(
    async (jobId: string) => {
      const job = await call('cancelJob', () => client.cancelJob(jobId));
      if (job) {
        upsert(job);
        void loadCounts();
      }
      return job;
    },
    [call, client, loadCounts, upsert],
  );

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

  const exportSFT = useCallback((f: ExportFilters = {}) => call('exportSFT', () => client.exportRecords('sft', f)), [call, client]);
  const exportDPO = useCallback((f: ExportFilters = {}) => call('exportDPO', () => client.exportRecords('dpo', f)), [call, client]);
  const exportGauntlet = useCallback((f: ExportFilters = {}) => call('exportGauntlet', () => client.exportRecords('gauntlet', f)), [call, client]);
  const exportJsonl = useCallback(
    (format: ExportFormat, f: ExportFilters = {}) => call(`export${format.toUpperCase()}`, () => client.exportJsonl(format, f)),
    [call, client],
  );
  const writeExport = useCallback(
    async (format: ExportFormat, f: ExportFilters = {}) => {
      const written = await call('writeExport', () => client.writeExport(format, f));
      if (written) void loadTrainingStats();
      return written;
    },
    [call, client, loadTrainingStats],
  );

  // --- live events --------------------------------------------------------------------------------------------
  const subscribeToJob = useCallback(
    (jobId: string, handlers: JobStreamHandlers, watchOptions: WatchOptions = {}) =>
      watchJob(
        client,
        jobId,
        {
          ...handlers,
          onSnapshot: (job) => {
            upsert(job);
            handlers.onSnapshot?.(job);
          },
          onEvent: (event) => {
            if (event.type === 'step' || event.type === 'status') {
              setJobs((prev) => prev.map((j) => (j.id === jobId ? applyEvent(j, event) : j)));
            }
            if (event.type === 'status') {
              // Counts and timestamps come from the server: fetch them once the status moved.
              void loadCounts();
              void getJob(jobId);
            }
            handlers.onEvent?.(event);
          },
          onStateChange: (state: StreamState) => {
            if (state === 'unauthorized' && mounted.current) setUnauthorized(true);
            handlers.onStateChange?.(state);
          },
        },
        { EventSourceImpl: options.EventSourceImpl, ...watchOptions },
      ),
    [client, getJob, loadCounts, options.EventSourceImpl, upsert],
  );

  const lastError = useCallback(() => errorRef.current, []);
  const clearError = useCallback(() => {
    errorRef.current = null;
    setError(null);
  }, []);

  return {
    jobs,
    total,
    jobsUpdatedAt,
    stats,
    models,
    trainingStats,
    loading,
    error,
    connection,
    unauthorized,
    token,
    setToken,
    filters,
    setFilters,
    refresh,
    createJob,
    startJob,
    cancelJob,
    getJob,
    getMetrics,
    getArtifacts,
    downloadArtifact,
    exportSFT,
    exportDPO,
    exportGauntlet,
    exportJsonl,
    writeExport,
    loadTrainingStats,
    loadModels,
    subscribeToJob,
    lastError,
    clearError,
    client,
  };
}

// The logs of jobs whose stream ended (terminal jobs: their log never changes again), per subscription source,
// so a card shown again (another tab and back) does not replay the whole log.
const endedLogs = new WeakMap<object, Map<string, { job: Job | null; events: JobEvent[] }>>();

/**
 * A job's live state and event log from its Server-Sent Events, through `subscribeToJob` of useFineTuning.
 * `events` holds every event from the first (the stream replays the log), so a loss curve can be drawn from the
 * step events. Turning `enabled` off keeps what was received; turning it on again resumes after the last event.
 */
export function useJobEvents(
  subscribeToJob: UseFineTuningResult['subscribeToJob'],
  jobId: string | null,
  enabled = true,
): { job: Job | null; events: JobEvent[]; state: StreamState | 'idle' } {
  const cached = () => (jobId ? endedLogs.get(subscribeToJob)?.get(jobId) : undefined);
  const [job, setJob] = useState<Job | null>(() => cached()?.job ?? null);
  const [events, setEvents] = useState<JobEvent[]>(() => cached()?.events ?? []);
  const [state, setState] = useState<StreamState | 'idle'>(() => (cached() ? 'ended' : 'idle'));
  const lastSequence = useRef(cached()?.events.at(-1)?.sequence ?? 0);
  const shownFor = useRef(jobId);
  useEffect(() => {
    if (shownFor.current === jobId) return;
    // Another job: start from its cached log, or from nothing.
    shownFor.current = jobId;
    const c = cached();
    lastSequence.current = c?.events.at(-1)?.sequence ?? 0;
    setEvents(c?.events ?? []);
    setJob(c?.job ?? null);
    setState(c ? 'ended' : 'idle');
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [jobId]);
  useEffect(() => {
    if (!jobId || !enabled || cached()) return;
    return subscribeToJob(
      jobId,
      {
        onSnapshot: (j) => setJob(j),
        onEvent: (e) => {
          lastSequence.current = e.sequence;
          setEvents((prev) => [...prev, e]);
          setJob((j) => (j ? applyEvent(j, e) : j));
        },
        onStateChange: setState,
      },
      { after: lastSequence.current },
    );
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [subscribeToJob, jobId, enabled]);
  useEffect(() => {
    if (state !== 'ended' || !jobId) return;
    let logs = endedLogs.get(subscribeToJob);
    if (!logs) endedLogs.set(subscribeToJob, (logs = new Map()));
    logs.set(jobId, { job, events });
  }, [state, jobId, job, events, subscribeToJob]);
  return { job, events, state };
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
