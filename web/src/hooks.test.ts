import { describe, expect, it } from "vitest";
import { parseRoute } from "./hooks";

describe("parseRoute", () => {
  it("reads the page from the fragment", () => {
    expect(parseRoute("")).toEqual({ page: "catalogue" });
    expect(parseRoute("#/")).toEqual({ page: "catalogue" });
    expect(parseRoute("#/dramas/7")).toEqual({ page: "drama", id: "7" });
    expect(parseRoute("#/dramas/7/episodes/3")).toEqual({ page: "episode", id: "7", number: "3" });
    expect(parseRoute("#/nowhere")).toEqual({ page: "unknown", hash: "#/nowhere" });
  });
});
