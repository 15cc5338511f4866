import { type DramaDetail, getJson } from "../api";
import { ErrorPanel, Loading } from "../components/ErrorPanel";
import { Waterfall } from "../components/Waterfall";
import { useApi } from "../hooks";

const minutes = (seconds: number) => `${Math.round(seconds / 60)} min`;

/** A drama (GET /dramas/{id}): synopsis and episodes, each a link to the player. */
export function Drama({ id }: { id: string }) {
  const [load, retry] = useApi(`/dramas/${encodeURIComponent(id)}`, getJson<DramaDetail>);
  if (load.state === "loading") return <Loading what="the drama" />;
  if (load.state === "error") {
    return (
      <main>
        <ErrorPanel error={load.error} onRetry={retry} />
        <Waterfall info={load.error.info} />
      </main>
    );
  }
  const { data: drama, info } = load.result;
  return (
    <main>
      <p>
        <a href="#/">← Catalogue</a>
      </p>
      <h1>{drama.title}</h1>
      <p className="meta">
        {drama.year} · {drama.country} · {drama.genres.join(", ")} · {drama.episode_count} episodes
      </p>
      <p className="synopsis">{drama.synopsis}</p>
      <h2>Episodes</h2>
      <ol className="episodes">
        {drama.episodes.map((episode) => (
          <li key={episode.number} data-testid="episode">
            <a href={`#/dramas/${drama.id}/episodes/${episode.number}`}>
              {episode.number}. {episode.title}
            </a>{" "}
            <span className="meta">{minutes(episode.duration_s)}</span>
          </li>
        ))}
      </ol>
      <Waterfall info={info} />
    </main>
  );
}
