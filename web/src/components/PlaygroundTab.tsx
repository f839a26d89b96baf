import { useCallback, useEffect, useRef, useState } from 'react';
import type { ApiClient } from '../api/client';
import { ApiError } from '../api/client';
import {
  checkpointSteps,
  compare,
  deploy,
  evalSamples,
  heldoutPrompts,
  listDeployments,
  undeploy,
  type Deployment,
  type EvalSamples,
  type PlaygroundEvent,
  type Side,
} from '../api/playground';
import type { Job, JobMetrics } from '../api/types';
import { MetricsPanel } from './MetricsPanel';

/** Prompt styles to try (the guide's "test with multiple prompt styles"): a system message each. */
export const PROMPT_STYLES: { id: string; label: string; system: string }[] = [
  { id: 'plain', label: 'Plain question', system: '' },
  { id: 'judge', label: 'Debate judge', system: 'You are an impartial judge of debates. Give the consensus view and the reasons for it.' },
  { id: 'concise', label: 'Concise', system: 'Answer in at most three sentences.' },
  { id: 'steps', label: 'Step by step', system: 'Reason step by step, then state your conclusion on its own line.' },
];

interface Answer {
  text: string;
  tokens: number;
  finish: string | null;
  error: string | null;
}

const EMPTY: Answer = { text: '', tokens: 0, finish: null, error: null };

function AnswerPane({ side, label, answer, running }: { side: Side; label: string; answer: Answer; running: boolean }) {
  return (
    <div className="model-card" data-testid={`pg-out-${side}`} style={{ minHeight: 160 }}>
      <h3 style={{ marginTop: 0 }}>{label}</h3>
      <pre data-testid={`pg-text-${side}`} style={{ whiteSpace: 'pre-wrap', fontFamily: 'inherit', margin: 0 }}>
        {answer.text}
        {running && !answer.finish && !answer.error ? '▍' : ''}
      </pre>
      <p className="muted small-text" data-testid={`pg-status-${side}`}>
        {answer.error ? <span className="error-text">{answer.error}</span> : answer.finish ? `${answer.tokens} tokens · ${answer.finish}` : running ? `${answer.tokens} tokens…` : ''}
      </p>
    </div>
  );
}

/** Playground: a completed job's adapter beside its base model, streamed side by side, with the job's eval samples. */
export function PlaygroundTab({ client }: { client: ApiClient }) {
  const [jobs, setJobs] = useState<Job[]>([]);
  const [jobId, setJobId] = useState('');
  const [checkpoints, setCheckpoints] = useState<number[]>([]);
  const [checkpoint, setCheckpoint] = useState(0);
  const [heldout, setHeldout] = useState<string[]>([]);
  const [samples, setSamples] = useState<EvalSamples | null>(null);
  const [metrics, setMetrics] = useState<JobMetrics | null>(null);
  const [deployments, setDeployments] = useState<Deployment[]>([]);
  const [deployName, setDeployName] = useState('');
  const [style, setStyle] = useState('plain');
  const [prompt, setPrompt] = useState('');
  const [maxTokens, setMaxTokens] = useState(128);
  const [temperature, setTemperature] = useState(0.7);
  const [seed, setSeed] = useState('');
  const [answers, setAnswers] = useState<Record<Side, Answer>>({ base: EMPTY, adapter: EMPTY });
  const [running, setRunning] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [usedSeed, setUsedSeed] = useState<number | null>(null);
  const abort = useRef<AbortController | null>(null);

  useEffect(() => {
    client
      .listJobs({ status: 'completed' })
      .then((list) => {
        setJobs(list.jobs);
        setJobId((current) => current || list.jobs[0]?.id || '');
      })
      .catch((e: ApiError) => setError(e.message));
  }, [client]);

  const job = jobs.find((j) => j.id === jobId) ?? null;

  const loadJobExtras = useCallback(
    async (id: string) => {
      setCheckpoint(0);
      setSamples(null);
      setMetrics(null);
      setHeldout([]);
      setCheckpoints([]);
      const settle = <T,>(p: Promise<T>, fallback: T) => p.catch(() => fallback);
      const [steps, held, smp, mtr, deps] = await Promise.all([
        settle(checkpointSteps(client, id), [] as number[]),
        settle(heldoutPrompts(client, id), [] as string[]),
        settle(evalSamples(client, id), null),
        settle(client.getMetrics(id), null),
        settle(listDeployments(client, id), [] as Deployment[]),
      ]);
      setCheckpoints(steps);
      setHeldout(held);
      setSamples(smp);
      setMetrics(mtr);
      setDeployments(deps);
    },
    [client],
  );

  useEffect(() => {
    if (jobId) void loadJobExtras(jobId);
  }, [jobId, loadJobExtras]);

  useEffect(() => () => abort.current?.abort(), []);

  const run = async () => {
    if (!jobId || !prompt.trim()) return;
    abort.current?.abort();
    const controller = new AbortController();
    abort.current = controller;
    setAnswers({ base: EMPTY, adapter: EMPTY });
    setError(null);
    setUsedSeed(null);
    setRunning(true);
    const system = PROMPT_STYLES.find((s) => s.id === style)?.system ?? '';
    const onEvent = (e: PlaygroundEvent) => {
      const side = 'side' in e.data ? e.data.side : undefined;
      if (e.event === 'end') {
        setUsedSeed(e.data.seed);
        return;
      }
      if (!side) return;
      setAnswers((prev) => {
        const a = prev[side];
        if (e.event === 'delta') return { ...prev, [side]: { ...a, text: a.text + e.data.text, tokens: e.data.completion_tokens } };
        if (e.event === 'finished') return { ...prev, [side]: { ...a, text: e.data.text, tokens: e.data.completion_tokens, finish: e.data.finish_reason } };
        if (e.event === 'error') return { ...prev, [side]: { ...a, error: e.data.detail || e.data.code } };
        return prev;
      });
    };
    try {
      await compare(
        client,
        jobId,
        {
          prompt,
          system: system || undefined,
          max_new_tokens: maxTokens,
          temperature,
          seed: seed.trim() ? Number(seed) : undefined,
          checkpoint_step: checkpoint || undefined,
        },
        onEvent,
        controller.signal,
      );
    } catch (e) {
      const err = e as ApiError;
      const fields = err.fieldErrors?.map((f) => `${f.field}: ${f.reason}`).join('; ');
      setError(fields || err.message);
    } finally {
      if (abort.current === controller) setRunning(false);
    }
  };

  const stop = () => {
    abort.current?.abort();
    setRunning(false);
  };

  const onDeploy = async () => {
    if (!jobId) return;
    try {
      await deploy(client, jobId, deployName.trim());
      setDeployName('');
      setDeployments(await listDeployments(client, jobId));
      setError(null);
    } catch (e) {
      setError((e as ApiError).message);
    }
  };

  const onUndeploy = async (name: string) => {
    try {
      await undeploy(client, jobId, name);
      setDeployments(await listDeployments(client, jobId));
    } catch (e) {
      setError((e as ApiError).message);
    }
  };

  if (!jobs.length) {
    return (
      <section aria-label="Playground" className="empty" data-testid="pg-empty">
        {error ?? 'No completed job yet: train one, then talk to its adapter here beside its base model.'}
      </section>
    );
  }

  return (
    <section aria-label="Playground">
      <div className="grid">
        <div className="field">
          <label htmlFor="pg-job">Completed job</label>
          <select id="pg-job" data-testid="pg-job" value={jobId} onChange={(e) => setJobId(e.target.value)}>
            {jobs.map((j) => (
              <option key={j.id} value={j.id}>
                {j.name} ({j.base_model})
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="pg-checkpoint">Adapter</label>
          <select id="pg-checkpoint" data-testid="pg-checkpoint" value={checkpoint} onChange={(e) => setCheckpoint(Number(e.target.value))}>
            <option value={0}>Final adapter</option>
            {checkpoints.map((s) => (
              <option key={s} value={s}>
                Checkpoint at step {s}
              </option>
            ))}
          </select>
        </div>
        <div className="field">
          <label htmlFor="pg-style">Prompt style</label>
          <select id="pg-style" data-testid="pg-style" value={style} onChange={(e) => setStyle(e.target.value)}>
            {PROMPT_STYLES.map((s) => (
              <option key={s.id} value={s.id}>
                {s.label}
              </option>
            ))}
          </select>
          <small className="help">{PROMPT_STYLES.find((s) => s.id === style)?.system || 'No system message.'}</small>
        </div>
        <div className="field">
          <label htmlFor="pg-heldout">Held-out debate prompt</label>
          <select id="pg-heldout" data-testid="pg-heldout" value="" onChange={(e) => e.target.value !== '' && setPrompt(heldout[Number(e.target.value)])} disabled={!heldout.length}>
            <option value="">{heldout.length ? `Pick one of ${heldout.length}…` : 'None in this job'}</option>
            {heldout.map((p, i) => (
              <option key={i} value={i}>
                {p.length > 90 ? `${p.slice(0, 90)}…` : p}
              </option>
            ))}
          </select>
        </div>
      </div>
      <div className="field" style={{ marginTop: 14 }}>
        <label htmlFor="pg-prompt">Prompt</label>
        <textarea id="pg-prompt" data-testid="pg-prompt" rows={4} value={prompt} onChange={(e) => setPrompt(e.target.value)} placeholder="Ask both models the same question…" />
      </div>
      <div className="toolbar" style={{ marginTop: 10 }}>
        <label>
          Max tokens{' '}
          <input type="number" data-testid="pg-max-tokens" min={1} max={2048} value={maxTokens} onChange={(e) => setMaxTokens(Number(e.target.value))} style={{ width: 80 }} />
        </label>
        <label>
          Temperature{' '}
          <input type="number" data-testid="pg-temperature" min={0} max={2} step={0.1} value={temperature} onChange={(e) => setTemperature(Number(e.target.value))} style={{ width: 70 }} />
        </label>
        <label>
          Seed <input type="text" data-testid="pg-seed" value={seed} placeholder="random" onChange={(e) => setSeed(e.target.value.replace(/\D/g, ''))} style={{ width: 90 }} />
        </label>
        <button type="button" className="primary" data-testid="pg-run" onClick={() => void run()} disabled={running || !prompt.trim()}>
          {running ? 'Generating…' : 'Compare'}
        </button>
        <button type="button" data-testid="pg-stop" onClick={stop} disabled={!running}>
          Stop
        </button>
        {usedSeed !== null && <span className="muted small-text" data-testid="pg-used-seed">seed {usedSeed}</span>}
      </div>
      {error && (
        <div className="form-error" role="alert" data-testid="pg-error">
          {error}
        </div>
      )}
      <div style={{ display: 'grid', gridTemplateColumns: '1fr 1fr', gap: 14 }}>
        <AnswerPane side="base" label={`Base model · ${job?.base_model ?? ''}`} answer={answers.base} running={running} />
        <AnswerPane side="adapter" label={`Adapter · ${job?.name ?? ''}${checkpoint ? ` @ step ${checkpoint}` : ''}`} answer={answers.adapter} running={running} />
      </div>

      <h3>Serve it</h3>
      <p className="muted small-text">
        A deployed adapter answers OpenAI-compatible clients at <code>/v1/chat/completions</code> under its name.
      </p>
      <div className="toolbar">
        <input type="text" data-testid="pg-deploy-name" placeholder={job?.name ?? 'model name'} value={deployName} onChange={(e) => setDeployName(e.target.value)} />
        <button type="button" data-testid="pg-deploy" onClick={() => void onDeploy()}>
          Deploy
        </button>
        <ul data-testid="pg-deployments" style={{ margin: 0 }}>
          {deployments.map((d) => (
            <li key={d.name}>
              <code>{d.name}</code>{' '}
              <button type="button" className="link" onClick={() => void onUndeploy(d.name)}>
                undeploy
              </button>
            </li>
          ))}
        </ul>
      </div>

      <h3>Evaluation of this job</h3>
      {metrics ? <MetricsPanel metrics={metrics} /> : <p className="muted">No metrics.</p>}
      {samples && samples.samples.length ? (
        <table data-testid="pg-samples" className="samples" style={{ width: '100%', borderCollapse: 'collapse' }}>
          <thead>
            <tr>
              <th align="left">Held-out prompt</th>
              <th align="left">Reference (consensus)</th>
              <th align="left">Base</th>
              <th align="left">Adapter</th>
            </tr>
          </thead>
          <tbody>
            {samples.samples.map((s, i) => (
              <tr key={i} style={{ verticalAlign: 'top', borderTop: '1px solid var(--border)' }}>
                <td>{s.prompt}</td>
                <td>{s.reference}</td>
                <td>{s.base}</td>
                <td>{s.adapter}</td>
              </tr>
            ))}
          </tbody>
        </table>
      ) : (
        <p className="muted">This job wrote no eval/samples.json.</p>
      )}
    </section>
  );
}
