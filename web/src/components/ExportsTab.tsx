import { useState } from 'react';
import type { DPORecord, ExportFilters, ExportFormat, GauntletRecord, SFTRecord, Split, WrittenExport } from '../api/types';
import type { UseFineTuningResult } from '../hooks/useFineTuning';
import { formatBytes, formatNumber, formatTime } from '../format';

const PREVIEW = 5;

const FORMAT_INFO: Record<ExportFormat, { title: string; about: string }> = {
  sft: { title: 'SFT', about: 'Instruction / input / output records from debates with a consensus (supervised fine-tuning).' },
  dpo: { title: 'DPO', about: 'Prompt / chosen / rejected preference pairs: the consensus answer against a losing one.' },
  gauntlet: { title: 'Gauntlet', about: 'Adversarial test runs: attack prompt, model response, attack type, success, findings.' },
};

type AnyRecord = SFTRecord | DPORecord | GauntletRecord;

function clip(s: string, n = 280): string {
  return s.length > n ? `${s.slice(0, n)}…` : s;
}

function RecordView({ format, record }: { format: ExportFormat; record: AnyRecord }) {
  if (format === 'sft') {
    const r = record as SFTRecord;
    return (
      <dl className="record">
        <dt>instruction</dt>
        <dd>{clip(r.instruction)}</dd>
        <dt>input</dt>
        <dd>{clip(r.input)}</dd>
        <dt>output</dt>
        <dd>{clip(r.output)}</dd>
        <dt>metadata</dt>
        <dd className="muted">
          {r.metadata?.debate_id} · {r.metadata?.vertical} · confidence {formatNumber(r.metadata?.consensus_confidence, 3)} · {r.metadata?.rounds} rounds
        </dd>
      </dl>
    );
  }
  if (format === 'dpo') {
    const r = record as DPORecord;
    return (
      <dl className="record">
        <dt>prompt</dt>
        <dd>{clip(r.prompt)}</dd>
        <dt>chosen</dt>
        <dd className="chosen">{clip(r.chosen)}</dd>
        <dt>rejected</dt>
        <dd className="rejected">{clip(r.rejected)}</dd>
        <dt>metadata</dt>
        <dd className="muted">
          {r.metadata?.debate_id} · {r.metadata?.vertical} · confidence diff {formatNumber(r.metadata?.confidence_diff, 3)}
        </dd>
      </dl>
    );
  }
  const r = record as GauntletRecord;
  return (
    <dl className="record">
      <dt>prompt</dt>
      <dd>{clip(r.prompt)}</dd>
      <dt>response</dt>
      <dd>{clip(r.response)}</dd>
      <dt>attack</dt>
      <dd>
        {r.attack_type} · {r.success ? <span className="error-text">got through</span> : 'resisted'}
      </dd>
      <dt>findings</dt>
      <dd>{r.findings?.join('; ') || '–'}</dd>
    </dl>
  );
}

/** Exports: preview the first records of SFT / DPO / gauntlet with the guide's filters, count them, download JSONL. */
export function ExportsTab({ ft, verticals }: { ft: UseFineTuningResult; verticals: string[] }) {
  const [format, setFormat] = useState<ExportFormat>('sft');
  const [minConfidence, setMinConfidence] = useState('0.7');
  const [minConfidenceDiff, setMinConfidenceDiff] = useState('0.3');
  const [limit, setLimit] = useState('1000');
  const [vertical, setVertical] = useState('');
  const [split, setSplit] = useState<Split>('train');
  const [attackType, setAttackType] = useState('');
  const [minSeverity, setMinSeverity] = useState('');
  const [records, setRecords] = useState<AnyRecord[] | null>(null);
  const [previewOf, setPreviewOf] = useState<string>('');
  const [busy, setBusy] = useState<string | null>(null);
  const [message, setMessage] = useState<string | null>(null);
  const [problem, setProblem] = useState<string | null>(null);
  const [written, setWritten] = useState<WrittenExport | null>(null);

  const checks: Record<string, string> = {};
  const num = (name: string, raw: string, lo: number, hi: number, int = false) => {
    if (raw.trim() === '') return undefined;
    const n = Number(raw);
    if (!Number.isFinite(n) || n < lo || n > hi || (int && !Number.isInteger(n))) {
      checks[name] = int ? `a whole number from ${lo}` : `a number from ${lo} to ${hi}`;
      return undefined;
    }
    return n;
  };
  const filters: ExportFilters = { limit: num('limit', limit, 1, 1e9, true) };
  if (format === 'sft') filters.min_confidence = num('min_confidence', minConfidence, 0, 1);
  if (format === 'dpo') filters.min_confidence_diff = num('min_confidence_diff', minConfidenceDiff, 0, 1);
  if (format !== 'gauntlet') {
    filters.vertical = vertical || undefined;
    filters.split = split;
  } else {
    filters.attack_type = attackType.trim() || undefined;
    filters.min_severity = num('min_severity', minSeverity, 0, 10);
  }
  const filterKey = JSON.stringify({ format, ...filters });
  const invalid = Object.keys(checks).length > 0;

  const errorText = () => {
    const e = ft.lastError();
    if (!e) return 'failed';
    const fields = e.fieldErrors.map((f) => `${f.field}: ${f.reason}`).join('; ');
    return fields || e.message;
  };

  const preview = async () => {
    setBusy('Loading');
    setProblem(null);
    setMessage(null);
    const fn = format === 'sft' ? ft.exportSFT : format === 'dpo' ? ft.exportDPO : ft.exportGauntlet;
    const result = (await fn(filters)) as AnyRecord[] | null;
    setBusy(null);
    if (!result) {
      setProblem(`The export could not be loaded: ${errorText()}`);
      return;
    }
    setRecords(result);
    setPreviewOf(filterKey);
  };

  const download = async () => {
    setBusy('Downloading');
    setProblem(null);
    setMessage(null);
    const text = await ft.exportJsonl(format, filters);
    setBusy(null);
    if (text === null) {
      setProblem(`The download failed: ${errorText()}`);
      return;
    }
    const count = text.split('\n').filter((l) => l.trim()).length;
    const name = `${format}_export_${new Date().toISOString().slice(0, 19).replace(/[:T]/g, '-')}.jsonl`;
    const url = URL.createObjectURL(new Blob([text], { type: 'application/x-ndjson' }));
    const a = document.createElement('a');
    a.href = url;
    a.download = name;
    document.body.appendChild(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30000);
    setMessage(`Downloaded ${name}: ${count} records.`);
  };

  const writeToServer = async () => {
    setBusy('Writing');
    setProblem(null);
    setMessage(null);
    const w = await ft.writeExport(format, filters);
    setBusy(null);
    if (!w) setProblem(`The export could not be written: ${errorText()}`);
    else setWritten(w);
  };

  const ts = ft.trainingStats;
  const fresh = records !== null && previewOf === filterKey;
  return (
    <section aria-label="Exports" className="exports">
      <div className="export-summary">
        {ts ? (
          <p data-testid="data-stats">
            <strong>{formatNumber(ts.total_debates)}</strong> debates stored
            {Object.keys(ts.debates_per_vertical).length > 0 &&
              ` (${Object.entries(ts.debates_per_vertical)
                .map(([v, n]) => `${v} ${n}`)
                .join(', ')})`}{' '}
            · <strong>{formatNumber(ts.total_gauntlet_runs)}</strong> gauntlet runs · SFT data {ts.sft_available ? 'available' : 'not available yet'}
          </p>
        ) : (
          <p className="muted">Training-data statistics are not loaded (is the exporter running?).</p>
        )}
      </div>
      <div className="format-tabs" role="radiogroup" aria-label="Export format">
        {(Object.keys(FORMAT_INFO) as ExportFormat[]).map((f) => (
          <label key={f} className={`format-choice${format === f ? ' active' : ''}`}>
            <input type="radio" name="format" value={f} checked={format === f} onChange={() => setFormat(f)} /> {FORMAT_INFO[f].title}
          </label>
        ))}
      </div>
      <p className="muted">{FORMAT_INFO[format].about}</p>
      <form
        className="toolbar wrap"
        onSubmit={(e) => {
          e.preventDefault();
          void preview();
        }}
      >
        {format === 'sft' && (
          <label className={checks.min_confidence ? 'invalid' : ''}>
            min_confidence <input size={5} value={minConfidence} onChange={(e) => setMinConfidence(e.target.value)} aria-label="min_confidence" />
            {checks.min_confidence && <small className="field-error">{checks.min_confidence}</small>}
          </label>
        )}
        {format === 'dpo' && (
          <label className={checks.min_confidence_diff ? 'invalid' : ''}>
            min_confidence_diff{' '}
            <input size={5} value={minConfidenceDiff} onChange={(e) => setMinConfidenceDiff(e.target.value)} aria-label="min_confidence_diff" />
            {checks.min_confidence_diff && <small className="field-error">{checks.min_confidence_diff}</small>}
          </label>
        )}
        <label className={checks.limit ? 'invalid' : ''}>
          limit <input size={6} value={limit} onChange={(e) => setLimit(e.target.value)} aria-label="limit" />
          {checks.limit && <small className="field-error">{checks.limit}</small>}
        </label>
        {format !== 'gauntlet' && (
          <>
            <label>
              vertical{' '}
              <select value={vertical} onChange={(e) => setVertical(e.target.value)} aria-label="vertical">
                <option value="">all</option>
                {verticals.map((v) => (
                  <option key={v} value={v}>
                    {v}
                  </option>
                ))}
              </select>
            </label>
            <label>
              split{' '}
              <select value={split} onChange={(e) => setSplit(e.target.value as Split)} aria-label="split">
                <option value="train">train</option>
                <option value="heldout">heldout</option>
                <option value="all">all</option>
              </select>
            </label>
          </>
        )}
        {format === 'gauntlet' && (
          <>
            <label>
              attack_type <input size={14} value={attackType} onChange={(e) => setAttackType(e.target.value)} aria-label="attack_type" placeholder="any" />
            </label>
            <label className={checks.min_severity ? 'invalid' : ''}>
              min_severity <input size={4} value={minSeverity} onChange={(e) => setMinSeverity(e.target.value)} aria-label="min_severity" placeholder="0–10" />
              {checks.min_severity && <small className="field-error">{checks.min_severity}</small>}
            </label>
          </>
        )}
        <button type="submit" className="primary" disabled={invalid || busy !== null}>
          Preview
        </button>
        <button type="button" disabled={invalid || busy !== null} onClick={() => void download()}>
          Download JSONL
        </button>
        <button type="button" disabled={invalid || busy !== null} onClick={() => void writeToServer()} title="Write the export as a JSONL file into the exporter's export directory">
          Save to export directory
        </button>
        {busy && <span className="muted">{busy}…</span>}
      </form>
      <p className="muted small-text">
        <code>
          GET /api/training/export/{format}
          {Object.entries(filters)
            .filter(([, v]) => v !== undefined)
            .map(([k, v], i) => `${i === 0 ? '?' : '&'}${k}=${v}`)
            .join('')}
        </code>
      </p>
      {problem && (
        <p className="error-text" role="alert">
          {problem}
        </p>
      )}
      {message && <p className="ok-text">{message}</p>}
      {written && (
        <p className="ok-text" data-testid="written-export">
          Wrote <code>{written.name}</code>: {written.record_count} records, {formatBytes(written.size_bytes)}.
        </p>
      )}
      {records !== null && (
        <div className={fresh ? '' : 'stale'}>
          <p data-testid="record-count">
            <strong>{records.length}</strong> record{records.length === 1 ? '' : 's'} match
            {filters.limit !== undefined && records.length >= filters.limit ? ` (the limit of ${filters.limit}; there may be more)` : ''}
            {records.length > 0 ? ` · showing the first ${Math.min(PREVIEW, records.length)}` : ''}
            {!fresh && ' · filters changed: preview again'}
          </p>
          <ol className="records" data-testid="export-preview">
            {records.slice(0, PREVIEW).map((r, i) => (
              <li key={i}>
                <RecordView format={(JSON.parse(previewOf) as { format: ExportFormat }).format} record={r} />
              </li>
            ))}
          </ol>
        </div>
      )}
      {ts && ts.exported_files.length > 0 && (
        <>
          <h3>Files in the export directory</h3>
          <p className="muted small-text">
            <code>{ts.export_directory}</code>
          </p>
          <table className="files">
            <thead>
              <tr>
                <th>File</th>
                <th className="num">Size</th>
                <th>Written</th>
              </tr>
            </thead>
            <tbody>
              {ts.exported_files.map((f) => (
                <tr key={f.name}>
                  <td>
                    <code>{f.name}</code>
                  </td>
                  <td className="num">{formatBytes(f.size_bytes)}</td>
                  <td>{formatTime(f.created_at)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </section>
  );
}
