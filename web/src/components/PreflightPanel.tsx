import type { Preflight } from '../api/types';
import { formatBytes, formatDuration } from '../format';

/**
 * A preflight's answer (`POST /api/training/jobs/preflight`), shown on New Job before Start Training: the data
 * (examples, tokens, how many are truncated or dropped), the steps, the time and memory estimates with how they
 * were measured, the warnings, and the first example with its trained tokens (the loss mask) highlighted.
 */
export function PreflightPanel({ result, onClose }: { result: Preflight; onClose: () => void }) {
  const rows: [string, string][] = [
    ['Data', `${result.records} records from ${result.source}`],
    ['Examples', `${result.examples}${result.dropped ? ` (${result.dropped} dropped: prompt fills max_seq_length)` : ''}`],
    ['Truncated', `${result.truncated} of ${result.examples} at max_seq_length ${result.training_config.max_seq_length ?? ''}`],
    ['Tokens per epoch', `${result.tokens_per_epoch.toLocaleString()} (${result.trained_tokens_per_epoch.toLocaleString()} trained; longest example ${result.longest_example})`],
    ['Steps', `${result.total_steps} (${result.steps_per_epoch} per epoch)`],
    ['Time', `≈ ${formatDuration(result.estimated_seconds * 1000)} at ${Math.round(result.tokens_per_second).toLocaleString()} tokens/s on ${result.device}`],
    ['Memory', `≈ ${formatBytes(result.estimated_memory_bytes)} estimated; ${formatBytes(result.measured_peak_memory_bytes)} peak measured`],
  ];
  return (
    <section className="preflight" aria-label="Preflight" data-testid="preflight-panel">
      <header>
        <strong>Preflight</strong> <span className="muted">— what this job would do; nothing was created</span>
        <button type="button" className="link" onClick={onClose} aria-label="Close preflight">
          ×
        </button>
      </header>
      <dl className="preflight-figures">
        {rows.map(([k, v]) => (
          <div key={k}>
            <dt>{k}</dt>
            <dd data-testid={`preflight-${k.toLowerCase().replace(/ /g, '-')}`}>{v}</dd>
          </div>
        ))}
      </dl>
      <p className="muted small-text">
        Throughput: {result.throughput_source}. Memory: {result.memory_breakdown}.
      </p>
      {result.warnings.length > 0 && (
        <ul className="notes" data-testid="preflight-warnings">
          {result.warnings.map((w) => (
            <li key={w} className="warning">
              {w}
            </li>
          ))}
        </ul>
      )}
      <div className="preflight-example">
        <div className="muted small-text">
          First example — <mark>highlighted</mark> tokens are trained (in the loss), the rest is context:
        </div>
        <pre data-testid="preflight-example">
          {result.example.map((s, i) =>
            s.trained ? (
              <mark key={i} title={`${s.tokens} trained tokens`}>
                {s.text}
              </mark>
            ) : (
              <span key={i} title={`${s.tokens} tokens, not trained`}>
                {s.text}
              </span>
            ),
          )}
        </pre>
      </div>
    </section>
  );
}
