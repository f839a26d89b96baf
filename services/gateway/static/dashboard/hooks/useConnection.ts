/**
 * useConnection: what the page knows about the gateway and its backends (`/healthz`), the banner's source and
 * what brings the page back by itself: when the connection returns after trouble, `onBack` reloads everything.
 */
import { useCallback, useRef, useState, type MutableRefObject } from 'react';
import type { ApiClient, ApiError } from '../api/client';
import type { Health } from '../api/types';

/** What the page knows about the gateway and its backends. */
export interface ConnectionState {
  /** 'ok': all serving; 'degraded': the gateway answers but a backend does not; 'offline': no gateway. */
  status: 'unknown' | 'ok' | 'degraded' | 'offline';
  /** Each service's health as /healthz reports it (empty when offline). */
  services: Record<string, string>;
  /** A sentence for people. */
  message: string;
  /** When the current trouble began (ms since epoch), null when ok. */
  since: number | null;
  /** When the page last heard from the gateway (ms since epoch). */
  lastOk: number | null;
}

function describeHealth(health: Health): string {
  const down = Object.entries(health.services).filter(([, v]) => v !== 'SERVING');
  if (down.length === 0) return 'All services are running.';
  const names = down.map(([k, v]) => `the ${k} service (${v})`).join(' and ');
  return `The gateway cannot reach ${names}.`;
}

export interface Connection {
  connection: ConnectionState;
  /** Asks /healthz now (one check at a time). */
  checkHealth: () => Promise<void>;
  /** An API call succeeded: the gateway is up (clears 'offline', not 'degraded'). */
  markOk: () => void;
  /** An API call failed: an unavailable gateway or backend triggers a health check. */
  noteFailure: (err: ApiError) => void;
}

export function useConnection(
  client: ApiClient,
  mounted: MutableRefObject<boolean>,
  setUnauthorized: (value: boolean) => void,
  onBack: MutableRefObject<() => void>,
): Connection {
  const [connection, setConnection] = useState<ConnectionState>({ status: 'unknown', services: {}, message: '', since: null, lastOk: null });
  const connectionRef = useRef(connection);
  connectionRef.current = connection;

  const checkingHealth = useRef(false);
  const checkHealth = useCallback(async () => {
    if (checkingHealth.current) return;
    checkingHealth.current = true;
    const before = connectionRef.current.status;
    let next: ConnectionState;
    try {
      const { ok, health } = await client.health();
      next = ok
        ? { status: 'ok', services: health.services, message: '', since: null, lastOk: Date.now() }
        : {
            status: 'degraded',
            services: health.services,
            message: describeHealth(health),
            since: connectionRef.current.since ?? Date.now(),
            lastOk: Date.now(),
          };
    } catch (err) {
      const e = err as ApiError;
      if (e.isUnauthorized) {
        // A gateway that guards /healthz too: it is up; the token prompt is what the user needs.
        checkingHealth.current = false;
        if (mounted.current) setUnauthorized(true);
        return;
      }
      next = {
        status: 'offline',
        services: {},
        message: e.status === 0 ? 'Cannot reach the gateway.' : `The gateway answered ${e.status}: ${e.message}`,
        since: connectionRef.current.since ?? Date.now(),
        lastOk: connectionRef.current.lastOk,
      };
    } finally {
      checkingHealth.current = false;
    }
    if (!mounted.current) return;
    connectionRef.current = next;
    setConnection(next);
    if (next.status === 'ok' && before !== 'ok' && before !== 'unknown') {
      // Back again: reload what may have changed while the page could not see it.
      onBack.current();
    }
  }, [client, mounted, onBack, setUnauthorized]);

  const markOk = useCallback(() => {
    if (!mounted.current) return;
    setUnauthorized(false);
    const c = connectionRef.current;
    // An answer from the API proves the gateway is up, not that every backend is: only 'offline' clears here.
    if (c.status === 'offline' || c.status === 'unknown') {
      void checkHealth();
    } else if (c.status === 'ok') {
      setConnection((prev) => ({ ...prev, lastOk: Date.now() }));
    }
  }, [checkHealth, mounted, setUnauthorized]);

  const noteFailure = useCallback(
    (err: ApiError) => {
      if (err.isUnavailable) void checkHealth();
    },
    [checkHealth],
  );

  return { connection, checkHealth, markOk, noteFailure };
}
