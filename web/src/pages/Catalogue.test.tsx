import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Catalogue, PAGE_SIZE } from "./Catalogue";

afterEach(() => {
  cleanup();
  vi.unstubAllGlobals();
});

const drama = (id: number) => ({
  id,
  title: `Drama ${id}`,
  synopsis: "",
  year: 2020,
  country: "KR",
  genres: ["romance"],
  episode_count: 12,
  first_episode: null,
});

describe("Catalogue", () => {
  it("pages through next_cursor, appending each page", async () => {
    const pages: Record<string, unknown> = {
      [`/dramas?limit=${PAGE_SIZE}`]: { items: [drama(1), drama(2)], next_cursor: "djE6Mg" },
      [`/dramas?limit=${PAGE_SIZE}&cursor=djE6Mg`]: { items: [drama(3)], next_cursor: null },
    };
    const fetch = vi.fn(async (path: string) => new Response(JSON.stringify(pages[path]), { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    render(<Catalogue />);
    expect(await screen.findByText("Drama 2")).toBeTruthy();
    fireEvent.click(screen.getByRole("button", { name: "More dramas" }));
    expect(await screen.findByText("Drama 3")).toBeTruthy();
    expect(screen.getAllByTestId("drama-card")).toHaveLength(3);
    expect(screen.getByText("That is the whole catalogue.")).toBeTruthy();
    expect(fetch.mock.calls.map((call) => call[0])).toEqual(Object.keys(pages));
  });

  it("shows a failed page with a retry that asks again", async () => {
    const fetch = vi
      .fn()
      .mockResolvedValueOnce(new Response(JSON.stringify({ detail: "broker down" }), { status: 503 }))
      .mockResolvedValueOnce(new Response(JSON.stringify({ items: [drama(1)], next_cursor: null }), { status: 200 }));
    vi.stubGlobal("fetch", fetch);
    render(<Catalogue />);
    expect((await screen.findByRole("alert")).textContent).toContain("broker down");
    fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(await screen.findByText("Drama 1")).toBeTruthy();
  });
});
