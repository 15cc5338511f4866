// The API as the page sees it: JSON (or text) plus the two headers that say where the time went.
// `traceresponse` (W3C Trace Context level 2) names the request's trace; `Server-Timing` gives
// drama-service's own breakdown at once, before the spans reach the trace store.

export interface Stream {
  url: string;
  expires_at: string;
  playlist: string;
}

export interface Episode {
  number: number;
  title: string;
  duration_s: number;
  stream: Stream;
}

export interface DramaFields {
  id: number;
  title: string;
  synopsis: string;
  year: number;
  country: string;
  genres: string[];
  episode_count: number;
}

export interface DramaDetail extends DramaFields {
  episodes: Episode[];
}

export interface DramaSummary extends DramaFields {
  first_episode: Episode | null;
}

export interface DramaPage {
  items: DramaSummary[];
  next_cursor: string | null;
}

export interface Timing {
  name: string;
  ms: number;
}

export interface TraceRef {
  traceId: string;
  spanId: string;
  sampled: boolean;
}

/** What every request leaves behind for the waterfall. */
export interface RequestInfo {
  path: string;
  status: number;
  trace: TraceRef | null;
  timings: Timing[];
}

export interface ApiResult<T> {
  data: T;
  info: RequestInfo;
}

export type ErrorKind =
  | "not-found"
  | "bad-request"
  | "unavailable"
  | "timeout"
  | "bad-gateway"
  | "unreachable"
  | "server";

/** A failed request, with what a person should be told and whether retrying may help. */
export class ApiError extends Error {
  readonly kind: ErrorKind;
  readonly status: number;
  readonly detail: string;
  readonly info: RequestInfo | null;

  constructor(kind: ErrorKind, status: number, detail: string, info: RequestInfo | null) {
    super(detail);
    this.name = "ApiError";
    this.kind = kind;
    this.status = status;
    this.detail = detail;
    this.info = info;
  }

  get retryable(): boolean {
    return this.kind !== "not-found" && this.kind !== "bad-request";
  }
}

const TRACERESPONSE = /^00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$/;

export function parseTraceresponse(value: string | null): TraceRef | null {
  const match = value ? TRACERESPONSE.exec(value.trim().toLowerCase()) : null;
  if (!match || /^0+$/.test(match[1] ?? "0")) return null;
  const flags = Number.parseInt(match[3] ?? "00", 16);
  return { traceId: match[1] ?? "", spanId: match[2] ?? "", sampled: (flags & 1) === 1 };
}

/** `db;dur=0.4, episode;dur=3.1` into figures; entries without a duration are left out. */
export function parseServerTiming(value: string | null): Timing[] {
  if (!value) return [];
  const timings: Timing[] = [];
  for (const entry of value.split(",")) {
    const [name, ...params] = entry.split(";").map((part) => part.trim());
    const dur = params.find((param) => param.toLowerCase().startsWith("dur="));
    const ms = dur === undefined ? Number.NaN : Number.parseFloat(dur.slice(4));
    if (name && Number.isFinite(ms)) timings.push({ name, ms });
  }
  return timings;
}

export function errorKind(status: number): ErrorKind {
  if (status === 404) return "not-found";
  if (status === 400) return "bad-request";
  if (status === 503) return "unavailable";
  if (status === 504) return "timeout";
  if (status === 502) return "bad-gateway";
  return "server";
}

async function problemDetail(response: Response): Promise<string> {
  try {
    const body: unknown = await response.json();
    if (body && typeof body === "object" && "detail" in body) return String(body.detail);
  } catch {
    // not JSON: the status says enough
  }
  return response.statusText || `HTTP ${response.status}`;
}

async function request(path: string, signal?: AbortSignal): Promise<[Response, RequestInfo]> {
  let response: Response;
  try {
    response = await fetch(path, signal ? { signal } : {});
  } catch (error) {
    if (signal?.aborted) throw error;
    throw new ApiError("unreachable", 0, "The API is not reachable.", null);
  }
  const info: RequestInfo = {
    path,
    status: response.status,
    trace: parseTraceresponse(response.headers.get("traceresponse")),
    timings: parseServerTiming(response.headers.get("server-timing")),
  };
  if (!response.ok) {
    // drama-service names its trace on every answer; a 502-504 without one came from a gateway
    // (the local front, Istio's "no healthy upstream"): the API itself did not answer.
    const gateway = response.status >= 502 && response.status <= 504 && info.trace === null;
    const kind = gateway ? "unreachable" : errorKind(response.status);
    throw new ApiError(kind, response.status, await problemDetail(response), info);
  }
  return [response, info];
}

export async function getJson<T>(path: string, signal?: AbortSignal): Promise<ApiResult<T>> {
  const [response, info] = await request(path, signal);
  return { data: (await response.json()) as T, info };
}

export async function getText(path: string, signal?: AbortSignal): Promise<ApiResult<string>> {
  const [response, info] = await request(path, signal);
  return { data: await response.text(), info };
}

/** What to tell a person about a failed request. */
export function explain(error: ApiError): { title: string; message: string } {
  switch (error.kind) {
    case "not-found":
      return { title: "Not found", message: error.detail };
    case "bad-request":
      return { title: "That address is not valid", message: error.detail };
    case "unavailable":
      return {
        title: "A service is unavailable",
        message: `A part of the backend is not answering (a stopped worker or the broker). ${error.detail}`,
      };
    case "timeout":
      return {
        title: "The backend took too long",
        message: `A worker did not answer in time. ${error.detail}`,
      };
    case "bad-gateway":
      return { title: "The backend failed", message: error.detail };
    case "unreachable":
      return {
        title: "The API is not reachable",
        message: `drama-service did not answer; is it running? ${error.status ? error.detail : ""}`.trim(),
      };
    default:
      return { title: `Error ${error.status}`, message: error.detail };
  }
}
