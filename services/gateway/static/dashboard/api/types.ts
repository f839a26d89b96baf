/**
 * The gateway's REST types, field for field as the gateway sends them (snake_case).
 *
 * These are the one place the dashboard and the hook take their shapes from. They are checked against the
 * gateway's OpenAPI schema in two ways: `src/api/schema.check.ts` makes `tsc` compare them with the types
 * `openapi-typescript` generates from the schema (`npm run gen:api`, run by scripts/build_dashboard.sh), and
 * `tests/browser/test_api_types.py` compares their field names and status values with the live app's schema
 * without Node — so a status or a field the backend sends is never lost or mislabelled.
 */

/** Every status a job can have, in lifecycle order. */
export const JOB_STATUSES = ['queued', 'preparing', 'training', 'completed', 'failed', 'cancelled'] as const;
export type JobStatus = (typeof JOB_STATUSES)[number];

/** Statuses a job never leaves. */
export const TERMINAL_STATUSES: readonly JobStatus[] = ['completed', 'failed', 'cancelled'];

export function isTerminal(status: JobStatus | string): boolean {
  return (TERMINAL_STATUSES as readonly string[]).includes(status);
}

export const QUANTIZATIONS = ['4bit', '8bit', 'none'] as const;
export type Quantization = (typeof QUANTIZATIONS)[number];

export const TRAINING_METHODS = ['sft', 'dpo'] as const;
export type TrainingMethod = (typeof TRAINING_METHODS)[number];

/** A job's training parameters as the gateway returns them. The trainer fills in every default, so null only
 * means "not set" for the fields that have no default (dataset_path, max_steps, checkpoint_every_steps). */
export interface TrainingConfig {
  lora_r: number | null;
  lora_alpha: number | null;
  lora_dropout: number | null;
  num_epochs: number | null;
  batch_size: number | null;
  learning_rate: number | null;
  max_seq_length: number | null;
  quantization: Quantization | null;
  gradient_checkpointing: boolean | null;
  dataset_path: string | null;
  method: TrainingMethod | null;
  beta: number | null;
  min_confidence: number | null;
  min_confidence_diff: number | null;
  target_modules: string[];
  max_steps: number | null;
  seed: number | null;
  checkpoint_every_steps: number | null;
}

/** The training parameters a client sends: any subset; the trainer fills in the documented defaults. */
export type TrainingConfigInput = Partial<TrainingConfig>;

/** A fine-tuning job. */
export interface Job {
  id: string;
  name: string;
  vertical: string;
  base_model: string;
  status: JobStatus;
  /** 0 to 1. */
  progress: number;
  current_epoch: number;
  current_step: number;
  total_steps: number;
  loss: number | null;
  training_examples: number;
  /** ISO-8601. */
  created_at: string | null;
  started_at: string | null;
  completed_at: string | null;
  error: string | null;
  training_config: TrainingConfig;
}

/** `POST /api/training/jobs` body, as the guide's "Create Job". */
export interface CreateJobRequest {
  name: string;
  vertical?: string;
  base_model: string;
  training_config?: TrainingConfigInput;
}

/** `GET /api/training/jobs`. */
export interface JobList {
  jobs: Job[];
  total: number;
}

/** `GET /api/training/jobs/counts`: `running` is preparing + training. */
export interface JobCounts {
  queued: number;
  preparing: number;
  training: number;
  completed: number;
  failed: number;
  cancelled: number;
  total: number;
  running: number;
}

/** One model's evaluation on the held-out debates. */
export interface ModelEvaluation {
  heldout_loss: number | null;
  perplexity: number | null;
  preference_accuracy: number | null;
  vertical_accuracy: Record<string, number>;
}

/** `GET /api/training/jobs/{id}/metrics` (409 for a job that did not complete). */
export interface JobMetrics {
  job_id: string;
  status: JobStatus;
  training_data_examples: number;
  training_data_debates: number;
  final_loss: number | null;
  elo_rating: number | null;
  win_rate: number | null;
  vertical_accuracy: Record<string, number>;
  base: ModelEvaluation | null;
  adapter: ModelEvaluation | null;
  eval_matches: number;
  eval_sft_records: number;
  eval_dpo_pairs: number;
}

export interface ArtifactFile {
  /** Path inside the job's folder, e.g. "adapter/adapter_config.json". */
  name: string;
  size_bytes: number;
  /** "config", "weights", "tokenizer", "checkpoint", "data", "log", "metrics" or "other". */
  type: string;
}

/** `GET /api/training/jobs/{id}/artifacts`. */
export interface JobArtifacts {
  job_id: string;
  checkpoint_path: string;
  data_directory: string;
  files: ArtifactFile[];
}

/** A base model of the catalogue (`GET /api/training/models`). */
export interface BaseModel {
  id: string;
  name: string;
  provider: string;
  parameters: number;
  size: string;
  verticals: string[];
  capabilities: string[];
  recommended: boolean;
  available: boolean;
  unavailable_reason: string;
  max_seq_length: number;
  description: string;
}

export interface BaseModelList {
  models: BaseModel[];
}

/** The kinds of event in a job's log (the SSE `event:` field), plus the stream's own `snapshot` and `end`. */
export const EVENT_TYPES = ['status', 'step', 'checkpoint', 'eval', 'log', 'warning', 'error'] as const;
export type JobEventType = (typeof EVENT_TYPES)[number];

interface EventBase {
  /** From 1, without gaps within a job. */
  sequence: number;
  /** ISO-8601. */
  time: string;
  message: string;
}

export interface StatusEvent extends EventBase {
  type: 'status';
  from_status: JobStatus;
  to_status: JobStatus;
  reason: string;
}

export interface StepEvent extends EventBase {
  type: 'step';
  epoch: number;
  step: number;
  total_steps: number;
  loss: number;
  learning_rate: number;
  examples_seen: number;
  tokens_per_second: number;
  progress: number;
  extra: Record<string, number>;
}

export interface CheckpointEvent extends EventBase {
  type: 'checkpoint';
  path: string;
  step: number;
}

export interface EvalEvent extends EventBase {
  type: 'eval';
  phase: string;
  done: number;
  total: number;
  metrics: Record<string, number>;
}

export interface MessageEvent extends EventBase {
  type: 'log' | 'warning' | 'error';
}

/** One event of a job's log, as the `data:` of an SSE message. */
export type JobEvent = StatusEvent | StepEvent | CheckpointEvent | EvalEvent | MessageEvent;

/** The export formats. */
export const EXPORT_FORMATS = ['sft', 'dpo', 'gauntlet'] as const;
export type ExportFormat = (typeof EXPORT_FORMATS)[number];

export type Split = 'train' | 'heldout' | 'all';

/** The guide's export filters; each format uses its own subset (SFT: min_confidence; DPO: min_confidence_diff;
 * gauntlet: attack_type, min_severity). */
export interface ExportFilters {
  min_confidence?: number;
  min_confidence_diff?: number;
  limit?: number;
  vertical?: string;
  split?: Split;
  attack_type?: string;
  min_severity?: number;
}

export interface SFTRecord {
  instruction: string;
  input: string;
  output: string;
  metadata: { debate_id: string; consensus_confidence: number; rounds: number; vertical: string };
}

export interface DPORecord {
  prompt: string;
  chosen: string;
  rejected: string;
  metadata: { debate_id: string; confidence_diff: number; vertical: string };
}

export interface GauntletRecord {
  prompt: string;
  response: string;
  attack_type: string;
  success: boolean;
  findings: string[];
}

export interface ExportRecordMap {
  sft: SFTRecord;
  dpo: DPORecord;
  gauntlet: GauntletRecord;
}

export interface ExportedFile {
  name: string;
  size_bytes: number;
  created_at: string | null;
}

/** `POST /api/training/export/{format}`: the file written into the export directory. */
export interface WrittenExport extends ExportedFile {
  record_count: number;
}

/** `GET /api/training/stats`. */
export interface TrainingStats {
  available_exporters: string[];
  export_directory: string;
  exported_files: ExportedFile[];
  sft_available: boolean;
  debates_per_vertical: Record<string, number>;
  total_debates: number;
  total_gauntlet_runs: number;
}

/** `GET /healthz` (200 when every backend serves, 503 otherwise, with the same body). */
export interface Health {
  /** "ok" when every backend is SERVING, "degraded" otherwise. */
  status: string;
  services: Record<string, string>;
}

/** One bad field of a 422 body. */
export interface FieldError {
  field: string;
  reason: string;
}

/** The gateway's error body (4xx/5xx). */
export interface ErrorBody {
  detail: string;
  code?: string;
  errors?: FieldError[];
}
