/**
 * useApiCall: the error state every part of useFineTuning shares, and `call`, which runs one API call and
 * resolves with its result or with null (the failure then in `error`, and at once in `lastError()`).
 */
import { useCallback, useEffect, useRef, useState, type MutableRefObject } from 'react';
import { ApiError } from '../api/client';

/** Whether the component using the hook is still mounted (no state updates after unmount). */
export function useMounted(): MutableRefObject<boolean> {
  const mounted = useRef(true);
  useEffect(() => {
    mounted.current = true;
    return () => {
      mounted.current = false;
    };
  }, []);
  return mounted;
}

/** What `call` tells the connection tracking: an answer came, or a call failed. */
export interface CallListeners {
  onOk?: () => void;
  onFailure?: (err: ApiError) => void;
}

export type Call = <T>(action: string, fn: () => Promise<T>) => Promise<T | null>;

export interface ApiCallState {
  /** The latest failure, null after the next success of the same kind. */
  error: ApiError | null;
  setError: (update: (prev: ApiError | null) => ApiError | null) => void;
  /** The gateway answered 401: an API token is needed (or the one set is wrong). */
  unauthorized: boolean;
  setUnauthorized: (value: boolean) => void;
  /** Runs one call; on failure records the error and resolves with null. */
  call: Call;
  lastError: () => ApiError | null;
  clearError: () => void;
}

export function useApiCall(mounted: MutableRefObject<boolean>, listeners: MutableRefObject<CallListeners>): ApiCallState {
  const [error, setErrorState] = useState<ApiError | null>(null);
  const errorRef = useRef<ApiError | null>(null);
  const [unauthorized, setUnauthorized] = useState(false);

  const recordError = useCallback(
    (err: unknown, action: string): ApiError => {
      const apiErr = err instanceof ApiError ? err : new ApiError(0, { detail: String((err as Error)?.message ?? err), code: 'CLIENT' }, action);
      if (!apiErr.action) apiErr.action = action;
      errorRef.current = apiErr;
      if (mounted.current) {
        setErrorState(apiErr);
        if (apiErr.isUnauthorized) setUnauthorized(true);
      }
      return apiErr;
    },
    [mounted],
  );

  const call = useCallback(
    async <T,>(action: string, fn: () => Promise<T>): Promise<T | null> => {
      try {
        const result = await fn();
        listeners.current.onOk?.();
        return result;
      } catch (err) {
        const apiErr = recordError(err, action);
        listeners.current.onFailure?.(apiErr);
        return null;
      }
    },
    [listeners, recordError],
  );

  const setError = useCallback((update: (prev: ApiError | null) => ApiError | null) => setErrorState(update), []);
  const lastError = useCallback(() => errorRef.current, []);
  const clearError = useCallback(() => {
    errorRef.current = null;
    setErrorState(null);
  }, []);

  return { error, setError, unauthorized, setUnauthorized, call, lastError, clearError };
}
