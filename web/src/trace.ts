import { useEffect, useState } from "react";
import type { TraceRef } from "./api";

// The analysed trace served by loadtest/analysis/trace_api.py: the analyser's categories and
// critical path, computed in Python (loadtest/analysis/critical_path.py), never re-derived here.
export interface AnalysedSpan {
  span_id: string;
  parent_id: string;
  depth: number;
  service: string;
  name: string;
  kind: string;
  start_ms: number;
  duration_ms: number;
  category: string;
  critical: boolean;
  self_ms: number;
}

export interface Analysis {
  trace_id: string;
  root: string;
  duration_ms: number;
  categories: Record<string, number>;
  orphans: number;
  spans: AnalysedSpan[];
}

export type TraceLoad =
  | { state: "none" } // the request was not sampled: there is no trace to show
  | { state: "waiting"; analysis: Analysis | null }
  | { state: "ok"; analysis: Analysis; complete: boolean }
  | { state: "missing" }
  | { state: "error"; message: string };

export const POLL_MS = 400;
export const MAX_POLLS = 30;

/** The trace is whole when no span waits for its parent and a poll found no new span. */
export function settled(previous: Analysis | null, current: Analysis): boolean {
  return previous !== null && current.orphans === 0 && previous.spans.length === current.spans.length;
}

// Spans reach the store in batches from three processes (every 0.2 s with make run): poll
// until the trace stops growing.
export function useTrace(trace: TraceRef | null): TraceLoad {
  const [load, setLoad] = useState<TraceLoad>({ state: "none" });
  const traceId = trace?.sampled ? trace.traceId : null;
  useEffect(() => {
    if (traceId === null) {
      setLoad({ state: "none" });
      return;
    }
    const controller = new AbortController();
    let timer: ReturnType<typeof setTimeout> | undefined;
    let previous: Analysis | null = null;
    let polls = 0;
    setLoad({ state: "waiting", analysis: null });
    const poll = async () => {
      polls += 1;
      try {
        const response = await fetch(`/api/analysis/traces/${traceId}`, { signal: controller.signal });
        if (response.ok) {
          const analysis = (await response.json()) as Analysis;
          if (settled(previous, analysis)) {
            setLoad({ state: "ok", analysis, complete: true });
            return;
          }
          previous = analysis;
          setLoad({ state: "waiting", analysis });
        } else if (response.status !== 404) {
          setLoad({ state: "error", message: `the trace store answered ${response.status}` });
          return;
        }
      } catch {
        if (controller.signal.aborted) return;
        setLoad({ state: "error", message: "the trace store is not reachable" });
        return;
      }
      if (polls >= MAX_POLLS) {
        setLoad(previous ? { state: "ok", analysis: previous, complete: false } : { state: "missing" });
        return;
      }
      timer = setTimeout(() => void poll(), POLL_MS);
    };
    timer = setTimeout(() => void poll(), POLL_MS);
    return () => {
      controller.abort();
      clearTimeout(timer);
    };
  }, [traceId]);
  return load;
}
