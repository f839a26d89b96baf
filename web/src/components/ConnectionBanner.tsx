import { useEffect, useState } from 'react';
import type { ConnectionState } from '../hooks/useFineTuning';
import { formatDuration } from '../format';

/**
 * Says, visibly, when the gateway or a backend service is down, and that the page is retrying; it goes away by
 * itself when the health check passes again.
 */
export function ConnectionBanner({ connection, onRetry }: { connection: ConnectionState; onRetry: () => void }) {
  const [, tick] = useState(0);
  const troubled = connection.status === 'offline' || connection.status === 'degraded';
  useEffect(() => {
    if (!troubled) return;
    // Re-render every second so "down for" counts up.
    const t = setInterval(() => tick((n) => n + 1), 1000);
    return () => clearInterval(t);
  }, [troubled]);
  const now = Date.now();
  if (!troubled) return null;
  const down = Object.entries(connection.services).filter(([, v]) => v !== 'SERVING');
  const consequences: string[] = [];
  if (connection.status === 'offline') consequences.push('Nothing can be loaded or changed until it answers again; the figures shown are the last ones seen.');
  if (down.some(([k]) => k === 'trainer')) consequences.push('Jobs cannot be listed, started or cancelled; running jobs go on in the trainer if it is still alive.');
  if (down.some(([k]) => k === 'exporter')) consequences.push('Exports and training-data statistics are unavailable; new jobs cannot fetch their data.');
  return (
    <div className={`banner banner-${connection.status}`} role="alert" data-testid="connection-banner" data-status={connection.status}>
      <strong>{connection.status === 'offline' ? 'Gateway unreachable.' : 'Service unavailable.'}</strong> {connection.message}{' '}
      {consequences.join(' ')}{' '}
      <span className="banner-retry">
        Retrying automatically{connection.since ? ` (down for ${formatDuration(Math.max(0, now - connection.since))})` : ''}.
      </span>{' '}
      <button type="button" className="link" onClick={onRetry}>
        Retry now
      </button>
    </div>
  );
}
