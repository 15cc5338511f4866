import { cleanup, fireEvent, render, screen } from "@testing-library/react";
import { afterEach, describe, expect, it, vi } from "vitest";
import { ApiError } from "../api";
import { ErrorPanel } from "./ErrorPanel";

afterEach(cleanup);

describe("ErrorPanel", () => {
  it("offers a retry for a stopped worker", () => {
    const retry = vi.fn();
    render(<ErrorPanel error={new ApiError("unavailable", 503, "no worker", null)} onRetry={retry} />);
    expect(screen.getByRole("alert").textContent).toContain("A service is unavailable");
    fireEvent.click(screen.getByRole("button", { name: "Retry" }));
    expect(retry).toHaveBeenCalledOnce();
  });

  it("offers the way back, not a retry, for a drama that does not exist", () => {
    render(<ErrorPanel error={new ApiError("not-found", 404, "no drama with id 9", null)} onRetry={vi.fn()} />);
    expect(screen.getByRole("alert").textContent).toContain("no drama with id 9");
    expect(screen.queryByRole("button")).toBeNull();
    expect(screen.getByRole("link", { name: "Back to the catalogue" })).toBeTruthy();
  });
});
