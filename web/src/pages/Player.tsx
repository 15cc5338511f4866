import Hls from "hls.js";
import { useEffect, useState } from "react";
import { getText } from "../api";
import { ErrorPanel, Loading } from "../components/ErrorPanel";
import { Waterfall } from "../components/Waterfall";
import { useApi } from "../hooks";

/** Play the signed playlist in `text` in `video` (hls.js over MSE, or native HLS). */
function usePlayback(video: HTMLVideoElement | null, text: string | null): string | null {
  const [failure, setFailure] = useState<string | null>(null);
  useEffect(() => {
    if (!video || text === null) return;
    setFailure(null);
    // The playlist was fetched by the page (for its trace); its segment URLs are absolute and
    // pre-signed, so the player can read it from memory.
    const source = URL.createObjectURL(new Blob([text], { type: "application/vnd.apple.mpegurl" }));
    let hls: Hls | null = null;
    if (Hls.isSupported()) {
      hls = new Hls();
      hls.on(Hls.Events.ERROR, (_event, data) => {
        if (data.fatal) {
          const status = data.response?.code ? ` (HTTP ${data.response.code})` : "";
          setFailure(`Playback failed: ${data.details}${status}.`);
        }
      });
      hls.loadSource(source);
      hls.attachMedia(video);
    } else if (video.canPlayType("application/vnd.apple.mpegurl")) {
      video.src = source;
    } else {
      setFailure("This browser cannot play HLS (no Media Source Extensions).");
    }
    return () => {
      hls?.destroy();
      URL.revokeObjectURL(source);
    };
  }, [video, text]);
  return failure;
}

/** An episode: its playlist with every segment signed, played in the page. */
export function Player({ id, number }: { id: string; number: string }) {
  const path = `/dramas/${encodeURIComponent(id)}/episodes/${encodeURIComponent(number)}/playlist.m3u8`;
  const [load, retry] = useApi(path, getText);
  const [video, setVideo] = useState<HTMLVideoElement | null>(null);
  const failure = usePlayback(video, load.state === "ok" ? load.result.data : null);
  if (load.state === "loading") return <Loading what="the episode" />;
  if (load.state === "error") {
    return (
      <main>
        <ErrorPanel error={load.error} onRetry={retry} />
        <Waterfall info={load.error.info} />
      </main>
    );
  }
  return (
    <main>
      <p>
        <a href={`#/dramas/${encodeURIComponent(id)}`}>← Drama {id}</a>
      </p>
      <h1>
        Drama {id}, episode {number}
      </h1>
      <video
        ref={setVideo}
        controls
        autoPlay
        muted
        playsInline
        data-testid="video"
      />
      {failure ? (
        <div className="error" role="alert">
          <p>{failure}</p>
          <button type="button" onClick={retry}>
            Retry
          </button>
        </div>
      ) : null}
      <Waterfall info={load.result.info} />
    </main>
  );
}

export default Player;
