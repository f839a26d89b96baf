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
 * It is composed of small hooks, one per concern, each in its own file beside this one: `useApiClient` (the
 * client and the API token), `useApiCall` (the shared error state), `useConnection` (the gateway's health),
 * `useJobs` (the job list, counts and actions), `useExports` (exports, data statistics, base models) and
 * `useJobEvents` (live job events). This file wires them together and re-exports what they export.
 *
 * The gateway serves these files at /training/hooks/*.ts and the modules they import at /training/api/*.ts, so
 * another frontend can copy them into `src/hooks` and `src/api`.
 */
import { useCallback, useEffect, useRef } from 'react';
import type { ApiClient, ApiError, ListJobsFilters } from '../api/client';
import type { JobStreamHandlers, WatchOptions } from '../api/events';
import { useApiCall, useMounted, type CallListeners } from './useApiCall';
import { useApiClient } from './useApiClient';
import { useConnection, type ConnectionState } from './useConnection';
import { useExports, type ExportsState } from './useExports';
import { useJobSubscription } from './useJobEvents';
import { useJobs, type JobsState } from './useJobs';

export type { ListJobsFilters } from '../api/client';
export { ApiError } from '../api/client';
export type { ConnectionState } from './useConnection';
export { applyEvent, applyStep, useJobEvents } from './useJobEvents';
export { countsToStats, type FineTuningStats } from './useJobs';

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

/** The hook's result: the job list and actions of `useJobs` and the exports and catalogue of `useExports`, plus
 * the connection, the API token and job subscriptions. */
export interface UseFineTuningResult extends Omit<JobsState, 'setJobs' | 'loadCounts' | 'upsert'>, ExportsState {
  /** The latest failure, null after the next success of the same kind. */
  error: ApiError | null;
  connection: ConnectionState;
  /** The gateway answered 401: an API token is needed (or the one set is wrong). */
  unauthorized: boolean;
  token: string | null;
  /** Sets (and saves in localStorage) the API token, or clears it with null; reloads everything. */
  setToken: (token: string | null) => void;
  /** A live subscription to one job's events; returns the unsubscribe function. */
  subscribeToJob: (jobId: string, handlers: JobStreamHandlers, options?: WatchOptions) => () => void;
  /** The latest failure, read synchronously (right after an action resolved with null). */
  lastError: () => ApiError | null;
  clearError: () => void;
  client: ApiClient;
}

export function useFineTuning(options: UseFineTuningOptions = {}): UseFineTuningResult {
  const { autoLoad = true, pollInterval = 30000, retryInterval = 3000, baseUrl = '' } = options;
  const mounted = useMounted();
  const api = useApiClient({ baseUrl, token: options.token, fetch: options.fetch });
  const { client, token } = api;

  // `call` reports each answer and failure to the connection tracking, which is built on the same client.
  const listeners = useRef<CallListeners>({});
  const calls = useApiCall(mounted, listeners);
  const { call, setUnauthorized } = calls;
  const onBack = useRef<() => void>(() => {});
  const { connection, checkHealth, markOk, noteFailure } = useConnection(client, mounted, setUnauthorized, onBack);
  listeners.current = { onOk: markOk, onFailure: noteFailure };

  const jobs = useJobs(client, call, mounted, calls.setError, { autoLoad, filters: options.filters });
  const data = useExports(client, call, mounted);
  const subscribeToJob = useJobSubscription(client, jobs, mounted, setUnauthorized, options.EventSourceImpl);

  const { refresh } = jobs;
  const { loadModels, loadTrainingStats } = data;
  const refreshAll = useCallback(async () => {
    await Promise.all([refresh(), loadModels(), loadTrainingStats()]);
  }, [loadModels, loadTrainingStats, refresh]);
  // Back after trouble: reload what may have changed while the page could not see it.
  onBack.current = () => void refreshAll();

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

  const apiSetToken = api.setToken;
  const setToken = useCallback(
    (t: string | null) => {
      apiSetToken(t);
      setUnauthorized(false);
    },
    [apiSetToken, setUnauthorized],
  );

  return {
    jobs: jobs.jobs,
    total: jobs.total,
    jobsUpdatedAt: jobs.jobsUpdatedAt,
    stats: jobs.stats,
    models: data.models,
    trainingStats: data.trainingStats,
    loading: jobs.loading,
    error: calls.error,
    connection,
    unauthorized: calls.unauthorized,
    token,
    setToken,
    filters: jobs.filters,
    setFilters: jobs.setFilters,
    refresh,
    createJob: jobs.createJob,
    startJob: jobs.startJob,
    cancelJob: jobs.cancelJob,
    getJob: jobs.getJob,
    getMetrics: jobs.getMetrics,
    getArtifacts: jobs.getArtifacts,
    downloadArtifact: jobs.downloadArtifact,
    exportSFT: data.exportSFT,
    exportDPO: data.exportDPO,
    exportGauntlet: data.exportGauntlet,
    exportJsonl: data.exportJsonl,
    writeExport: data.writeExport,
    loadTrainingStats,
    loadModels,
    subscribeToJob,
    lastError: calls.lastError,
    clearError: calls.clearError,
    client,
  };
}
