import type { JobMetrics, ModelEvaluation } from '../api/types';
import { formatNumber, formatPercent } from '../format';

/** A completed job's measured metrics: the adapter beside the base model, and accuracy per vertical as bars. */
export function MetricsPanel({ metrics }: { metrics: JobMetrics }) {
  const base = metrics.base;
  const adapter = metrics.adapter;
  const rows: { label: string; pick: (e: ModelEvaluation) => number | null; fmt: (n: number | null) => string; lowerIsBetter?: boolean }[] = [
    { label: 'Held-out loss', pick: (e) => e.heldout_loss, fmt: (n) => formatNumber(n), lowerIsBetter: true },
    { label: 'Perplexity', pick: (e) => e.perplexity, fmt: (n) => formatNumber(n), lowerIsBetter: true },
    { label: 'Preference accuracy', pick: (e) => e.preference_accuracy, fmt: (n) => formatPercent(n) },
  ];
  const verticals = Array.from(
    new Set([...Object.keys(metrics.vertical_accuracy ?? {}), ...Object.keys(adapter?.vertical_accuracy ?? {}), ...Object.keys(base?.vertical_accuracy ?? {})]),
  ).sort();
  return (
    <div className="metrics" data-testid="metrics-panel">
      <dl className="kv">
        <dt>Final training loss</dt>
        <dd data-testid="metric-final-loss">{formatNumber(metrics.final_loss)}</dd>
        <dt>Training examples</dt>
        <dd>{formatNumber(metrics.training_data_examples)}</dd>
        <dt>Training debates</dt>
        <dd>{formatNumber(metrics.training_data_debates)}</dd>
        <dt>Elo rating (base = 1500)</dt>
        <dd>{formatNumber(metrics.elo_rating, 5)}</dd>
        <dt>Win rate against base</dt>
        <dd>{formatPercent(metrics.win_rate)}</dd>
        <dt>Held-out evaluation</dt>
        <dd>
          {metrics.eval_sft_records} SFT records · {metrics.eval_dpo_pairs} DPO pairs · {metrics.eval_matches} matches
        </dd>
      </dl>
      {(base || adapter) && (
        <table className="compare">
          <thead>
            <tr>
              <th>Held-out metric</th>
              <th>Base model</th>
              <th>Adapter</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((r) => {
              const b = base ? r.pick(base) : null;
              const a = adapter ? r.pick(adapter) : null;
              const better = a !== null && b !== null && a !== b ? (r.lowerIsBetter ? a < b : a > b) : null;
              return (
                <tr key={r.label}>
                  <td>{r.label}</td>
                  <td>{r.fmt(b)}</td>
                  <td className={better === null ? '' : better ? 'better' : 'worse'}>{r.fmt(a)}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      )}
      <h4>Accuracy per vertical</h4>
      {verticals.length === 0 ? (
        <p className="muted">No held-out pairs per vertical were evaluated.</p>
      ) : (
        <div className="bars" data-testid="vertical-bars">
          {verticals.map((v) => {
            const a = adapter?.vertical_accuracy?.[v] ?? metrics.vertical_accuracy?.[v];
            const b = base?.vertical_accuracy?.[v];
            return (
              <div className="bar-group" key={v}>
                <span className="bar-label">{v}</span>
                <div className="bar-pair">
                  {b !== undefined && (
                    <div className="bar-row">
                      <div className="bar base" style={{ width: `${Math.max(0, Math.min(1, b)) * 100}%` }} />
                      <span className="bar-value">base {formatPercent(b)}</span>
                    </div>
                  )}
                  {a !== undefined && (
                    <div className="bar-row">
                      <div className="bar adapter" style={{ width: `${Math.max(0, Math.min(1, a)) * 100}%` }} />
                      <span className="bar-value">adapter {formatPercent(a)}</span>
                    </div>
                  )}
                </div>
              </div>
            );
          })}
        </div>
      )}
    </div>
  );
}
