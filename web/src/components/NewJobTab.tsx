import { useEffect, useMemo, useState, type ReactNode } from 'react';
import { TRAINING_PARAMS, type ParamSpec } from '../api/trainingConfig';
import type { BaseModel, CreateJobRequest, FieldError, Job, TrainingConfigInput } from '../api/types';
import type { UseFineTuningResult } from '../hooks/useFineTuning';
import { formatParams } from '../format';
import { ApiError } from '../api/client';
import type { Preflight } from '../api/types';
import { PreflightPanel } from './PreflightPanel';

/** The guide's "Configure Training Parameters" table, in its order, with its defaults (from the training spec). */
export const GUIDE_PARAMS: ParamSpec[] = TRAINING_PARAMS.filter((p) => p.group === 'guide');

/** Beyond the guide's table: how the job trains and on which data. Empty fields take the trainer's defaults. */
export const ADVANCED_PARAMS: ParamSpec[] = TRAINING_PARAMS.filter((p) => p.group === 'advanced');

const ALL_PARAMS = TRAINING_PARAMS;
const MAX_SEQ_DEFAULT = Number(ALL_PARAMS.find((p) => p.key === 'max_seq_length')?.initial ?? 0);

type Values = Record<string, string | boolean>;

function initialValues(): Values {
  const v: Values = { name: '', vertical: '', base_model: '', hub_model: '' };
  for (const p of ALL_PARAMS) v[p.key] = p.initial;
  return v;
}

/** An API field path ("training_config.loraR", "job_name", ...) as the form's field name. */
export function formFieldOf(apiField: string): string {
  let f = apiField.split('.').pop() ?? apiField;
  f = f.replace(/\[\d+\]$/, '').replace(/[A-Z]/g, (m) => `_${m.toLowerCase()}`);
  if (f === 'job_name') return 'name';
  return f;
}

/** A model hub id as the trainer accepts it (org/name). */
export const HUB_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}(\/[A-Za-z0-9][A-Za-z0-9_.-]{0,95})?$/;

function validate(values: Values, model: BaseModel | undefined, existingNames: Set<string>): Record<string, string> {
  const errors: Record<string, string> = {};
  const name = String(values.name).trim();
  if (!name) errors.name = 'A job name is required.';
  else if (name.length > 128) errors.name = 'At most 128 characters.';
  else if (existingNames.has(name)) errors.name = `A job named “${name}” already exists; names are unique.`;
  const hubId = String(values.hub_model ?? '').trim();
  if (hubId) {
    if (!HUB_ID.test(hubId) || hubId.includes('..') || hubId.includes('--')) errors.hub_model = 'A model hub id looks like org/name (letters, digits, “-”, “_”, “.”).';
  } else if (!values.base_model) errors.base_model = 'Choose a base model.';
  else if (model && !model.available) errors.base_model = `Not available on this server: ${model.unavailable_reason || 'no weights'}.`;
  for (const p of ALL_PARAMS) {
    if (p.kind !== 'int' && p.kind !== 'number') continue;
    const raw = String(values[p.key]).trim();
    if (raw === '') {
      if (!p.optional) errors[p.key] = 'A value is required.';
      continue;
    }
    const n = Number(raw);
    if (!Number.isFinite(n)) {
      errors[p.key] = 'Must be a number.';
      continue;
    }
    if (p.kind === 'int' && !Number.isInteger(n)) {
      errors[p.key] = 'Must be a whole number.';
      continue;
    }
    const bad = p.check?.(n);
    if (bad) errors[p.key] = `${p.guide} ${bad}.`;
  }
  const seq = Number(values.max_seq_length);
  if (!errors.max_seq_length && model && model.max_seq_length > 0 && seq > model.max_seq_length) {
    errors.max_seq_length = `${model.name || model.id} takes at most ${model.max_seq_length} tokens.`;
  }
  return errors;
}

function toRequest(values: Values): CreateJobRequest {
  const cfg: Record<string, unknown> = {};
  for (const p of ALL_PARAMS) {
    const v = values[p.key];
    if (p.kind === 'bool') cfg[p.key] = Boolean(v);
    else if (p.kind === 'list') {
      const items = String(v)
        .split(',')
        .map((x) => x.trim())
        .filter((x) => x !== '');
      if (items.length > 0) cfg[p.key] = items;
    } else if (p.kind === 'int' || p.kind === 'number') {
      if (String(v).trim() !== '') cfg[p.key] = Number(v);
    } else if (String(v).trim() !== '') cfg[p.key] = String(v).trim();
  }
  return {
    name: String(values.name).trim(),
    vertical: String(values.vertical),
    // "Use any hub model id" wins over the catalogue choice (the trainer downloads it while preparing).
    base_model: String(values.hub_model ?? '').trim() || String(values.base_model),
    training_config: cfg as TrainingConfigInput,
  };
}

function Field({ id, label, guide, help, error, children }: { id: string; label: string; guide?: string; help: string; error?: string; children: ReactNode }) {
  return (
    <div className={`field${error ? ' invalid' : ''}`} data-field={id}>
      <label htmlFor={`f-${id}`}>
        {label} {guide && <code className="guide-name">{guide}</code>}
      </label>
      {children}
      <small className="help" id={`h-${id}`}>
        {help}
      </small>
      {error && (
        <small className="field-error" id={`e-${id}`} role="alert" data-testid={`error-${id}`}>
          {error}
        </small>
      )}
    </div>
  );
}

/**
 * New Job: name, vertical, base model and the training parameters. "Start Training" creates the job, starts it,
 * and hands it to `onStarted` (the dashboard switches to Active Jobs).
 */
export function NewJobTab({
  ft,
  verticals,
  preselectModel,
  onStarted,
}: {
  ft: UseFineTuningResult;
  verticals: { name: string; debates: number | null }[];
  preselectModel: string | null;
  onStarted: (job: Job) => void;
}) {
  const [values, setValues] = useState<Values>(initialValues);
  const [touched, setTouched] = useState<Record<string, boolean>>({});
  const [submitted, setSubmitted] = useState(false);
  const [apiErrors, setApiErrors] = useState<Record<string, string>>({});
  const [formError, setFormError] = useState<string | null>(null);
  const [submitting, setSubmitting] = useState(false);
  const [showAdvanced, setShowAdvanced] = useState(false);
  const [preflight, setPreflight] = useState<Preflight | null>(null);
  const [preflighting, setPreflighting] = useState(false);

  const sortedModels = useMemo(
    () => [...ft.models].sort((a, b) => Number(b.available) - Number(a.available) || Number(b.recommended) - Number(a.recommended) || a.parameters - b.parameters),
    [ft.models],
  );
  const hubModel = String(values.hub_model ?? '').trim();
  const model = hubModel ? ft.models.find((m) => m.id === hubModel) : ft.models.find((m) => m.id === values.base_model);

  // Choose a model once the catalogue is in: the one picked on Available Models, else the first recommended one here.
  useEffect(() => {
    if (preselectModel && ft.models.some((m) => m.id === preselectModel)) {
      setValues((v) => ({ ...v, base_model: preselectModel }));
    } else if (!values.base_model && sortedModels.length > 0) {
      const pick = sortedModels.find((m) => m.available) ?? sortedModels[0];
      setValues((v) => ({ ...v, base_model: pick.id }));
    }
    // eslint-disable-next-line react-hooks/exhaustive-deps
  }, [preselectModel, sortedModels]);

  // The trainer caps the default (2048) at the model's limit; the form shows the value the job will get.
  useEffect(() => {
    if (touched.max_seq_length || !model?.max_seq_length) return;
    const capped = String(Math.min(MAX_SEQ_DEFAULT, model.max_seq_length));
    if (values.max_seq_length !== capped) setValues((v) => ({ ...v, max_seq_length: capped }));
  }, [model?.id, model?.max_seq_length, touched.max_seq_length, values.max_seq_length]);

  const existingNames = useMemo(() => new Set(ft.jobs.map((j) => j.name)), [ft.jobs]);
  const clientErrors = validate(values, model, existingNames);
  const shown = (field: string) => ((submitted || touched[field]) && clientErrors[field]) || apiErrors[field];

  const set = (field: string, value: string | boolean) => {
    setValues((v) => ({ ...v, [field]: value }));
    setTouched((t) => ({ ...t, [field]: true }));
    // An API error stays until its field is edited; the summary above goes with the last one.
    if (field in apiErrors) {
      const next = { ...apiErrors };
      delete next[field];
      setApiErrors(next);
      if (Object.keys(next).length === 0) setFormError(null);
    }
  };

  const submit = async () => {
    setSubmitted(true);
    setFormError(null);
    setApiErrors({});
    if (Object.keys(clientErrors).length > 0) {
      document.getElementById(`f-${Object.keys(clientErrors)[0]}`)?.focus();
      return;
    }
    setSubmitting(true);
    try {
      const job = await ft.createJob(toRequest(values));
      if (!job) {
        const err = ft.lastError();
        const byField: Record<string, string> = {};
        const unplaced: FieldError[] = [];
        const known = new Set(['name', 'vertical', 'base_model', ...ALL_PARAMS.map((p) => p.key as string)]);
        for (const fe of err?.fieldErrors ?? []) {
          const f = formFieldOf(fe.field);
          if (known.has(f)) byField[f] = byField[f] ? `${byField[f]}; ${fe.reason}` : fe.reason;
          else unplaced.push(fe);
        }
        if (err?.code === 'ALREADY_EXISTS' && !byField.name) byField.name = err.message;
        if (hubModel && byField.base_model) {
          byField.hub_model = byField.base_model; // the id typed in "use any hub model id" was refused
          delete byField.base_model;
        }
        if (Object.keys(byField).some((f) => ADVANCED_PARAMS.some((p) => p.key === f))) setShowAdvanced(true);
        setApiErrors(byField);
        if (Object.keys(byField).length === 0 || unplaced.length > 0) {
          const extra = unplaced.map((u) => `${u.field}: ${u.reason}`).join('; ');
          setFormError(`The job was not created: ${extra || err?.message || 'unknown error'}`);
        } else {
          setFormError('The job was not created: fix the fields marked below.');
        }
        return;
      }
      const started = await ft.startJob(job.id);
      if (!started) {
        setFormError(`“${job.name}” was created but could not be started: ${ft.lastError()?.message ?? 'unknown error'}. It waits in Active Jobs as queued; start it there.`);
        return;
      }
      setValues((v) => ({ ...initialValues(), base_model: v.base_model, vertical: v.vertical }));
      setTouched({});
      setSubmitted(false);
      onStarted(started);
    } finally {
      setSubmitting(false);
    }
  };

  // Preflight: the same body as Start Training, answered without creating anything (the name may be empty).
  const runPreflight = async () => {
    setFormError(null);
    setApiErrors({});
    setPreflight(null);
    setPreflighting(true);
    try {
      setPreflight(await ft.client.preflightJob(toRequest(values)));
    } catch (e) {
      const err = e instanceof ApiError ? e : null;
      const byField: Record<string, string> = {};
      for (const fe of err?.fieldErrors ?? []) byField[formFieldOf(fe.field)] = fe.reason;
      setApiErrors(byField);
      setFormError(`Preflight failed: ${err?.message ?? String(e)}`);
    } finally {
      setPreflighting(false);
    }
  };

  const renderParam = (p: ParamSpec) => {
    const id = p.key as string;
    const err = shown(id) || undefined;
    const common = {
      id: `f-${id}`,
      name: id,
      'aria-invalid': err ? true : undefined,
      'aria-describedby': `h-${id}${err ? ` e-${id}` : ''}`,
    };
    let input: ReactNode;
    if (p.kind === 'bool') {
      input = <input type="checkbox" {...common} checked={Boolean(values[id])} onChange={(e) => set(id, e.target.checked)} />;
    } else if (p.kind === 'select') {
      input = (
        <select {...common} value={String(values[id])} onChange={(e) => set(id, e.target.value)}>
          {p.options!.map((o) => (
            <option key={o} value={o}>
              {o}
            </option>
          ))}
        </select>
      );
    } else {
      input = (
        <input
          type="text"
          inputMode={p.kind === 'text' || p.kind === 'list' ? 'text' : 'decimal'}
          {...common}
          value={String(values[id])}
          placeholder={p.optional ? 'optional' : String(p.initial)}
          onChange={(e) => set(id, e.target.value)}
          onBlur={() => setTouched((t) => ({ ...t, [id]: true }))}
        />
      );
    }
    const def = p.initial === '' ? 'Optional' : `Default ${p.initial === true ? 'on' : p.initial === false ? 'off' : p.initial}`;
    let help = `${p.help}. ${def}.`;
    if (p.key === 'max_seq_length' && model?.max_seq_length) help += ` ${model.name || model.id} takes at most ${model.max_seq_length}.`;
    return (
      <Field key={id} id={id} label={p.label} guide={p.guide} help={help} error={err}>
        {input}
      </Field>
    );
  };

  const trainerDown = ft.connection.services.trainer && ft.connection.services.trainer !== 'SERVING';
  return (
    <form
      className="new-job"
      aria-label="New training job"
      noValidate
      onSubmit={(e) => {
        e.preventDefault();
        void submit();
      }}
    >
      {formError && (
        <div className="form-error" role="alert" data-testid="form-error">
          {formError}
        </div>
      )}
      <fieldset>
        <legend>Job</legend>
        <Field id="name" label="Job name" guide="jobName" help="Unique name for this training job. Required." error={shown('name') || undefined}>
          <input
            id="f-name"
            name="name"
            type="text"
            value={String(values.name)}
            placeholder="legal_specialist_v1"
            aria-invalid={shown('name') ? true : undefined}
            onChange={(e) => set('name', e.target.value)}
            onBlur={() => setTouched((t) => ({ ...t, name: true }))}
          />
        </Field>
        <Field id="vertical" label="Vertical" help="Train on the debates of one domain, or of all of them." error={shown('vertical') || undefined}>
          <select id="f-vertical" name="vertical" value={String(values.vertical)} onChange={(e) => set('vertical', e.target.value)}>
            <option value="">All verticals</option>
            {verticals.map((v) => (
              <option key={v.name} value={v.name}>
                {v.name}
                {v.debates !== null ? ` (${v.debates} debates)` : ''}
              </option>
            ))}
          </select>
        </Field>
        <Field
          id="base_model"
          label="Base model"
          guide="baseModel"
          help={model ? model.description || `${model.provider} · ${model.size || formatParams(model.parameters)}` : 'The model the LoRA adapter is trained on (see Available Models).'}
          error={shown('base_model') || undefined}
        >
          <select id="f-base_model" name="base_model" value={String(values.base_model)} onChange={(e) => set('base_model', e.target.value)}>
            {sortedModels.length === 0 && <option value="">{ft.loading ? 'Loading models…' : 'No models (is the trainer running?)'}</option>}
            {sortedModels.map((m) => (
              <option key={m.id} value={m.id} disabled={!m.available}>
                {m.recommended ? '★ ' : ''}
                {m.name || m.id} · {m.size || formatParams(m.parameters)}
                {m.available ? '' : ` — unavailable: ${m.unavailable_reason || 'no weights here'}`}
              </option>
            ))}
          </select>
        </Field>
        <Field
          id="hub_model"
          label="Or use any hub model id"
          help="Any causal language model on the model hub, e.g. Qwen/Qwen2.5-0.5B-Instruct: the job downloads it while preparing (needs hub access on the trainer). Leave empty to use the choice above."
          error={shown('hub_model') || undefined}
        >
          <input
            id="f-hub_model"
            name="hub_model"
            type="text"
            placeholder="org/name"
            value={String(values.hub_model ?? '')}
            onChange={(e) => set('hub_model', e.target.value)}
          />
        </Field>
      </fieldset>
      <fieldset>
        <legend>Training parameters</legend>
        <div className="grid">{GUIDE_PARAMS.map(renderParam)}</div>
      </fieldset>
      <details open={showAdvanced} onToggle={(e) => setShowAdvanced((e.target as HTMLDetailsElement).open)}>
        <summary>Advanced: method, data filters, LoRA modules, steps, seed</summary>
        <div className="grid">{ADVANCED_PARAMS.map(renderParam)}</div>
      </details>
      {preflight && <PreflightPanel result={preflight} onClose={() => setPreflight(null)} />}
      <div className="actions">
        <button type="button" disabled={preflighting || submitting} onClick={() => void runPreflight()} data-testid="preflight"
          title="A dry run: fetches the data, counts tokens and truncation, times a few steps; creates nothing">
          {preflighting ? 'Checking…' : 'Preflight'}
        </button>
        <button type="submit" className="primary" disabled={submitting} data-testid="start-training">
          {submitting ? 'Starting…' : 'Start Training'}
        </button>
        <span className="muted">Creates the job (queued), starts it, and shows it in Active Jobs.</span>
        {trainerDown && <span className="error-text">The trainer is unavailable right now.</span>}
      </div>
    </form>
  );
}
