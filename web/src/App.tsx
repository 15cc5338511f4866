import { lazy, Suspense } from "react";
import { Loading } from "./components/ErrorPanel";
import { useRoute } from "./hooks";
import { Catalogue } from "./pages/Catalogue";
import { Drama } from "./pages/Drama";

// hls.js is most of the bundle: loaded when an episode is opened.
const Player = lazy(() => import("./pages/Player"));

export function App() {
  const route = useRoute();
  return (
    <>
      <header>
        <a href="#/" className="brand">
          drama-streaming
        </a>
        <span className="tagline">every click, and where its time went</span>
      </header>
      {route.page === "catalogue" ? <Catalogue /> : null}
      {route.page === "drama" ? <Drama key={route.id} id={route.id} /> : null}
      {route.page === "episode" ? (
        <Suspense fallback={<Loading what="the player" />}>
          <Player key={`${route.id}/${route.number}`} id={route.id} number={route.number} />
        </Suspense>
      ) : null}
      {route.page === "unknown" ? (
        <main className="error" role="alert">
          <h2>No such page</h2>
          <p>
            <a href="#/">Back to the catalogue</a>
          </p>
        </main>
      ) : null}
    </>
  );
}
