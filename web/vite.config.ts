/// <reference types="vitest/config" />
import react from "@vitejs/plugin-react";
import { defineConfig } from "vite";

// `npm run dev` serves the player with hot reload in front of a running `make run`: the API and
// the trace API (the sink's) are proxied, so the page keeps one origin as behind the gateway.
const api = "http://127.0.0.1:8080";
const traces = "http://127.0.0.1:4318";

export default defineConfig({
  plugins: [react()],
  server: {
    proxy: {
      "/dramas": api,
      "/api": traces,
    },
  },
  // hls.js alone is ~520 kB minified (160 kB gzipped), in the player's own chunk.
  build: { outDir: "dist", sourcemap: true, chunkSizeWarningLimit: 600 },
  test: {
    environment: "jsdom",
    include: ["src/**/*.test.{ts,tsx}"],
  },
});
