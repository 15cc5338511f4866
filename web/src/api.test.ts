import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError, errorKind, explain, getJson, parseServerTiming, parseTraceresponse } from "./api";

const TRACE = "4bf92f3577b34da6a3ce929d0e0e4736";

afterEach(() => vi.unstubAllGlobals());

describe("parseTraceresponse", () => {
  it("reads the trace id, the span id and the sampled flag", () => {
    expect(parseTraceresponse(`00-${TRACE}-00f067aa0ba902b7-03`)).toEqual({
      traceId: TRACE,
      spanId: "00f067aa0ba902b7",
      sampled: true,
    });
    expect(parseTraceresponse(`00-${TRACE}-00f067aa0ba902b7-00`)?.sampled).toBe(false);
  });

  it("refuses what is not a version-00 traceresponse", () => {
    expect(parseTraceresponse(null)).toBeNull();
    expect(parseTraceresponse("garbage")).toBeNull();
    expect(parseTraceresponse(`01-${TRACE}-00f067aa0ba902b7-01`)).toBeNull();
    expect(parseTraceresponse(`00-${"0".repeat(32)}-00f067aa0ba902b7-01`)).toBeNull();
  });
});

describe("parseServerTiming", () => {
  it("keeps each entry that has a duration, in order", () => {
    expect(parseServerTiming("db;dur=0.4, episode;dur=3.125, cache;desc=hit, total;dur=8")).toEqual([
      { name: "db", ms: 0.4 },
      { name: "episode", ms: 3.125 },
      { name: "total", ms: 8 },
    ]);
    expect(parseServerTiming(null)).toEqual([]);
  });
});

describe("errors", () => {
  it("maps statuses to what a person is told", () => {
    expect(errorKind(404)).toBe("not-found");
    expect(errorKind(503)).toBe("unavailable");
    expect(errorKind(504)).toBe("timeout");
    expect(explain(new ApiError("timeout", 504, "no reply", null)).title).toBe("The backend took too long");
    expect(new ApiError("not-found", 404, "x", null).retryable).toBe(false);
    expect(new ApiError("unavailable", 503, "x", null).retryable).toBe(true);
  });

  function stubFetch(status: number, headers: Record<string, string>, body: unknown) {
    const fetch = vi.fn(async () => new Response(JSON.stringify(body), { status, headers }));
    vi.stubGlobal("fetch", fetch);
    return fetch;
  }

  it("reads a problem's detail, and the trace of the failed request", async () => {
    stubFetch(
      503,
      { "content-type": "application/problem+json", traceresponse: `00-${TRACE}-00f067aa0ba902b7-01` },
      { status: 503, detail: "no worker serves stream.presign" },
    );
    const error = await getJson("/dramas/1").catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ kind: "unavailable", detail: "no worker serves stream.presign" });
    expect((error as ApiError).info?.trace?.traceId).toBe(TRACE);
  });

  it("tells a gateway's 502 (no traceresponse) as the API being unreachable", async () => {
    stubFetch(502, { "content-type": "application/problem+json" }, { detail: "not reachable" });
    await expect(getJson("/dramas/1")).rejects.toMatchObject({ kind: "unreachable", status: 502 });
  });

  it("tells a failed connection as the API being unreachable", async () => {
    vi.stubGlobal("fetch", vi.fn(async () => Promise.reject(new TypeError("Failed to fetch"))));
    await expect(getJson("/dramas")).rejects.toMatchObject({ kind: "unreachable", status: 0 });
  });

  it("returns the data with the request's Server-Timing", async () => {
    stubFetch(200, { "server-timing": "db;dur=1.5", traceresponse: `00-${TRACE}-00f067aa0ba902b7-01` }, { id: 1 });
    const { data, info } = await getJson<{ id: number }>("/dramas/1");
    expect(data.id).toBe(1);
    expect(info).toEqual({
      path: "/dramas/1",
      status: 200,
      trace: { traceId: TRACE, spanId: "00f067aa0ba902b7", sampled: true },
      timings: [{ name: "db", ms: 1.5 }],
    });
  });
});
