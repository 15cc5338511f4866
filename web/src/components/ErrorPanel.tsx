import { type ApiError, explain } from "../api";

/** A failed request in words a person understands, with a retry where retrying may help. */
export function ErrorPanel({ error, onRetry }: { error: ApiError; onRetry: () => void }) {
  const { title, message } = explain(error);
  return (
    <div className="error" role="alert" data-kind={error.kind}>
      <h2>{title}</h2>
      <p>{message}</p>
      {error.status ? <p className="status">HTTP {error.status}</p> : null}
      <p>
        {error.retryable ? (
          <button type="button" onClick={onRetry}>
            Retry
          </button>
        ) : null}{" "}
        <a href="#/">Back to the catalogue</a>
      </p>
    </div>
  );
}

export function Loading({ what }: { what: string }) {
  return (
    <p className="loading" role="status">
      Loading {what}…
    </p>
  );
}
