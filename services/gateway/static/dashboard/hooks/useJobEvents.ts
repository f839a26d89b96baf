/**
 * Job events: `useJobSubscription` gives useFineTuning its `subscribeToJob` (a job's Server-Sent Events whose
 * step and status events also flow into the job list), and `useJobEvents` is one job's live state and event log.
 */
import { useCallback, useEffect, useRef, useState, type Dispatch, type MutableRefObject, type SetStateAction } from 'react';
import type { ApiClient } from '../api/client';
import { watchJob, type JobStreamHandlers, type StreamState, type WatchOptions } from '../api/events';
import { isTerminal, type Job, type JobEvent, type StepEvent } from '../api/types';

/** A live subscription to one job's events; returns the unsubscribe function. */
export type SubscribeToJob = (jobId: string, handlers: JobStreamHandlers, options?: WatchOptions) => () => void;

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

/** `subscribeToJob` for useFineTuning: the stream's snapshot and events also update the job list. */
export function useJobSubscription(
  client: ApiClient,
  jobs: {
    upsert: (job: Job) => void;
    setJobs: Dispatch<SetStateAction<Job[]>>;
    loadCounts: () => Promise<unknown>;
    getJob: (jobId: string) => Promise<unknown>;
  },
  mounted: MutableRefObject<boolean>,
  setUnauthorized: (value: boolean) => void,
  EventSourceImpl?: typeof EventSource,
): SubscribeToJob {
  const { upsert, setJobs, loadCounts, getJob } = jobs;
  return useCallback(
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
        { EventSourceImpl, ...watchOptions },
      ),
    [client, getJob, loadCounts, EventSourceImpl, upsert, setJobs, mounted, setUnauthorized],
  );
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
  subscribeToJob: SubscribeToJob,
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
