/**
 * An in-memory stand-in for the gateway's REST API (the contract the real one implements), for the hook's unit
 * tests. The real gateway, with the real services behind it, is exercised by tests/browser/.
 */
import type { BaseModel, Job, JobStatus } from '../api/types';

export interface RecordedCall {
  method: string;
  path: string;
  query: URLSearchParams;
  headers: Record<string, string>;
  body: unknown;
}

export function makeJob(over: Partial<Job> = {}): Job {
  return {
    id: 'job-1',
    name: 'job one',
    vertical: 'legal',
    base_model: 'tiny/model',
    status: 'queued',
    progress: 0,
    current_epoch: 0,
    current_step: 0,
    total_steps: 0,
    loss: null,
    training_examples: 0,
    created_at: '2026-01-01T00:00:00Z',
    started_at: null,
    completed_at: null,
    error: null,
    owner: null,
    training_config: {
      lora_r: 8,
      lora_alpha: 16,
      lora_dropout: 0.05,
      num_epochs: 3,
      batch_size: 4,
      learning_rate: 2e-4,
      max_seq_length: 2048,
      quantization: '4bit',
      gradient_checkpointing: true,
      dataset_path: null,
      method: 'sft',
      beta: 0.1,
      min_confidence: 0.7,
      min_confidence_diff: 0,
      target_modules: ['q_proj', 'v_proj'],
      max_steps: null,
      seed: 42,
      checkpoint_every_steps: null,
      gradient_accumulation_steps: 1,
      lr_scheduler_type: 'linear',
      warmup_ratio: 0,
      warmup_steps: 0,
      weight_decay: 0,
      max_grad_norm: 1,
      validation_split: 0,
      eval_every_steps: null,
      early_stopping_patience: null,
      early_stopping_min_delta: 0,
      save_total_limit: null,
      init_from_job: null,
      init_from_checkpoint: null,
      num_workers: 1,
    },
    ...over,
  };
}

export const MODEL: BaseModel = {
  id: 'tiny/model',
  name: 'Tiny',
  provider: 'HuggingFace',
  parameters: 1_000_000,
  size: '1M',
  verticals: ['legal'],
  capabilities: ['debate'],
  recommended: true,
  available: true,
  unavailable_reason: '',
  max_seq_length: 512,
  description: 'A tiny test model',
  downloaded: true,
};

const STATUSES: JobStatus[] = ['queued', 'preparing', 'training', 'completed', 'failed', 'cancelled'];

export class FakeGateway {
  jobs: Job[] = [];
  calls: RecordedCall[] = [];
  /** When set, every request fails like an unreachable host. */
  down = false;
  /** Backends the health check reports as not serving. */
  unhealthy: string[] = [];
  /** When set, every /api request without this bearer token is a 401. */
  token: string | null = null;
  /** With a token set: /healthz needs it too. */
  guardHealth = false;
  /** Field errors to answer the next POST /jobs with (422). */
  nextCreateErrors: { field: string; reason: string }[] | null = null;
  private seq = 1;

  fetch = async (input: RequestInfo | URL, init: RequestInit = {}): Promise<Response> => {
    const url = new URL(String(input), 'http://gateway');
    const method = (init.method ?? 'GET').toUpperCase();
    const headers = Object.fromEntries(Object.entries((init.headers as Record<string, string>) ?? {}).map(([k, v]) => [k.toLowerCase(), v]));
    const body = typeof init.body === 'string' ? JSON.parse(init.body) : undefined;
    this.calls.push({ method, path: url.pathname, query: url.searchParams, headers, body });
    if (this.down) throw new TypeError('Failed to fetch');
    const json = (status: number, data: unknown) => new Response(JSON.stringify(data), { status, headers: { 'Content-Type': 'application/json' } });
    const path = url.pathname;

    if (path === '/healthz' && !(this.guardHealth && this.token && headers.authorization !== `Bearer ${this.token}`)) {
      const services: Record<string, string> = { gateway: 'SERVING', exporter: 'SERVING', trainer: 'SERVING' };
      for (const s of this.unhealthy) services[s] = 'UNAVAILABLE';
      const ok = this.unhealthy.length === 0;
      return json(ok ? 200 : 503, { status: ok ? 'ok' : 'degraded', services });
    }
    if (this.token && headers.authorization !== `Bearer ${this.token}`) {
      return json(401, { detail: 'missing or wrong API token', code: 'UNAUTHENTICATED' });
    }
    if (this.unhealthy.includes('trainer') && path.startsWith('/api/training/jobs')) {
      return json(503, { detail: 'trainer unavailable', code: 'UNAVAILABLE' });
    }
    if (path === '/api/training/jobs' && method === 'GET') {
      const status = url.searchParams.get('status');
      const vertical = url.searchParams.get('vertical');
      const jobs = this.jobs.filter((j) => (!status || j.status === status) && (!vertical || j.vertical === vertical));
      return json(200, { jobs, total: jobs.length });
    }
    if (path === '/api/training/jobs/counts') {
      const c: Record<string, number> = Object.fromEntries(STATUSES.map((s) => [s, this.jobs.filter((j) => j.status === s).length]));
      return json(200, { ...c, total: this.jobs.length, running: c.preparing + c.training });
    }
    if (path === '/api/training/jobs' && method === 'POST') {
      if (this.nextCreateErrors) {
        const errors = this.nextCreateErrors;
        this.nextCreateErrors = null;
        return json(422, { detail: errors.map((e) => `${e.field}: ${e.reason}`).join('; '), code: 'INVALID_ARGUMENT', errors });
      }
      const b = body as { name: string; vertical?: string; base_model: string };
      if (this.jobs.some((j) => j.name === b.name)) return json(409, { detail: `a job named ${b.name} exists`, code: 'ALREADY_EXISTS' });
      const job = makeJob({ id: `job-${++this.seq}`, name: b.name, vertical: b.vertical ?? '', base_model: b.base_model });
      this.jobs.unshift(job);
      return json(201, job);
    }
    let m = path.match(/^\/api\/training\/jobs\/([^/]+)(\/.*)?$/);
    if (m) {
      const job = this.jobs.find((j) => j.id === decodeURIComponent(m![1]));
      if (!job) return json(404, { detail: 'no such job', code: 'NOT_FOUND' });
      const rest = m[2] ?? '';
      if (rest === '/start' && method === 'POST') {
        if (job.status !== 'queued') return json(409, { detail: `job is ${job.status}`, code: 'FAILED_PRECONDITION' });
        job.status = 'preparing';
        return json(200, job);
      }
      if (rest === '' && method === 'DELETE') {
        job.status = 'cancelled';
        job.completed_at = '2026-01-01T00:05:00Z';
        return json(200, job);
      }
      if (rest === '' && method === 'GET') return json(200, job);
      if (rest === '/metrics') {
        if (job.status !== 'completed') return json(409, { detail: `job is ${job.status}`, code: 'FAILED_PRECONDITION' });
        return json(200, { job_id: job.id, status: job.status, final_loss: 0.5 });
      }
      if (rest === '/artifacts') return json(200, { job_id: job.id, checkpoint_path: 'adapter', data_directory: 'data', files: [{ name: 'adapter/adapter_config.json', size_bytes: 10, type: 'config' }] });
      m = rest.match(/^\/artifacts\/(.+)$/);
      if (m) return new Response('{"r": 8}', { status: 200 });
    }
    if (path === '/api/training/models') return json(200, { models: [MODEL] });
    if (path === '/api/training/stats') {
      return json(200, { available_exporters: ['sft', 'dpo', 'gauntlet'], export_directory: '/x', exported_files: [], sft_available: true, debates_per_vertical: { legal: 3 }, total_debates: 3, total_gauntlet_runs: 1 });
    }
    m = path.match(/^\/api\/training\/export\/(sft|dpo|gauntlet)$/);
    if (m) {
      if (method === 'POST') return json(200, { name: `${m[1]}.jsonl`, size_bytes: 12, created_at: null, record_count: 2 });
      const records = [{ instruction: 'i', input: 'a', output: 'b', metadata: { debate_id: 'd1', consensus_confidence: 0.9, rounds: 2, vertical: 'legal' } }];
      if (url.searchParams.get('format') === 'jsonl') return new Response(records.map((r) => JSON.stringify(r)).join('\n') + '\n', { status: 200 });
      return json(200, records);
    }
    return json(404, { detail: 'Not Found' });
  };

  callsTo(method: string, path: string): RecordedCall[] {
    return this.calls.filter((c) => c.method === method && c.path === path);
  }
}

/** A controllable EventSource: tests push messages and errors into the instances the code under test made. */
export class FakeEventSource {
  static instances: FakeEventSource[] = [];
  static readonly CONNECTING = 0;
  static readonly OPEN = 1;
  static readonly CLOSED = 2;
  url: string;
  readyState = 0;
  onerror: ((e: Event) => void) | null = null;
  private listeners = new Map<string, ((e: Event) => void)[]>();

  constructor(url: string) {
    this.url = url;
    FakeEventSource.instances.push(this);
  }

  addEventListener(type: string, fn: (e: Event) => void) {
    this.listeners.set(type, [...(this.listeners.get(type) ?? []), fn]);
  }

  close() {
    this.readyState = 2;
  }

  /** Delivers one SSE message as the browser would. */
  emit(type: string, data: unknown, id?: number) {
    this.readyState = 1;
    const e = new MessageEvent(type, { data: typeof data === 'string' ? data : JSON.stringify(data), lastEventId: id === undefined ? '' : String(id) });
    for (const fn of this.listeners.get(type) ?? []) fn(e);
  }

  /** An error: `closed` as after an HTTP error (no browser retry), otherwise a dropped connection. */
  fail(closed: boolean) {
    this.readyState = closed ? 2 : 0;
    this.onerror?.(new Event('error'));
  }

  static reset() {
    FakeEventSource.instances = [];
  }
}
