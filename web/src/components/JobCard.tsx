import { useEffect, useMemo, useRef, useState } from 'react';
import { isTerminal, type Job, type JobArtifacts, type JobMetrics, type StepEvent, type DownloadEvent } from '../api/types';
import { useJobEvents, type UseFineTuningResult } from '../hooks/useFineTuning';
import { formatBytes, formatDuration, formatNumber, formatPercent, formatTime } from '../format';
import { ArtifactsPanel } from './ArtifactsPanel';
import { LossChart, validationPoint, type LossPoint } from './LossChart';
import { MetricsPanel } from './MetricsPanel';

/** What a card can do beyond showing the job; without them it is a plain, static card (as in the guide). */
export interface JobCardActions {
  startJob: UseFineTuningResult['startJob'];
  getMetrics: UseFineTuningResult['getMetrics'];
  getArtifacts: UseFineTuningResult['getArtifacts'];
  downloadArtifact: UseFineTuningResult['downloadArtifact'];
  subscribeToJob: UseFineTuningResult['subscribeToJob'];
  lastError: UseFineTuningResult['lastError'];
}

export interface JobCardProps {
  job: Job;
  onCancel?: () => unknown;
  actions?: JobCardActions;
  /** Just created from this page: watched live from the start and scrolled into view. */
  highlighted?: boolean;
}

// Every event stream holds one of the browser's six connections to the gateway while it is open. At most three
// run at once, so the page's own requests always have connections left; live jobs go before the replays of
// finished jobs' logs (for their loss curves), and the rest wait their turn (their figures still come by polling).
const MAX_STREAMS = 3;
let openStreams = 0;
const waitingStreams: { live: boolean; grant: () => void }[] = [];

function acquireStream(live: boolean): { granted: Promise<() => void>; cancel: () => void } {
  let entry: { live: boolean; grant: () => void } | null = null;
  const granted = new Promise<() => void>((resolve) => {
    const grant = () => {
      openStreams++;
      let released = false;
      resolve(() => {
        if (released) return;
        released = true;
        openStreams--;
        waitingStreams.shift()?.grant();
      });
    };
    if (openStreams < MAX_STREAMS) grant();
    else {
      entry = { live, grant };
      // Live jobs first, in arrival order; replays after them.
      const at = live ? waitingStreams.findIndex((w) => !w.live) : -1;
      if (at < 0) waitingStreams.push(entry);
      else waitingStreams.splice(at, 0, entry);
    }
  });
  const cancel = () => {
    const i = entry ? waitingStreams.indexOf(entry) : -1;
    if (i >= 0) waitingStreams.splice(i, 1);
  };
  return { granted, cancel };
}

const STATUS_LABELS: Record<string, string> = {
  queued: 'Queued',
  preparing: 'Preparing',
  training: 'Training',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
};

export function StatusBadge({ status }: { status: string }) {
  return (
    <span className={`badge status-${status}`} data-testid="status-badge">
      {STATUS_LABELS[status] ?? status}
    </span>
  );
}

/** One job: status, progress, position, loss, examples, times, the loss curve, and its actions. */
export function JobCard({ job, onCancel, actions, highlighted = false }: JobCardProps) {
  const terminal = isTerminal(job.status);
  const running = job.status === 'preparing' || job.status === 'training';

  // Live stream: running jobs (and the job just started here) until the stream says the job ended; finished
  // jobs replay their log once for the loss curve (kept afterwards: see useJobEvents).
  const wantLive = running || (highlighted && !terminal);
  const [release, setRelease] = useState<(() => void) | null>(null);
  const { events, state } = useJobEvents(actions?.subscribeToJob ?? noSubscribe, job.id, release !== null);
  const ended = state === 'ended';
  const needStream = !!actions && !ended && (wantLive || terminal);
  const liveRef = useRef(wantLive);
  liveRef.current = wantLive;
  useEffect(() => {
    if (!needStream) return;
    const { granted, cancel } = acquireStream(liveRef.current);
    let cancelled = false;
    let mine: (() => void) | null = null;
    void granted.then((r) => {
      if (cancelled) r();
      else {
        mine = r;
        setRelease(() => r);
      }
    });
    return () => {
      cancelled = true;
      cancel();
      mine?.();
      setRelease(null);
    };
  }, [needStream]);

  const steps = useMemo(() => events.filter((e): e is StepEvent => e.type === 'step'), [events]);
  const lastStep = steps.length > 0 ? steps[steps.length - 1] : null;
  // Warnings and errors of the log (the job's own error is shown once, above them).
  const notes = useMemo(
    () => events.filter((e) => (e.type === 'warning' || e.type === 'error') && e.message !== job.error).slice(-3),
    [events, job.error],
  );
  // The evaluation in progress (validation during training is drawn in the loss chart instead).
  const evalEvent = useMemo(
    () => [...events].reverse().find((e) => e.type === 'eval' && e.phase !== 'validation'),
    [events],
  );
  const validation = useMemo(
    () => events.map(validationPoint).filter((p): p is LossPoint => p !== null),
    [events],
  );
  const download = useMemo(() => [...events].reverse().find((e): e is DownloadEvent => e.type === 'download'), [events]);

  const [confirming, setConfirming] = useState(false);
  const [busy, setBusy] = useState<string | null>(null);
  const [actionError, setActionError] = useState<string | null>(null);
  const [panel, setPanel] = useState<'metrics' | 'artifacts' | null>(null);
  const [metrics, setMetrics] = useState<JobMetrics | null>(null);
  const [artifacts, setArtifacts] = useState<JobArtifacts | null>(null);

  const [now, setNow] = useState(Date.now());
  useEffect(() => {
    if (terminal || !job.started_at) return;
    const t = setInterval(() => setNow(Date.now()), 1000);
    return () => clearInterval(t);
  }, [terminal, job.started_at]);

  // An open artifacts panel follows the job: new checkpoints appear as they are written.
  useEffect(() => {
    if (panel !== 'artifacts' || !actions) return;
    void actions.getArtifacts(job.id).then((a) => a && setArtifacts(a));
  }, [panel, actions, job.id, job.status, job.current_step]);

  const run = async (name: string, fn: () => Promise<unknown>) => {
    setBusy(name);
    setActionError(null);
    const result = await fn();
    if (result === null || result === false) setActionError(actions?.lastError()?.message ?? `${name} failed`);
    setBusy(null);
    return result;
  };

  const togglePanel = async (which: 'metrics' | 'artifacts') => {
    if (!actions) return;
    if (panel === which) {
      setPanel(null);
      return;
    }
    setPanel(which);
    if (which === 'metrics') {
      const m = await run('Loading metrics', () => actions.getMetrics(job.id));
      if (m) setMetrics(m as JobMetrics);
    } else {
      const a = await run('Loading artifacts', () => actions.getArtifacts(job.id));
      if (a) setArtifacts(a as JobArtifacts);
    }
  };

  const progress = Math.max(0, Math.min(1, job.status === 'completed' ? 1 : job.progress || 0));
  const started = job.started_at ? Date.parse(job.started_at) : NaN;
  const finished = job.completed_at ? Date.parse(job.completed_at) : NaN;
  const elapsed = Number.isFinite(started) ? (Number.isFinite(finished) ? finished : now) - started : NaN;
  // Time left from the recent step rate (the last 20 steps), not from the elapsed time, which includes loading.
  let eta = NaN;
  if (running && steps.length >= 2 && job.total_steps > 0) {
    const a = steps[Math.max(0, steps.length - 20)];
    const b = steps[steps.length - 1];
    const dt = Date.parse(b.time) - Date.parse(a.time);
    if (dt > 0 && b.step > a.step) eta = ((job.total_steps - b.step) * dt) / (b.step - a.step);
  }
  const cfg = job.training_config;

  return (
    <article
      className={`job-card status-${job.status}${highlighted ? ' highlighted' : ''}`}
      data-testid="job-card"
      data-job-id={job.id}
      data-job-name={job.name}
      data-status={job.status}
      data-stream={state}
    >
      <header>
        <div>
          <h3>{job.name}</h3>
          <span className="muted small-text">
            <code>{job.id}</code> · {job.base_model} · {job.vertical || 'all verticals'}
            {job.owner ? ` · ${job.owner}` : ''}
            {cfg ? ` · ${cfg.method?.toUpperCase() ?? 'SFT'} · ${cfg.quantization}` : ''}
          </span>
        </div>
        <div className="header-right">
          {state === 'open' && !terminal && (
            <span className="live" title="Updated live from the job's event stream">
              ● live
            </span>
          )}
          {state === 'reconnecting' && !terminal && (
            <span className="reconnecting" title="The event stream dropped; reconnecting from the last event seen">
              reconnecting…
            </span>
          )}
          <StatusBadge status={job.status} />
        </div>
      </header>

      <div
        className="progress"
        role="progressbar"
        aria-label={`Progress of ${job.name}`}
        aria-valuemin={0}
        aria-valuemax={100}
        aria-valuenow={Math.round(progress * 100)}
        data-testid="progress"
        data-progress={progress.toFixed(4)}
      >
        <div className="progress-fill" style={{ width: `${progress * 100}%` }} />
        <span className="progress-text">{formatPercent(progress, 0)}</span>
      </div>

      <dl className="job-figures">
        <div>
          <dt>Epoch</dt>
          <dd data-testid="epoch">
            {job.current_epoch || 0}
            {cfg?.num_epochs ? ` / ${cfg.num_epochs}` : ''}
          </dd>
        </div>
        <div>
          <dt>Step</dt>
          <dd data-testid="step">
            {job.current_step}
            {job.total_steps ? ` / ${job.total_steps}` : ''}
          </dd>
        </div>
        <div>
          <dt>Loss</dt>
          <dd data-testid="loss">{formatNumber(job.loss)}</dd>
        </div>
        <div>
          <dt>Training examples</dt>
          <dd data-testid="examples">{formatNumber(job.training_examples)}</dd>
        </div>
        <div>
          <dt>Started</dt>
          <dd data-testid="started-at">{formatTime(job.started_at)}</dd>
        </div>
        <div>
          <dt>{job.status === 'cancelled' ? 'Cancelled' : job.status === 'failed' ? 'Failed' : 'Completed'}</dt>
          <dd data-testid="completed-at">{formatTime(job.completed_at)}</dd>
        </div>
        <div>
          <dt>{terminal ? 'Took' : 'Elapsed'}</dt>
          <dd>
            {formatDuration(elapsed)}
            {Number.isFinite(eta) ? ` · ~${formatDuration(eta)} left` : ''}
          </dd>
        </div>
        {lastStep && !terminal && (
          <div>
            <dt>Speed</dt>
            <dd>{formatNumber(lastStep.tokens_per_second, 3)} tokens/s</dd>
          </div>
        )}
      </dl>

      {job.status === 'preparing' && download && download.phase !== 'done' && download.bytes_total > 0 ? (
        <p className="muted" data-testid="download-progress">
          {download.phase === 'waiting' ? 'Waiting for the download of' : 'Downloading'} {download.model}:{' '}
          {formatBytes(download.bytes_done)} / {formatBytes(download.bytes_total)} ({download.files_done}/{download.files_total} files
          {download.bytes_per_second > 0 ? `, ${formatBytes(download.bytes_per_second)}/s` : ''}
          {download.eta_seconds != null ? `, about ${formatDuration(download.eta_seconds * 1000)} left` : ''})
          <progress max={download.bytes_total} value={download.bytes_done} />
        </p>
      ) : (
        job.status === 'preparing' && <p className="muted">Loading the base model and preparing the data…</p>
      )}
      {evalEvent && evalEvent.type === 'eval' && !terminal && evalEvent.total > 0 && (
        <p className="muted">
          Evaluating {evalEvent.phase}: {evalEvent.done} / {evalEvent.total}
        </p>
      )}
      {job.error && (
        <p className="error-text" data-testid="job-error">
          {job.error}
        </p>
      )}
      {notes.length > 0 && (
        <ul className="notes">
          {notes.map((n) => (
            <li key={n.sequence} className={n.type}>
              {n.message}
            </li>
          ))}
        </ul>
      )}

      {actions && (steps.length > 0 || running) && <LossChart points={steps.map((s) => ({ step: s.step, loss: s.loss }))} validation={validation} totalSteps={job.total_steps} />}

      <footer className="actions">
        {actions && job.status === 'queued' && !highlighted && (
          <button type="button" disabled={busy !== null} onClick={() => void run('Start', () => actions.startJob(job.id))}>
            Start
          </button>
        )}
        {onCancel && !terminal && !confirming && (
          <button type="button" className="danger" disabled={busy !== null} onClick={() => setConfirming(true)}>
            Cancel
          </button>
        )}
        {onCancel && !terminal && confirming && (
          <span className="confirm" data-testid="cancel-confirm">
            Cancel “{job.name}”? A cancelled job cannot be resumed.{' '}
            <button
              type="button"
              className="danger"
              disabled={busy !== null}
              onClick={async () => {
                await run('Cancel', async () => {
                  const r = await onCancel();
                  return r === undefined ? true : r;
                });
                setConfirming(false);
              }}
            >
              Yes, cancel job
            </button>{' '}
            <button type="button" onClick={() => setConfirming(false)}>
              Keep it
            </button>
          </span>
        )}
        {actions && job.status === 'completed' && (
          <button type="button" aria-pressed={panel === 'metrics'} onClick={() => void togglePanel('metrics')}>
            {panel === 'metrics' ? 'Hide Metrics' : 'View Metrics'}
          </button>
        )}
        {actions && job.status !== 'queued' && (
          <button type="button" aria-pressed={panel === 'artifacts'} onClick={() => void togglePanel('artifacts')}>
            {panel === 'artifacts' ? 'Hide Artifacts' : 'View Artifacts'}
          </button>
        )}
        {busy && <span className="muted">{busy}…</span>}
      </footer>
      {actionError && (
        <p className="error-text" role="alert">
          {actionError}
        </p>
      )}
      {panel === 'metrics' && metrics && <MetricsPanel metrics={metrics} />}
      {panel === 'artifacts' && artifacts && actions && (
        <ArtifactsPanel artifacts={artifacts} onDownload={(name) => actions.downloadArtifact(job.id, name)} />
      )}
    </article>
  );
}

function noSubscribe(): () => void {
  return () => {};
}
