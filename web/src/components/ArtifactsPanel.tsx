import { useState } from 'react';
import type { JobArtifacts } from '../api/types';
import { formatBytes } from '../format';

/** A job's artifact files with their sizes, each downloadable. */
export function ArtifactsPanel({ artifacts, onDownload }: { artifacts: JobArtifacts; onDownload: (name: string) => Promise<boolean> }) {
  const [busy, setBusy] = useState<string | null>(null);
  const [failed, setFailed] = useState<string | null>(null);
  const total = artifacts.files.reduce((n, f) => n + f.size_bytes, 0);
  return (
    <div className="artifacts" data-testid="artifacts-panel">
      <dl className="kv">
        <dt>Adapter</dt>
        <dd>
          <code>{artifacts.checkpoint_path || '–'}</code>
        </dd>
        <dt>Training data</dt>
        <dd>
          <code>{artifacts.data_directory || '–'}</code>
        </dd>
      </dl>
      {artifacts.files.length === 0 ? (
        <p className="muted">No files yet.</p>
      ) : (
        <table className="files">
          <thead>
            <tr>
              <th>File</th>
              <th>Type</th>
              <th className="num">Size</th>
              <th />
            </tr>
          </thead>
          <tbody>
            {artifacts.files.map((f) => (
              <tr key={f.name} data-testid="artifact-row" data-name={f.name}>
                <td>
                  <code>{f.name}</code>
                </td>
                <td>{f.type}</td>
                <td className="num">{formatBytes(f.size_bytes)}</td>
                <td>
                  <button
                    type="button"
                    className="small"
                    disabled={busy === f.name}
                    onClick={async () => {
                      setBusy(f.name);
                      setFailed(null);
                      const ok = await onDownload(f.name);
                      if (!ok) setFailed(f.name);
                      setBusy(null);
                    }}
                  >
                    {busy === f.name ? 'Downloading…' : 'Download'}
                  </button>
                  {failed === f.name && <span className="error-text"> download failed</span>}
                </td>
              </tr>
            ))}
          </tbody>
          <tfoot>
            <tr>
              <td colSpan={2}>{artifacts.files.length} files</td>
              <td className="num">{formatBytes(total)}</td>
              <td />
            </tr>
          </tfoot>
        </table>
      )}
    </div>
  );
}
