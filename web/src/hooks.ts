import { useCallback, useEffect, useState } from "react";
import { ApiError, type ApiResult } from "./api";

export type Load<T> =
  | { state: "loading" }
  | { state: "ok"; result: ApiResult<T> }
  | { state: "error"; error: ApiError };

/** Load `path` with `fetcher`; `retry` loads it again. A newer load cancels an older one. */
export function useApi<T>(
  path: string,
  fetcher: (path: string, signal: AbortSignal) => Promise<ApiResult<T>>,
): [Load<T>, () => void] {
  const [load, setLoad] = useState<Load<T>>({ state: "loading" });
  const [attempt, setAttempt] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    setLoad({ state: "loading" });
    fetcher(path, controller.signal).then(
      (result) => setLoad({ state: "ok", result }),
      (error: unknown) => {
        if (controller.signal.aborted) return;
        const failure =
          error instanceof ApiError ? error : new ApiError("server", 0, String(error), null);
        setLoad({ state: "error", error: failure });
      },
    );
    return () => controller.abort();
  }, [path, fetcher, attempt]);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);
  return [load, retry];
}

export type Route =
  | { page: "catalogue" }
  | { page: "drama"; id: string }
  | { page: "episode"; id: string; number: string }
  | { page: "unknown"; hash: string };

// Routes live in the fragment (#/dramas/1): the paths themselves belong to the API, which
// shares the origin (/dramas/1 is the JSON).
export function parseRoute(hash: string): Route {
  const path = hash.replace(/^#/, "") || "/";
  if (path === "/") return { page: "catalogue" };
  const episode = /^\/dramas\/([^/]+)\/episodes\/([^/]+)$/.exec(path);
  if (episode) return { page: "episode", id: episode[1] ?? "", number: episode[2] ?? "" };
  const drama = /^\/dramas\/([^/]+)$/.exec(path);
  if (drama) return { page: "drama", id: drama[1] ?? "" };
  return { page: "unknown", hash };
}

export function useRoute(): Route {
  const [hash, setHash] = useState(() => window.location.hash);
  useEffect(() => {
    const changed = () => setHash(window.location.hash);
    window.addEventListener("hashchange", changed);
    return () => window.removeEventListener("hashchange", changed);
  }, []);
  return parseRoute(hash);
}
