/**
 * The playground's calls: side-by-side generation (base vs adapter, same prompt, same seed) streamed as
 * Server-Sent Events over a POST (read with fetch, since EventSource only GETs), held-out prompts and the
 * job's eval samples from its artifacts, its checkpoints, and deployments.
 */
import { ApiError, type ApiClient } from './client';

export type Side = 'base' | 'adapter';

export interface GenerationStarted {
  side?: Side;
  base_model: string;
  job_id: string | null;
  checkpoint_step: number;
  prompt_tokens: number;
  seed: number;
}

export interface GenerationFinished {
  side?: Side;
  finish_reason: 'stop' | 'length' | 'cancelled';
  prompt_tokens: number;
  completion_tokens: number;
  text: string;
}

export type PlaygroundEvent =
  | { event: 'started'; data: GenerationStarted }
  | { event: 'delta'; data: { side?: Side; text: string; completion_tokens: number } }
  | { event: 'finished'; data: GenerationFinished }
  | { event: 'error'; data: { side?: Side; code: string; detail: string } }
  | { event: 'end'; data: { job_id: string; seed: number } };

export interface CompareRequest {
  prompt?: string;
  system?: string;
  messages?: { role: string; content: string }[];
  max_new_tokens?: number;
  temperature?: number;
  top_p?: number;
  seed?: number;
  stop?: string[];
  checkpoint_step?: number;
}

export interface EvalSample {
  debate_id: string | null;
  vertical: string | null;
  prompt: string;
  reference: string;
  base: string;
  adapter: string;
}

export interface EvalSamples {
  job_id: string;
  base_model: string;
  decoding: string;
  max_new_tokens?: number;
  samples: EvalSample[];
}

export interface Deployment {
  name: string;
  job_id: string;
  base_model: string;
  created_at: string;
}

/** Parses SSE text into frames; returns the frames and the unparsed rest. */
export function parseFrames(buffer: string): { frames: PlaygroundEvent[]; rest: string } {
  const frames: PlaygroundEvent[] = [];
  const parts = buffer.split('\n\n');
  const rest = parts.pop() ?? '';
  for (const part of parts) {
    let event = 'message';
    const data: string[] = [];
    for (const line of part.split('\n')) {
      if (line.startsWith('event: ')) event = line.slice(7);
      else if (line.startsWith('data: ')) data.push(line.slice(6));
    }
    if (data.length) frames.push({ event, data: JSON.parse(data.join('\n')) } as PlaygroundEvent);
  }
  return { frames, rest };
}

async function errorOf(response: Response, action: string): Promise<ApiError> {
  let body = { detail: `HTTP ${response.status}`, code: `HTTP_${response.status}` };
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  return new ApiError(response.status, body, action);
}

/** POSTs `body` to an SSE route and calls `onEvent` for each frame until the stream ends or `signal` aborts. */
export async function streamPost(
  client: ApiClient,
  path: string,
  body: unknown,
  onEvent: (e: PlaygroundEvent) => void,
  signal?: AbortSignal,
): Promise<void> {
  let response: Response;
  try {
    response = await fetch(`${client.baseUrl}${path}`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream', ...client.authHeaders() },
      body: JSON.stringify(body),
      signal,
    });
  } catch (err) {
    if ((err as Error).name === 'AbortError') return;
    throw new ApiError(0, { detail: 'the gateway cannot be reached', code: 'NETWORK' }, 'generate');
  }
  if (!response.ok || !response.body) throw await errorOf(response, 'generate');
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = '';
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      const { frames, rest } = parseFrames(buffer);
      buffer = rest;
      frames.forEach(onEvent);
    }
  } catch (err) {
    if ((err as Error).name !== 'AbortError') throw err;
  }
}

export function compare(client: ApiClient, jobId: string, body: CompareRequest, onEvent: (e: PlaygroundEvent) => void, signal?: AbortSignal) {
  return streamPost(client, `/api/training/jobs/${encodeURIComponent(jobId)}/compare`, body, onEvent, signal);
}

async function artifactText(client: ApiClient, jobId: string, name: string): Promise<string | null> {
  try {
    const response = await client.raw('GET', `/api/training/jobs/${encodeURIComponent(jobId)}/artifacts/${name}`, 'readArtifact', undefined, { Accept: '*/*' });
    return await response.text();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404) return null;
    throw err;
  }
}

/** The job's eval/samples.json (null when the job wrote none). */
export async function evalSamples(client: ApiClient, jobId: string): Promise<EvalSamples | null> {
  const text = await artifactText(client, jobId, 'eval/samples.json');
  return text ? (JSON.parse(text) as EvalSamples) : null;
}

/** Up to `limit` held-out prompts of the job (data/heldout_sft.jsonl: debates never trained on). */
export async function heldoutPrompts(client: ApiClient, jobId: string, limit = 20): Promise<string[]> {
  const text = await artifactText(client, jobId, 'data/heldout_sft.jsonl');
  if (!text) return [];
  const out: string[] = [];
  for (const line of text.split('\n')) {
    if (!line.trim()) continue;
    try {
      const r = JSON.parse(line);
      const p = [r.instruction, r.input].filter(Boolean).join('\n\n') || r.prompt;
      if (p) out.push(p);
    } catch {
      /* skip a bad line */
    }
    if (out.length >= limit) break;
  }
  return out;
}

/** The steps of the job's complete checkpoints, from its artifact list. */
export async function checkpointSteps(client: ApiClient, jobId: string): Promise<number[]> {
  const artifacts = await client.getArtifacts(jobId);
  const steps = new Set<number>();
  for (const f of artifacts.files) {
    const m = f.name.match(/^checkpoints\/checkpoint-(\d+)\/adapter_config\.json$/);
    if (m) steps.add(Number(m[1]));
  }
  return Array.from(steps).sort((a, b) => a - b);
}

export async function listDeployments(client: ApiClient, jobId = ''): Promise<Deployment[]> {
  const q = jobId ? `?job_id=${encodeURIComponent(jobId)}` : '';
  return (await client.request<{ deployments: Deployment[] }>('GET', `/api/training/deployments${q}`, 'listDeployments')).deployments;
}

export function deploy(client: ApiClient, jobId: string, name: string): Promise<Deployment> {
  return client.request('POST', `/api/training/jobs/${encodeURIComponent(jobId)}/deploy`, 'deploy', { name });
}

export async function undeploy(client: ApiClient, jobId: string, name: string): Promise<void> {
  await client.request('DELETE', `/api/training/jobs/${encodeURIComponent(jobId)}/deploy?name=${encodeURIComponent(name)}`, 'undeploy');
}
