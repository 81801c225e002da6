import { useCallback, useEffect, useRef, useState } from 'react';
import { ApiError } from './api.js';

/**
 * Loads data and reloads it every `intervalMs` (0: once) while the page is shown; `reload` refreshes at once.
 * Errors are kept beside the last good data, so a page keeps showing what it had while the vault is unreachable.
 */
export function usePoll<T>(load: () => Promise<T>, intervalMs: number, deps: unknown[] = []) {
  const [data, setData] = useState<T | undefined>(undefined);
  const [error, setError] = useState<Error | undefined>(undefined);
  const loadRef = useRef(load);
  const errorRef = useRef<Error | undefined>(undefined);
  loadRef.current = load;
  const reload = useCallback(async () => {
    try {
      setData(await loadRef.current());
      errorRef.current = undefined;
      setError(undefined);
    } catch (err) {
      errorRef.current = err as Error;
      setError(err as Error);
    }
  }, []);
  useEffect(() => {
    let stopped = false;
    let timer: ReturnType<typeof setTimeout> | undefined;
    const tick = async () => {
      await reload();
      // What is not there (a replication just disabled) will not appear by asking again: stop, and say so.
      const gone = errorRef.current instanceof ApiError && errorRef.current.status === 404;
      if (!stopped && intervalMs > 0 && !gone) timer = setTimeout(() => void tick(), intervalMs);
    };
    void tick();
    return () => {
      stopped = true;
      clearTimeout(timer);
    };
  }, [reload, intervalMs, ...deps]);
  return { data, error, reload };
}
