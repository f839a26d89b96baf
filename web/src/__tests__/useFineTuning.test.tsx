import { act, renderHook, waitFor } from '@testing-library/react';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { TOKEN_STORAGE_KEY } from '../api/client';
import { useFineTuning, useJobEvents } from '../hooks/useFineTuning';
import { FakeEventSource, FakeGateway, MODEL, makeJob } from './fakeGateway';

let gw: FakeGateway;

function setup(options: Parameters<typeof useFineTuning>[0] = {}) {
  return renderHook(() =>
    useFineTuning({ pollInterval: 0, retryInterval: 50, fetch: gw.fetch as typeof fetch, EventSourceImpl: FakeEventSource as unknown as typeof EventSource, ...options }),
  );
}

beforeEach(() => {
  gw = new FakeGateway();
  FakeEventSource.reset();
  localStorage.clear();
});

afterEach(() => {
  vi.useRealTimers();
});

describe('loading', () => {
  it('loads jobs, counts, models and data stats on mount', async () => {
    gw.jobs = [makeJob({ id: 'job-a', status: 'training' }), makeJob({ id: 'job-b', status: 'preparing' }), makeJob({ id: 'job-c', status: 'completed' })];
    const { result } = setup();
    expect(result.current.loading).toBe(true);
    await waitFor(() => expect(result.current.loading).toBe(false));
    expect(result.current.jobs.map((j) => j.id)).toEqual(['job-a', 'job-b', 'job-c']);
    expect(result.current.total).toBe(3);
    // The guide's stats: running = preparing + training.
    expect(result.current.stats).toMatchObject({ running: 2, queued: 0, completed: 1, failed: 0, training: 1, preparing: 1 });
    await waitFor(() => expect(result.current.models).toEqual([MODEL]));
    await waitFor(() => expect(result.current.trainingStats?.total_debates).toBe(3));
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    expect(result.current.error).toBeNull();
  });

  it('loads nothing without autoLoad', async () => {
    const { result } = setup({ autoLoad: false });
    await new Promise((r) => setTimeout(r, 20));
    expect(gw.calls).toHaveLength(0);
    expect(result.current.loading).toBe(false);
  });

  it('polls jobs and counts every pollInterval', async () => {
    const { result } = setup({ pollInterval: 40 });
    await waitFor(() => expect(result.current.loading).toBe(false));
    const before = gw.callsTo('GET', '/api/training/jobs').length;
    gw.jobs = [makeJob({ id: 'job-new', status: 'queued' })];
    await waitFor(() => expect(result.current.jobs.map((j) => j.id)).toEqual(['job-new']));
    expect(gw.callsTo('GET', '/api/training/jobs').length).toBeGreaterThan(before);
    expect(result.current.stats.queued).toBe(1);
  });

  it('passes the filters to the server and replaces the list', async () => {
    gw.jobs = [makeJob({ id: 'job-a', status: 'completed', vertical: 'legal' }), makeJob({ id: 'job-b', status: 'failed', vertical: 'code' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.jobs).toHaveLength(2));
    act(() => result.current.setFilters({ status: 'failed' }));
    await waitFor(() => expect(result.current.jobs.map((j) => j.id)).toEqual(['job-b']));
    const last = gw.callsTo('GET', '/api/training/jobs').at(-1)!;
    expect(last.query.get('status')).toBe('failed');
    expect(last.query.has('vertical')).toBe(false);
  });
});

describe('actions', () => {
  it('creates and starts a job as the guide shows', async () => {
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    let job: Awaited<ReturnType<typeof result.current.createJob>> = null;
    await act(async () => {
      job = await result.current.createJob({
        name: 'my_model_v1',
        vertical: 'general',
        base_model: 'meta-llama/Llama-2-7b',
        training_config: { lora_r: 8, lora_alpha: 16, lora_dropout: 0.05, num_epochs: 3, batch_size: 4, learning_rate: 2e-4, max_seq_length: 2048, quantization: '4bit', gradient_checkpointing: true },
      });
    });
    expect(job).not.toBeNull();
    const post = gw.callsTo('POST', '/api/training/jobs')[0];
    expect(post.body).toMatchObject({ name: 'my_model_v1', base_model: 'meta-llama/Llama-2-7b', training_config: { lora_r: 8, quantization: '4bit' } });
    expect(post.headers['content-type']).toBe('application/json');
    expect(result.current.jobs[0].name).toBe('my_model_v1');
    await act(async () => {
      await result.current.startJob(job!.id);
    });
    expect(gw.callsTo('POST', `/api/training/jobs/${job!.id}/start`)).toHaveLength(1);
    expect(result.current.jobs[0].status).toBe('preparing');
    await waitFor(() => expect(result.current.stats.running).toBe(1));
  });

  it('resolves null on a 422 and keeps the field errors', async () => {
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    gw.nextCreateErrors = [{ field: 'training_config.lora_r', reason: 'must be greater than 0' }];
    let job: unknown = 'unset';
    await act(async () => {
      job = await result.current.createJob({ name: 'x', base_model: 'tiny/model', training_config: { lora_r: 0 } });
    });
    expect(job).toBeNull();
    // Synchronously, right after the call, and in state.
    expect(result.current.lastError()?.fieldErrors).toEqual([{ field: 'training_config.lora_r', reason: 'must be greater than 0' }]);
    expect(result.current.error?.status).toBe(422);
    expect(result.current.error?.code).toBe('INVALID_ARGUMENT');
    expect(result.current.error?.action).toBe('createJob');
    expect(result.current.jobs).toHaveLength(0);
  });

  it('reports a duplicate name as ALREADY_EXISTS', async () => {
    gw.jobs = [makeJob({ name: 'taken' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    await act(async () => {
      expect(await result.current.createJob({ name: 'taken', base_model: 'tiny/model' })).toBeNull();
    });
    expect(result.current.error?.status).toBe(409);
    expect(result.current.error?.code).toBe('ALREADY_EXISTS');
  });

  it('cancels a job and updates the list and counts', async () => {
    gw.jobs = [makeJob({ id: 'job-a', status: 'training' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.stats.running).toBe(1));
    await act(async () => {
      const j = await result.current.cancelJob('job-a');
      expect(j?.status).toBe('cancelled');
    });
    expect(gw.callsTo('DELETE', '/api/training/jobs/job-a')).toHaveLength(1);
    expect(result.current.jobs[0].status).toBe('cancelled');
    await waitFor(() => expect(result.current.stats).toMatchObject({ running: 0, cancelled: 1 }));
  });

  it('gets metrics and artifacts, and a 409 for metrics of a job that did not complete', async () => {
    gw.jobs = [makeJob({ id: 'job-done', status: 'completed' }), makeJob({ id: 'job-run', status: 'training' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    await act(async () => {
      expect((await result.current.getMetrics('job-done'))?.final_loss).toBe(0.5);
      expect((await result.current.getArtifacts('job-done'))?.files[0].name).toBe('adapter/adapter_config.json');
      expect(await result.current.getMetrics('job-run')).toBeNull();
    });
    expect(result.current.error?.status).toBe(409);
  });

  it('exports with the guide filters', async () => {
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    await act(async () => {
      const records = await result.current.exportSFT({ min_confidence: 0.7, limit: 1000 });
      expect(records?.[0].metadata.debate_id).toBe('d1');
      const jsonl = await result.current.exportJsonl('sft', { limit: 5 });
      expect(jsonl?.trim().split('\n')).toHaveLength(1);
      expect((await result.current.writeExport('dpo', { min_confidence_diff: 0.3 }))?.record_count).toBe(2);
      await result.current.exportDPO({ min_confidence_diff: 0.3, limit: 1000 });
      await result.current.exportGauntlet({ attack_type: 'prompt_injection' });
    });
    const sft = gw.callsTo('GET', '/api/training/export/sft');
    expect(Object.fromEntries(sft[0].query)).toEqual({ min_confidence: '0.7', limit: '1000' });
    expect(Object.fromEntries(sft[1].query)).toEqual({ limit: '5', format: 'jsonl' });
    expect(gw.callsTo('POST', '/api/training/export/dpo')[0].body).toEqual({ min_confidence_diff: 0.3 });
    expect(Object.fromEntries(gw.callsTo('GET', '/api/training/export/dpo')[0].query)).toEqual({ min_confidence_diff: '0.3', limit: '1000' });
    expect(Object.fromEntries(gw.callsTo('GET', '/api/training/export/gauntlet')[0].query)).toEqual({ attack_type: 'prompt_injection' });
  });
});

describe('connection', () => {
  it('goes offline when the gateway cannot be reached and recovers by itself', async () => {
    gw.jobs = [makeJob({ id: 'job-a' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    gw.down = true;
    await act(async () => {
      await result.current.refresh();
    });
    await waitFor(() => expect(result.current.connection.status).toBe('offline'));
    expect(result.current.connection.message).toMatch(/Cannot reach the gateway/);
    expect(result.current.error?.code).toBe('NETWORK');
    // The last jobs seen stay on screen.
    expect(result.current.jobs.map((j) => j.id)).toEqual(['job-a']);
    gw.jobs.push(makeJob({ id: 'job-b', name: 'two' }));
    gw.down = false;
    // Health is retried every retryInterval; once it passes, everything reloads.
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    await waitFor(() => expect(result.current.jobs).toHaveLength(2));
    await waitFor(() => expect(result.current.error).toBeNull());
  });

  it('says which backend is down (healthz 503) and recovers', async () => {
    const { result } = setup();
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    gw.unhealthy = ['trainer'];
    await act(async () => {
      await result.current.refresh();
    });
    await waitFor(() => expect(result.current.connection.status).toBe('degraded'));
    expect(result.current.connection.services.trainer).toBe('UNAVAILABLE');
    expect(result.current.connection.message).toMatch(/trainer/);
    expect(result.current.error?.status).toBe(503);
    gw.unhealthy = [];
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    await waitFor(() => expect(result.current.error).toBeNull());
  });
});

describe('token', () => {
  it('sends the saved token and reports a 401', async () => {
    gw.token = 'secret';
    const { result } = setup();
    await waitFor(() => expect(result.current.unauthorized).toBe(true));
    expect(result.current.error?.status).toBe(401);
    act(() => result.current.setToken('secret'));
    expect(localStorage.getItem(TOKEN_STORAGE_KEY)).toBe('secret');
    await waitFor(() => expect(result.current.unauthorized).toBe(false));
    await waitFor(() => expect(result.current.models).toHaveLength(1));
    expect(gw.callsTo('GET', '/api/training/models').at(-1)!.headers.authorization).toBe('Bearer secret');
  });

  it('treats a 401 from /healthz as a token to ask for, not as the gateway being down', async () => {
    gw.token = 'secret';
    gw.guardHealth = true;
    const { result } = setup();
    await waitFor(() => expect(result.current.unauthorized).toBe(true));
    await new Promise((r) => setTimeout(r, 30));
    expect(result.current.connection.status).not.toBe('offline');
    act(() => result.current.setToken('secret'));
    await waitFor(() => expect(result.current.connection.status).toBe('ok'));
    expect(gw.callsTo('GET', '/healthz').at(-1)!.headers.authorization).toBe('Bearer secret');
  });

  it('reads the token from localStorage, or takes it as an option', async () => {
    localStorage.setItem(TOKEN_STORAGE_KEY, 'saved');
    const a = setup();
    await waitFor(() => expect(a.result.current.loading).toBe(false));
    expect(gw.callsTo('GET', '/api/training/jobs')[0].headers.authorization).toBe('Bearer saved');
    a.unmount();
    gw.calls = [];
    const b = setup({ token: 'given' });
    await waitFor(() => expect(b.result.current.loading).toBe(false));
    expect(gw.callsTo('GET', '/api/training/jobs')[0].headers.authorization).toBe('Bearer given');
  });

  it('sends no Authorization header without a token', async () => {
    const { result } = setup();
    await waitFor(() => expect(result.current.loading).toBe(false));
    expect(gw.calls.every((c) => !('authorization' in c.headers))).toBe(true);
  });
});

describe('live events', () => {
  it('applies the snapshot, steps and status changes to jobs, each event once', async () => {
    gw.jobs = [makeJob({ id: 'job-a', status: 'queued' })];
    const { result } = setup();
    await waitFor(() => expect(result.current.jobs).toHaveLength(1));
    const seen: number[] = [];
    let unsubscribe = () => {};
    act(() => {
      unsubscribe = result.current.subscribeToJob('job-a', { onEvent: (e) => seen.push(e.sequence) });
    });
    const es = FakeEventSource.instances[0];
    expect(es.url).toBe('/api/training/jobs/job-a/events');
    gw.jobs[0].status = 'training';
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-a', status: 'preparing' }));
      es.emit('status', { sequence: 1, time: '2026-01-01T00:00:01Z', type: 'status', message: '', from_status: 'preparing', to_status: 'training', reason: '' }, 1);
      es.emit('step', { sequence: 2, time: '2026-01-01T00:00:02Z', type: 'step', message: '', epoch: 0.5, step: 3, total_steps: 12, loss: 2.5, learning_rate: 2e-4, examples_seen: 12, tokens_per_second: 100, progress: 0.25, extra: {} }, 2);
      // A replay after a reconnection: not delivered twice.
      es.emit('step', { sequence: 2, time: '2026-01-01T00:00:02Z', type: 'step', message: '', epoch: 0.5, step: 3, total_steps: 12, loss: 2.5, learning_rate: 2e-4, examples_seen: 12, tokens_per_second: 100, progress: 0.25, extra: {} }, 2);
    });
    expect(seen).toEqual([1, 2]);
    const job = result.current.jobs[0];
    expect(job).toMatchObject({ status: 'training', current_step: 3, total_steps: 12, loss: 2.5, progress: 0.25, training_examples: 12, current_epoch: 1 });
    // A status change refreshes the counts from the server.
    await waitFor(() => expect(result.current.stats.training).toBe(1));
    unsubscribe();
    expect(es.readyState).toBe(2);
  });

  it('reconnects after an HTTP error with ?after= the last sequence seen, and stops at end', async () => {
    const { result } = setup({ autoLoad: false });
    const states: string[] = [];
    let ended = false;
    act(() => {
      result.current.subscribeToJob('job-a', { onStateChange: (s) => states.push(s), onEnd: () => (ended = true) }, { retryMs: 10 });
    });
    const first = FakeEventSource.instances[0];
    act(() => {
      first.emit('snapshot', makeJob({ id: 'job-a', status: 'training' }));
      first.emit('log', { sequence: 7, time: 't', type: 'log', message: 'hello' }, 7);
      first.fail(true); // e.g. 503 while the trainer is down: the browser would not retry by itself
    });
    expect(states).toContain('reconnecting');
    await waitFor(() => expect(FakeEventSource.instances).toHaveLength(2));
    const second = FakeEventSource.instances[1];
    expect(second.url).toBe('/api/training/jobs/job-a/events?after=7');
    act(() => {
      second.emit('snapshot', makeJob({ id: 'job-a', status: 'completed' }));
      second.emit('end', { job_id: 'job-a', status: 'completed' });
    });
    expect(ended).toBe(true);
    expect(states.at(-1)).toBe('ended');
    expect(second.readyState).toBe(2);
  });

  it('leaves a dropped connection to the browser, which resends Last-Event-ID', async () => {
    const { result } = setup({ autoLoad: false });
    act(() => {
      result.current.subscribeToJob('job-a', {}, { retryMs: 10 });
    });
    act(() => FakeEventSource.instances[0].fail(false));
    await new Promise((r) => setTimeout(r, 40));
    expect(FakeEventSource.instances).toHaveLength(1);
  });

  it('useJobEvents collects the event log for a loss curve', async () => {
    const { result } = renderHook(() => {
      const ft = useFineTuning({ autoLoad: false, fetch: gw.fetch as typeof fetch, EventSourceImpl: FakeEventSource as unknown as typeof EventSource });
      return useJobEvents(ft.subscribeToJob, 'job-a');
    });
    const es = FakeEventSource.instances[0];
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-a', status: 'training' }));
      for (let i = 1; i <= 3; i++) {
        es.emit('step', { sequence: i, time: 't', type: 'step', message: '', epoch: i / 3, step: i, total_steps: 3, loss: 3 - i * 0.5, learning_rate: 1e-4, examples_seen: i * 4, tokens_per_second: 1, progress: i / 3, extra: {} }, i);
      }
    });
    expect(result.current.events.map((e) => (e.type === 'step' ? e.loss : null))).toEqual([2.5, 2, 1.5]);
    expect(result.current.job?.current_step).toBe(3);
    expect(result.current.state).toBe('open');
  });

  it('keeps the log of an ended stream: showing the job again replays nothing', async () => {
    const hook = renderHook(() => useFineTuning({ autoLoad: false, fetch: gw.fetch as typeof fetch, EventSourceImpl: FakeEventSource as unknown as typeof EventSource }));
    const subscribe = hook.result.current.subscribeToJob;
    const first = renderHook(() => useJobEvents(subscribe, 'job-done'));
    const es = FakeEventSource.instances[0];
    act(() => {
      es.emit('snapshot', makeJob({ id: 'job-done', status: 'completed' }));
      es.emit('step', { sequence: 1, time: 't', type: 'step', message: '', epoch: 1, step: 1, total_steps: 1, loss: 1.5, learning_rate: 1e-4, examples_seen: 4, tokens_per_second: 1, progress: 1, extra: {} }, 1);
      es.emit('end', { job_id: 'job-done', status: 'completed' });
    });
    expect(first.result.current.state).toBe('ended');
    first.unmount();
    const again = renderHook(() => useJobEvents(subscribe, 'job-done'));
    expect(again.result.current.state).toBe('ended');
    expect(again.result.current.events).toHaveLength(1);
    expect(FakeEventSource.instances).toHaveLength(1);
  });
});
