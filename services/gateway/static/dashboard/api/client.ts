/**
 * A typed client of the gateway's REST API (paths as the user guide names them).
 *
 * Every failure becomes an `ApiError`: the gateway's JSON error body (`detail`, `code`, `errors[{field, reason}]`)
 * for an HTTP error, or status 0 / code `NETWORK` when the gateway cannot be reached at all. An optional API
 * token is sent as `Authorization: Bearer …`.
 */
import type {
  BaseModelList,
  CloneJobRequest,
  CreateJobRequest,
  ErrorBody,
  ExportFilters,
  ExportFormat,
  ExportRecordMap,
  FieldError,
  Health,
  Job,
  JobArtifacts,
  JobCounts,
  JobList,
  JobMetrics,
  JobStatus,
  Preflight,
  TrainingStats,
  WrittenExport,
} from './types';
import type { paths } from './schema.gen';

/** Where the optional API token is kept between visits. */
export const TOKEN_STORAGE_KEY = 'aragora.training.apiToken';

export class ApiError extends Error {
  /** HTTP status; 0 when the gateway could not be reached. */
  readonly status: number;
  /** The gateway's error code (`INVALID_ARGUMENT`, `UNAVAILABLE`, ...) or `NETWORK`. */
  readonly code: string;
  /** The bad fields of a 422, each with the reason. */
  readonly fieldErrors: FieldError[];
  /** What the client was doing ("createJob", "listJobs", ...). */
  action: string;

  constructor(status: number, body: ErrorBody, action = '') {
    super(body.detail || `HTTP ${status}`);
    this.name = 'ApiError';
    this.status = status;
    this.code = body.code ?? (status === 0 ? 'NETWORK' : `HTTP_${status}`);
    this.fieldErrors = body.errors ?? [];
    this.action = action;
  }

  /** The gateway is unreachable, or a backend behind it is down or too slow. */
  get isUnavailable(): boolean {
    return this.status === 0 || this.status === 502 || this.status === 503 || this.status === 504;
  }

  get isUnauthorized(): boolean {
    return this.status === 401;
  }
}

/** The query of `GET /api/training/jobs`, as the gateway's schema declares it. */
type ListJobsQuery = NonNullable<paths['/api/training/jobs']['get']['parameters']['query']>;

/** The job-list filters the dashboard sets (`''`: any status). */
export type ListJobsFilters = Pick<ListJobsQuery, 'vertical'> & { status?: JobStatus | '' };

export interface ApiClientOptions {
  /** Prefix of every path; '' for the page's own origin. */
  baseUrl?: string;
  /** Returns the API token to send, or null for none. Read on every request, so a new token applies at once. */
  getToken?: () => string | null;
  /** The fetch to use (tests pass their own). */
  fetch?: typeof fetch;
}

function query(params: Record<string, string | number | boolean | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v !== undefined && v !== null && v !== '') q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `?${s}` : '';
}

export class ApiClient {
  readonly baseUrl: string;
  private readonly getToken: () => string | null;
  private readonly fetchImpl: typeof fetch;

  constructor(options: ApiClientOptions = {}) {
    this.baseUrl = (options.baseUrl ?? '').replace(/\/$/, '');
    this.getToken = options.getToken ?? (() => null);
    // Bound to the global object: calling window.fetch with another `this` throws "Illegal invocation".
    this.fetchImpl = options.fetch ?? ((input, init) => globalThis.fetch(input, init));
  }

  /** The headers every request carries (the token, when one is set). */
  authHeaders(): Record<string, string> {
    const token = this.getToken();
    return token ? { Authorization: `Bearer ${token}` } : {};
  }

  url(path: string): string {
    return `${this.baseUrl}${path}`;
  }

  /** One request; the parsed JSON body, or an ApiError. */
  async request<T>(method: string, path: string, action: string, body?: unknown): Promise<T> {
    const response = await this.raw(method, path, action, body);
    return (await response.json()) as T;
  }

  /** One request; the Response when it is 2xx, an ApiError otherwise. */
  async raw(method: string, path: string, action: string, body?: unknown, extraHeaders: Record<string, string> = {}): Promise<Response> {
    const headers: Record<string, string> = { Accept: 'application/json', ...this.authHeaders(), ...extraHeaders };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response: Response;
    try {
      response = await this.fetchImpl(this.url(path), {
        method,
        headers,
        body: body === undefined ? undefined : JSON.stringify(body),
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(0, { detail: `Cannot reach the gateway (${(err as Error).message || 'network error'})`, code: 'NETWORK' }, action);
    }
    if (!response.ok) throw new ApiError(response.status, await errorBody(response), action);
    return response;
  }

  // --- health -------------------------------------------------------------------------------------------
  /** `/healthz`: resolves with the body on 200 and on 503 (the body says which backend is down). */
  async health(): Promise<{ ok: boolean; health: Health }> {
    let response: Response;
    try {
      response = await this.fetchImpl(this.url('/healthz'), { headers: { Accept: 'application/json', ...this.authHeaders() }, cache: 'no-store' });
    } catch (err) {
      throw new ApiError(0, { detail: `Cannot reach the gateway (${(err as Error).message || 'network error'})`, code: 'NETWORK' }, 'health');
    }
    if (response.status === 200 || response.status === 503) {
      try {
        return { ok: response.status === 200, health: (await response.json()) as Health };
      } catch {
        // A proxy's own 503 page: the gateway itself is not answering.
        throw new ApiError(503, { detail: 'The gateway is not answering', code: 'UNAVAILABLE' }, 'health');
      }
    }
    throw new ApiError(response.status, await errorBody(response), 'health');
  }

  // --- jobs ---------------------------------------------------------------------------------------------
  listJobs(filters: ListJobsFilters = {}): Promise<JobList> {
    return this.request('GET', `/api/training/jobs${query({ status: filters.status, vertical: filters.vertical })}`, 'listJobs');
  }

  jobCounts(): Promise<JobCounts> {
    return this.request('GET', '/api/training/jobs/counts', 'jobCounts');
  }

  getJob(id: string): Promise<Job> {
    return this.request('GET', `/api/training/jobs/${encodeURIComponent(id)}`, 'getJob');
  }

  createJob(req: CreateJobRequest): Promise<Job> {
    return this.request('POST', '/api/training/jobs', 'createJob', req);
  }

  /** A dry run of `createJob` (same body; the name may be empty): nothing is created. */
  preflightJob(req: CreateJobRequest): Promise<Preflight> {
    return this.request('POST', '/api/training/jobs/preflight', 'preflightJob', req);
  }

  /** A new queued job with the config of `id`, `req.training_config` replacing some values. */
  cloneJob(id: string, req: CloneJobRequest = {}): Promise<Job> {
    return this.request('POST', `/api/training/jobs/${encodeURIComponent(id)}/clone`, 'cloneJob', req);
  }

  startJob(id: string): Promise<Job> {
    return this.request('POST', `/api/training/jobs/${encodeURIComponent(id)}/start`, 'startJob');
  }

  cancelJob(id: string): Promise<Job> {
    return this.request('DELETE', `/api/training/jobs/${encodeURIComponent(id)}`, 'cancelJob');
  }

  getMetrics(id: string): Promise<JobMetrics> {
    return this.request('GET', `/api/training/jobs/${encodeURIComponent(id)}/metrics`, 'getMetrics');
  }

  getArtifacts(id: string): Promise<JobArtifacts> {
    return this.request('GET', `/api/training/jobs/${encodeURIComponent(id)}/artifacts`, 'getArtifacts');
  }

  /** The URL of one artifact file (path segments encoded, slashes kept). */
  artifactUrl(id: string, name: string): string {
    const path = name.split('/').map(encodeURIComponent).join('/');
    return this.url(`/api/training/jobs/${encodeURIComponent(id)}/artifacts/${path}`);
  }

  async downloadArtifact(id: string, name: string): Promise<Blob> {
    const path = name.split('/').map(encodeURIComponent).join('/');
    const response = await this.raw('GET', `/api/training/jobs/${encodeURIComponent(id)}/artifacts/${path}`, 'downloadArtifact', undefined, { Accept: '*/*' });
    return response.blob();
  }

  /** The URL of a job's Server-Sent Events stream, replaying events after `after` (0: all). */
  eventsUrl(id: string, after = 0): string {
    return this.url(`/api/training/jobs/${encodeURIComponent(id)}/events${after > 0 ? `?after=${after}` : ''}`);
  }

  listModels(): Promise<BaseModelList> {
    return this.request('GET', '/api/training/models', 'listModels');
  }

  // --- exports ------------------------------------------------------------------------------------------
  /** The records of one export format as a JSON array. */
  exportRecords<F extends ExportFormat>(format: F, filters: ExportFilters = {}): Promise<ExportRecordMap[F][]> {
    return this.request('GET', `/api/training/export/${format}${query({ ...filters })}`, `export${format.toUpperCase()}`);
  }

  /** The records of one export format as JSONL text (one record per line). */
  async exportJsonl(format: ExportFormat, filters: ExportFilters = {}): Promise<string> {
    const response = await this.raw('GET', `/api/training/export/${format}${query({ ...filters, format: 'jsonl' })}`, `export${format.toUpperCase()}`, undefined, {
      Accept: 'application/x-ndjson',
    });
    return response.text();
  }

  /** Writes an export as a JSONL file into the exporter's export directory. */
  writeExport(format: ExportFormat, filters: ExportFilters = {}): Promise<WrittenExport> {
    return this.request('POST', `/api/training/export/${format}`, 'writeExport', filters);
  }

  stats(): Promise<TrainingStats> {
    return this.request('GET', '/api/training/stats', 'stats');
  }
}

async function errorBody(response: Response): Promise<ErrorBody> {
  const text = await response.text().catch(() => '');
  try {
    const body = JSON.parse(text) as Partial<ErrorBody> & { detail?: unknown };
    if (body && typeof body === 'object') {
      // FastAPI's own errors may carry a list in `detail`; keep a readable line.
      const detail = typeof body.detail === 'string' ? body.detail : body.detail ? JSON.stringify(body.detail) : `HTTP ${response.status}`;
      return { detail, code: body.code, errors: Array.isArray(body.errors) ? body.errors : undefined };
    }
  } catch {
    /* not JSON: fall through */
  }
  return { detail: text.trim().slice(0, 200) || `HTTP ${response.status} ${response.statusText}` };
}
