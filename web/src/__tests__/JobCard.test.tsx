import { act, render, screen } from '@testing-library/react';
import { beforeEach, describe, expect, it } from 'vitest';
import type { Job } from '../api/types';
import { JobCard, type JobCardActions } from '../components/JobCard';
import { useFineTuning } from '../hooks/useFineTuning';
import { FakeEventSource, FakeGateway, makeJob } from './fakeGateway';

let gw: FakeGateway;

function Cards({ jobs }: { jobs: Job[] }) {
  const ft = useFineTuning({ autoLoad: false, fetch: gw.fetch as typeof fetch, EventSourceImpl: FakeEventSource as unknown as typeof EventSource });
  const actions: JobCardActions = {
    startJob: ft.startJob,
    getMetrics: ft.getMetrics,
    getArtifacts: ft.getArtifacts,
    downloadArtifact: ft.downloadArtifact,
    subscribeToJob: ft.subscribeToJob,
    lastError: ft.lastError,
  };
  return (
    <>
      {jobs.map((j) => (
        <JobCard key={j.id} job={j} actions={actions} onCancel={() => ft.cancelJob(j.id)} />
      ))}
    </>
  );
}

const flush = () => act(async () => {
  await new Promise((r) => setTimeout(r, 0));
});

beforeEach(() => {
  gw = new FakeGateway();
  FakeEventSource.reset();
});

describe('JobCard', () => {
  it('shows the figures of a job and draws its loss curve from the step events', async () => {
    render(<Cards jobs={[makeJob({ id: 'job-a', name: 'alpha', status: 'training', current_step: 2, total_steps: 10, progress: 0.2, loss: 1.25, training_examples: 8 })]} />);
    await flush();
    expect(screen.getByTestId('step').textContent).toBe('2 / 10');
    expect(screen.getByTestId('loss').textContent).toBe('1.25');
    expect(screen.getByTestId('progress').getAttribute('aria-valuenow')).toBe('20');
    const es = FakeEventSource.instances[0];
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-a', status: 'training' }));
      es.emit('step', { sequence: 1, time: '2026-01-01T00:00:01Z', type: 'step', message: '', epoch: 0.1, step: 1, total_steps: 10, loss: 2, learning_rate: 1e-4, examples_seen: 4, tokens_per_second: 50, progress: 0.1, extra: {} }, 1);
      es.emit('step', { sequence: 2, time: '2026-01-01T00:00:02Z', type: 'step', message: '', epoch: 0.2, step: 2, total_steps: 10, loss: 1.25, learning_rate: 1e-4, examples_seen: 8, tokens_per_second: 50, progress: 0.2, extra: {} }, 2);
    });
    expect(screen.getByTestId('loss-chart').getAttribute('data-points')).toBe('2');
    expect(screen.getByText('● live')).toBeTruthy();
  });

  it('draws the validation loss beside the training loss and marks the best', async () => {
    render(<Cards jobs={[makeJob({ id: 'job-v', name: 'val', status: 'training', current_step: 4, total_steps: 10 })]} />);
    await flush();
    const es = FakeEventSource.instances[0];
    const step = (n: number, loss: number) => ({ sequence: n * 2 - 1, time: '2026-01-01T00:00:01Z', type: 'step', message: '', epoch: n / 10, step: n, total_steps: 10, loss, learning_rate: 1e-4, examples_seen: n, tokens_per_second: 50, progress: n / 10, extra: {} });
    const val = (n: number, loss: number) => ({ sequence: n * 2, time: '2026-01-01T00:00:02Z', type: 'eval', message: '', phase: 'validation', done: n, total: 10, metrics: { step: n, validation_loss: loss, best_step: 1 } });
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-v', status: 'training' }));
      es.emit('step', step(1, 2.5), 1);
      es.emit('eval', val(1, 2.0), 2);
      es.emit('step', step(2, 2.1), 3);
      es.emit('eval', val(2, 2.2), 4);
    });
    const chart = screen.getByTestId('loss-chart');
    expect(chart.getAttribute('data-points')).toBe('2');
    expect(chart.getAttribute('data-validation-points')).toBe('2');
    expect(screen.getByTestId('validation-line')).toBeTruthy();
    expect(screen.getByTestId('validation-caption').textContent).toMatch(/validation 2\.2 at step 2, best 2 at step 1/);
    // Validation is drawn, not shown as an evaluation in progress.
    expect(screen.queryByText(/Evaluating validation/)).toBeNull();
  });

  it('shows the base model download while the job prepares', async () => {
    render(<Cards jobs={[makeJob({ id: 'job-d', name: 'hub', status: 'preparing' })]} />);
    await flush();
    const es = FakeEventSource.instances[0];
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-d', status: 'preparing' }));
      es.emit('download', { sequence: 1, time: '2026-01-01T00:00:01Z', type: 'download', message: '', model: 'org/m', phase: 'downloading', files_done: 2, files_total: 6, bytes_done: 1048576, bytes_total: 4194304, bytes_per_second: 524288, eta_seconds: 6, file: 'model.safetensors' }, 1);
    });
    const line = screen.getByTestId('download-progress');
    expect(line.textContent).toMatch(/Downloading org\/m/);
    expect(line.textContent).toMatch(/2\/6 files/);
    expect(line.querySelector('progress')?.getAttribute('value')).toBe('1048576');
  });

  it('asks before cancelling', async () => {
    gw.jobs = [makeJob({ id: 'job-a', status: 'training' })];
    render(<Cards jobs={gw.jobs} />);
    await flush();
    act(() => screen.getByRole('button', { name: 'Cancel' }).click());
    expect(screen.getByTestId('cancel-confirm').textContent).toMatch(/cannot be resumed/);
    expect(gw.callsTo('DELETE', '/api/training/jobs/job-a')).toHaveLength(0);
    await act(async () => screen.getByRole('button', { name: 'Yes, cancel job' }).click());
    await flush();
    expect(gw.callsTo('DELETE', '/api/training/jobs/job-a')).toHaveLength(1);
  });

  it('keeps at most three event streams open, live jobs first', async () => {
    const finished = [1, 2, 3].map((i) => makeJob({ id: `job-done-${i}`, status: 'completed', progress: 1 }));
    const running = [1, 2].map((i) => makeJob({ id: `job-run-${i}`, status: 'training' }));
    render(<Cards jobs={[...finished, ...running]} />);
    await flush();
    const open = () => FakeEventSource.instances.filter((e) => e.readyState !== 2).map((e) => e.url.split('/')[4]);
    // Three finished jobs asked first and got the three slots; the live ones wait.
    expect(open()).toEqual(['job-done-1', 'job-done-2', 'job-done-3']);
    act(() => FakeEventSource.instances[0].emit('end', {}));
    await flush();
    // The freed slot goes to a live job before anything else.
    expect(open()).toEqual(['job-done-2', 'job-done-3', 'job-run-1']);
    act(() => FakeEventSource.instances[1].emit('end', {}));
    await flush();
    expect(open()).toEqual(['job-done-3', 'job-run-1', 'job-run-2']);
  });
});
