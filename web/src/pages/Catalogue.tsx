import { useCallback, useEffect, useState } from "react";
import { ApiError, type DramaPage, type DramaSummary, getJson, type RequestInfo } from "../api";
import { ErrorPanel, Loading } from "../components/ErrorPanel";
import { Waterfall } from "../components/Waterfall";

export const PAGE_SIZE = 8;

type State =
  | { state: "loading" }
  | { state: "ok" }
  | { state: "error"; error: ApiError };

function Card({ drama }: { drama: DramaSummary }) {
  return (
    <li className="card" data-testid="drama-card">
      <a href={`#/dramas/${drama.id}`}>
        <h3>{drama.title}</h3>
      </a>
      <p className="meta">
        {drama.year} · {drama.country} · {drama.episode_count} episodes
      </p>
      <p className="genres">{drama.genres.join(", ")}</p>
    </li>
  );
}

/** The catalogue, a page at a time (GET /dramas, next_cursor); "More" asks for the next page. */
export function Catalogue() {
  const [items, setItems] = useState<DramaSummary[]>([]);
  const [cursor, setCursor] = useState<string | null>(null);
  const [next, setNext] = useState<string | null>(null);
  const [state, setState] = useState<State>({ state: "loading" });
  const [info, setInfo] = useState<RequestInfo | null>(null);
  const [attempt, setAttempt] = useState(0);

  useEffect(() => {
    const controller = new AbortController();
    const query = new URLSearchParams({ limit: String(PAGE_SIZE) });
    if (cursor) query.set("cursor", cursor);
    setState({ state: "loading" });
    getJson<DramaPage>(`/dramas?${query}`, controller.signal).then(
      ({ data, info }) => {
        setItems((shown) => (cursor ? [...shown, ...data.items] : data.items));
        setNext(data.next_cursor);
        setInfo(info);
        setState({ state: "ok" });
      },
      (error: unknown) => {
        if (controller.signal.aborted) return;
        const failure = error instanceof ApiError ? error : new ApiError("server", 0, String(error), null);
        setInfo(failure.info);
        setState({ state: "error", error: failure });
      },
    );
    return () => controller.abort();
  }, [cursor, attempt]);

  const more = useCallback(() => setCursor(next), [next]);
  const retry = useCallback(() => setAttempt((n) => n + 1), []);

  return (
    <main>
      <h1>Catalogue</h1>
      <ul className="cards">
        {items.map((drama) => (
          <Card key={drama.id} drama={drama} />
        ))}
      </ul>
      {state.state === "loading" ? <Loading what="dramas" /> : null}
      {state.state === "error" ? <ErrorPanel error={state.error} onRetry={retry} /> : null}
      {state.state === "ok" && next ? (
        <button type="button" className="more" onClick={more}>
          More dramas
        </button>
      ) : null}
      {state.state === "ok" && !next ? <p className="note">That is the whole catalogue.</p> : null}
      <Waterfall info={info} />
    </main>
  );
}
