import { cleanup, render, screen, within } from "@testing-library/react";
import { afterEach, describe, expect, it } from "vitest";
import { type Analysis, settled } from "../trace";
import { Bars, Totals, Waterfall } from "./Waterfall";

afterEach(cleanup);

const span = (id: string, name: string, category: string, start: number, duration: number, critical: boolean) => ({
  span_id: id,
  parent_id: id === "a" ? "" : "a",
  depth: id === "a" ? 0 : 1,
  service: "drama-service",
  name,
  kind: "INTERNAL",
  start_ms: start,
  duration_ms: duration,
  category,
  critical,
  self_ms: critical ? duration : 0,
});

const ANALYSIS: Analysis = {
  trace_id: "4bf92f3577b34da6a3ce929d0e0e4736",
  root: "drama-service:GET /dramas/{id}",
  duration_ms: 10,
  categories: { app: 4.5, db: 0, queue_wait: 3.25, reply_wait: 2.25 },
  orphans: 0,
  spans: [
    span("a", "GET /dramas/{id}", "app", 0, 10, true),
    span("b", "queue wait episode.list", "queue_wait", 1, 3.25, true),
    span("c", "send rpc:episode.list", "broker", 1, 0.1, false),
  ],
};

describe("Totals", () => {
  it("lists each category that holds time, and their sum", () => {
    render(<Totals analysis={ANALYSIS} />);
    const rows = screen.getAllByTestId("category-total");
    expect(rows.map((row) => row.dataset.category)).toEqual(["app", "queue_wait", "reply_wait"]);
    expect(within(rows[1] as HTMLElement).getByText("queue wait")).toBeTruthy();
    expect(screen.getByTestId("category-sum").dataset.ms).toBe("10");
    expect(screen.getByText("32.5%")).toBeTruthy();
  });
});

describe("Bars", () => {
  it("draws one bar per span, placed on the trace's time line and coloured by category", () => {
    const { container } = render(<Bars analysis={ANALYSIS} />);
    const rows = screen.getAllByTestId("span-row");
    expect(rows).toHaveLength(3);
    expect(rows.map((row) => row.dataset.critical)).toEqual(["true", "true", "false"]);
    const bar = container.querySelector(".bar.cat-queue_wait") as HTMLElement;
    expect(bar.style.left).toBe("10%");
    expect(bar.style.width).toBe("32.5%");
    expect(screen.getAllByLabelText("on the critical path")).toHaveLength(2);
  });
});

describe("Waterfall", () => {
  it("shows Server-Timing at once, and says when a request has no trace", () => {
    const info = {
      path: "/dramas/1",
      status: 200,
      trace: { traceId: ANALYSIS.trace_id, spanId: "00f067aa0ba902b7", sampled: false },
      timings: [{ name: "db", ms: 0.5 }],
    };
    render(<Waterfall info={info} />);
    expect(screen.getByTestId("server-timing").textContent).toBe("db 0.500 ms");
    expect(screen.getByText(/not sampled/)).toBeTruthy();
  });
});

describe("settled", () => {
  it("waits for a poll that finds no new span and no orphan", () => {
    expect(settled(null, ANALYSIS)).toBe(false);
    expect(settled(ANALYSIS, ANALYSIS)).toBe(true);
    expect(settled(ANALYSIS, { ...ANALYSIS, orphans: 1 })).toBe(false);
    expect(settled({ ...ANALYSIS, spans: [] }, ANALYSIS)).toBe(false);
  });
});
