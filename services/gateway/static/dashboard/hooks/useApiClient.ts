/**
 * useApiClient: the gateway client of useFineTuning and the API token it sends (given in the options, or the
 * one saved in localStorage; `setToken` saves a new one).
 */
import { useCallback, useEffect, useMemo, useRef, useState } from 'react';
import { ApiClient, TOKEN_STORAGE_KEY } from '../api/client';

function readSavedToken(): string | null {
  try {
    return globalThis.localStorage?.getItem(TOKEN_STORAGE_KEY) || null;
  } catch {
    return null;
  }
}

function saveToken(token: string | null): void {
  try {
    if (token) globalThis.localStorage?.setItem(TOKEN_STORAGE_KEY, token);
    else globalThis.localStorage?.removeItem(TOKEN_STORAGE_KEY);
  } catch {
    /* storage disabled: the token lasts for this page only */
  }
}

export interface ApiClientState {
  client: ApiClient;
  token: string | null;
  /** Sets (and saves in localStorage) the API token, or clears it with null. */
  setToken: (token: string | null) => void;
}

export function useApiClient(options: { baseUrl: string; token?: string | null; fetch?: typeof fetch }): ApiClientState {
  const { baseUrl } = options;
  const [token, setTokenState] = useState<string | null>(() => (options.token !== undefined ? options.token : readSavedToken()));
  const tokenRef = useRef(token);
  tokenRef.current = token;
  useEffect(() => {
    if (options.token !== undefined) setTokenState(options.token);
  }, [options.token]);

  const fetchRef = useRef(options.fetch);
  fetchRef.current = options.fetch;
  const client = useMemo(
    () =>
      new ApiClient({
        baseUrl,
        getToken: () => tokenRef.current,
        fetch: (input, init) => (fetchRef.current ?? globalThis.fetch)(input, init),
      }),
    [baseUrl],
  );

  const setToken = useCallback((t: string | null) => {
    const clean = t && t.trim() ? t.trim() : null;
    saveToken(clean);
    tokenRef.current = clean;
    setTokenState(clean);
  }, []);

  return { client, token, setToken };
}
