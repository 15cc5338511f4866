import type { RequestInfo } from "../api";
import { type Analysis, type TraceLoad, useTrace } from "../trace";

export const CATEGORY_LABELS: Record<string, string> = {
  app: "app",
  db: "db",
  s3: "s3",
  queue_wait: "queue wait",
  transit: "transit",
  reply_wait: "reply wait",
  broker: "broker",
  mesh: "mesh",
  network: "network",
  residual: "residual",
};

const label = (category: string) => CATEGORY_LABELS[category] ?? category;
const ms = (value: number) => `${value.toFixed(3)} ms`;

export function ServerTimings({ info }: { info: RequestInfo }) {
  if (info.timings.length === 0) return null;
  return (
    <ul className="server-timing" aria-label="Server-Timing">
      {info.timings.map((timing) => (
        <li key={timing.name} data-testid="server-timing">
          <span className="name">{timing.name}</span> {ms(timing.ms)}
        </li>
      ))}
    </ul>
  );
}

export function Totals({ analysis }: { analysis: Analysis }) {
  const entries = Object.entries(analysis.categories).filter(([, value]) => value > 0);
  const sum = entries.reduce((total, [, value]) => total + value, 0);
  return (
    <table className="totals">
      <caption>Critical path by category</caption>
      <tbody>
        {entries.map(([category, value]) => (
          <tr key={category} data-testid="category-total" data-category={category} data-ms={value}>
            <th>
              <span className={`swatch cat-${category}`} /> {label(category)}
            </th>
            <td>{ms(value)}</td>
            <td>{analysis.duration_ms > 0 ? `${((100 * value) / analysis.duration_ms).toFixed(1)}%` : ""}</td>
          </tr>
        ))}
        <tr className="sum">
          <th>total</th>
          <td data-testid="category-sum" data-ms={sum}>
            {ms(sum)}
          </td>
          <td />
        </tr>
      </tbody>
    </table>
  );
}

export function Bars({ analysis }: { analysis: Analysis }) {
  const whole = analysis.duration_ms || 1;
  return (
    <ol className="bars">
      {analysis.spans.map((span) => {
        const left = Math.min(100, Math.max(0, (100 * span.start_ms) / whole));
        const width = Math.max(0.3, Math.min(100 - left, (100 * span.duration_ms) / whole));
        return (
          <li
            key={span.span_id}
            className={span.critical ? "row critical" : "row"}
            data-testid="span-row"
            data-category={span.category}
            data-critical={span.critical}
            title={`${span.service}: ${span.name} (${span.kind}), ${ms(span.duration_ms)}; ${label(span.category)}${
              span.critical ? `, ${ms(span.self_ms)} on the critical path` : ""
            }`}
          >
            <span className="span-name" style={{ paddingLeft: `${span.depth * 0.8}em` }}>
              {span.critical ? <b aria-label="on the critical path">◆ </b> : null}
              <span className="service">{span.service}</span> {span.name}
            </span>
            <span className="track">
              <span
                className={`bar cat-${span.category}`}
                style={{ left: `${left}%`, width: `${width}%` }}
              />
            </span>
            <span className="duration">{ms(span.duration_ms)}</span>
          </li>
        );
      })}
    </ol>
  );
}

function TraceBody({ load }: { load: TraceLoad }) {
  switch (load.state) {
    case "none":
      return <p className="note">This request was not sampled: it has no trace.</p>;
    case "missing":
      return <p className="note">The trace did not reach the trace store.</p>;
    case "error":
      return <p className="note">Could not read the trace: {load.message}.</p>;
    case "waiting":
      return (
        <>
          <p className="note" role="status">
            Waiting for the spans ({load.analysis ? `${load.analysis.spans.length} so far` : "none yet"})…
          </p>
          {load.analysis ? <Bars analysis={load.analysis} /> : null}
        </>
      );
    case "ok":
      return (
        <>
          {load.complete ? null : <p className="note">Some spans may still be missing.</p>}
          <p className="trace-duration" data-testid="trace-duration" data-ms={load.analysis.duration_ms}>
            {load.analysis.root}: {ms(load.analysis.duration_ms)}, {load.analysis.spans.length} spans
          </p>
          <Totals analysis={load.analysis} />
          <p className="legend">
            One bar per span, coloured by its category; ◆ and a dark outline: on the critical path.
          </p>
          <Bars analysis={load.analysis} />
        </>
      );
  }
}

/** Where the time of the request that built the page went: Server-Timing, then the trace. */
export function Waterfall({ info }: { info: RequestInfo | null }) {
  const load = useTrace(info?.trace ?? null);
  if (info === null) return null;
  return (
    <section className="waterfall" aria-label="Where the time went" data-state={load.state}>
      <h2>
        Where the time went: <code>GET {info.path}</code>
      </h2>
      <ServerTimings info={info} />
      {info.trace ? (
        <p className="trace-id">
          trace <code data-testid="trace-id">{info.trace.traceId}</code>
        </p>
      ) : null}
      <TraceBody load={load} />
    </section>
  );
}
