import { useMemo, useState } from 'react';
import type { BaseModel } from '../api/types';
import { formatParams } from '../format';

function uniq(values: string[]): string[] {
  return Array.from(new Set(values.filter(Boolean))).sort((a, b) => a.localeCompare(b));
}

/** Available Models: the catalogue, filterable by provider, size, vertical and capability. */
export function ModelsTab({ models, loading, onUse }: { models: BaseModel[]; loading: boolean; onUse: (model: BaseModel) => void }) {
  const [provider, setProvider] = useState('');
  const [size, setSize] = useState('');
  const [vertical, setVertical] = useState('');
  const [capability, setCapability] = useState('');
  const [availableOnly, setAvailableOnly] = useState(false);

  const providers = useMemo(() => uniq(models.map((m) => m.provider)), [models]);
  const sizes = useMemo(() => {
    const bySize = new Map<string, number>();
    for (const m of models) {
      const s = m.size || formatParams(m.parameters);
      bySize.set(s, Math.min(bySize.get(s) ?? Infinity, m.parameters || 0));
    }
    return Array.from(bySize.entries())
      .sort((a, b) => a[1] - b[1])
      .map(([s]) => s);
  }, [models]);
  const verticals = useMemo(() => uniq(models.flatMap((m) => m.verticals)), [models]);
  const capabilities = useMemo(() => uniq(models.flatMap((m) => m.capabilities)), [models]);

  const shown = models
    .filter(
      (m) =>
        (!provider || m.provider === provider) &&
        (!size || (m.size || formatParams(m.parameters)) === size) &&
        (!vertical || m.verticals.includes(vertical)) &&
        (!capability || m.capabilities.includes(capability)) &&
        (!availableOnly || m.available),
    )
    .sort((a, b) => Number(b.recommended) - Number(a.recommended) || Number(b.available) - Number(a.available) || a.parameters - b.parameters);

  const select = (label: string, value: string, set: (v: string) => void, options: string[]) => (
    <label>
      {label}{' '}
      <select aria-label={`Filter by ${label.toLowerCase()}`} value={value} onChange={(e) => set(e.target.value)}>
        <option value="">Any</option>
        {options.map((o) => (
          <option key={o} value={o}>
            {o}
          </option>
        ))}
      </select>
    </label>
  );

  return (
    <section aria-label="Available models">
      <div className="toolbar">
        {select('Provider', provider, setProvider, providers)}
        {select('Size', size, setSize, sizes)}
        {select('Vertical', vertical, setVertical, verticals)}
        {select('Capability', capability, setCapability, capabilities)}
        <label>
          <input type="checkbox" checked={availableOnly} onChange={(e) => setAvailableOnly(e.target.checked)} /> Available here only
        </label>
        <span className="muted">
          {shown.length} of {models.length} models
        </span>
      </div>
      {models.length === 0 && <p className="empty">{loading ? 'Loading the catalogue…' : 'The catalogue could not be loaded (is the trainer running?).'}</p>}
      <div className="model-grid">
        {shown.map((m) => (
          <article
            key={m.id}
            className={`model-card${m.available ? '' : ' unavailable'}${m.recommended ? ' recommended' : ''}`}
            data-testid="model-card"
            data-model-id={m.id}
            data-available={m.available}
          >
            <header>
              <h3>{m.name || m.id}</h3>
              {m.recommended && (
                <span className="badge recommended" title="Recommended for common use">
                  ★ Recommended
                </span>
              )}
            </header>
            <p className="muted small-text">
              <code>{m.id}</code>
            </p>
            {m.description && <p>{m.description}</p>}
            <dl className="kv">
              <dt>Provider</dt>
              <dd>{m.provider || '–'}</dd>
              <dt>Size</dt>
              <dd>
                {m.size || formatParams(m.parameters)}
                {m.parameters ? ` (${m.parameters.toLocaleString()} parameters)` : ''}
              </dd>
              <dt>Max sequence</dt>
              <dd>{m.max_seq_length ? `${m.max_seq_length.toLocaleString()} tokens` : '–'}</dd>
              <dt>Verticals</dt>
              <dd>{m.verticals.length ? m.verticals.map((v) => <span key={v} className="chip">{v}</span>) : '–'}</dd>
              <dt>Capabilities</dt>
              <dd>{m.capabilities.length ? m.capabilities.map((c) => <span key={c} className="chip">{c}</span>) : '–'}</dd>
            </dl>
            {m.available ? (
              <button type="button" className="small" onClick={() => onUse(m)}>
                Fine-tune this model
              </button>
            ) : (
              <p className="unavailable-reason" data-testid="unavailable-reason">
                Not available on this server: {m.unavailable_reason || 'its weights are not here'}
              </p>
            )}
          </article>
        ))}
      </div>
    </section>
  );
}
