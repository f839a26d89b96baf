import { formatNumber } from '../format';

export interface LossPoint {
  step: number;
  loss: number;
}

/** The validation point of an eval event of phase "validation" (validation during training), else null. */
export function validationPoint(e: { type: string; phase?: string; metrics?: Record<string, number> }): LossPoint | null {
  if (e.type !== 'eval' || e.phase !== 'validation' || !e.metrics) return null;
  const { step, validation_loss: loss } = e.metrics;
  return Number.isFinite(step) && Number.isFinite(loss) ? { step, loss } : null;
}

/** The training loss per step as an SVG line (drawn from the job's step events), and beside it the validation
 * loss (from the eval events of phase "validation") as a dashed line with its best point marked. */
export function LossChart({
  points,
  validation = [],
  totalSteps,
  height = 120,
}: {
  points: LossPoint[];
  validation?: LossPoint[];
  totalSteps?: number;
  height?: number;
}) {
  const finite = points.filter((p) => Number.isFinite(p.loss));
  const val = validation.filter((p) => Number.isFinite(p.loss));
  if (finite.length === 0) {
    return <div className="loss-chart empty">No loss reported yet.</div>;
  }
  const width = 420;
  const pad = { left: 44, right: 10, top: 10, bottom: 22 };
  const all = [...finite, ...val];
  const maxStep = Math.max(totalSteps || 0, ...all.map((p) => p.step), 1);
  const minStep = Math.min(...all.map((p) => p.step), 1);
  let lo = Math.min(...all.map((p) => p.loss));
  let hi = Math.max(...all.map((p) => p.loss));
  if (hi - lo < 1e-9) {
    hi += 0.5;
    lo = Math.max(0, lo - 0.5);
  }
  const x = (s: number) => pad.left + ((s - minStep) / Math.max(maxStep - minStep, 1)) * (width - pad.left - pad.right);
  const y = (l: number) => pad.top + (1 - (l - lo) / (hi - lo)) * (height - pad.top - pad.bottom);
  const path = finite.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const last = finite[finite.length - 1];
  const valPath = val.map((p, i) => `${i === 0 ? 'M' : 'L'}${x(p.step).toFixed(1)},${y(p.loss).toFixed(1)}`).join(' ');
  const best = val.length > 0 ? val.reduce((b, p) => (p.loss < b.loss ? p : b)) : null;
  const lastVal = val.length > 0 ? val[val.length - 1] : null;
  return (
    <figure className="loss-chart" data-testid="loss-chart" data-points={finite.length} data-validation-points={val.length}>
      <svg viewBox={`0 0 ${width} ${height}`} role="img" aria-label={`Training loss over ${finite.length} steps, latest ${formatNumber(last.loss)}`}>
        <line x1={pad.left} y1={height - pad.bottom} x2={width - pad.right} y2={height - pad.bottom} className="axis" />
        <line x1={pad.left} y1={pad.top} x2={pad.left} y2={height - pad.bottom} className="axis" />
        <text x={pad.left - 4} y={pad.top + 8} className="tick" textAnchor="end">
          {formatNumber(hi, 3)}
        </text>
        <text x={pad.left - 4} y={height - pad.bottom} className="tick" textAnchor="end">
          {formatNumber(lo, 3)}
        </text>
        <text x={pad.left} y={height - 6} className="tick">
          step {minStep}
        </text>
        <text x={width - pad.right} y={height - 6} className="tick" textAnchor="end">
          {maxStep}
        </text>
        <path d={path} className="line" />
        {finite.length < 60 && finite.map((p) => <circle key={p.step} cx={x(p.step)} cy={y(p.loss)} r={2} className="dot" />)}
        {val.length > 0 && <path d={valPath} className="line validation" data-testid="validation-line" />}
        {val.map((p) => (
          <circle key={`v${p.step}`} cx={x(p.step)} cy={y(p.loss)} r={p === best ? 4 : 2.5} className={p === best ? 'dot validation best' : 'dot validation'} />
        ))}
      </svg>
      <figcaption>
        Loss by step · latest {formatNumber(last.loss)} at step {last.step}
        {lastVal && best && (
          <span data-testid="validation-caption">
            {' '}
            · <span className="validation-key">validation</span> {formatNumber(lastVal.loss)} at step {lastVal.step}, best {formatNumber(best.loss)} at step {best.step}
          </span>
        )}
      </figcaption>
    </figure>
  );
}
