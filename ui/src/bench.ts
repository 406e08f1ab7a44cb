/**
 * The frame-transport benchmark's view: one canvas per tile, drawn for the configured
 * time, then per-tile delivered frames and latency go back to the Rust side, which
 * prints the table (see src-tauri/bench.rs).
 */
import { commands, type BenchConfig, type TileResult } from "./bindings";
import { TileView } from "./video";

function percentile(values: number[], q: number): number {
  if (!values.length) return 0;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.round((sorted.length - 1) * q)];
}

export async function runBench(root: HTMLElement, config: BenchConfig): Promise<void> {
  const endpoint = await commands.frameEndpoint();
  root.innerHTML = `<main class="bench"></main>`;
  const grid = root.querySelector<HTMLElement>(".bench")!;
  const views = config.tiles.map((tile) => {
    const canvas = document.createElement("canvas");
    canvas.className = tile.includes("720") ? "tile large" : "tile";
    grid.appendChild(canvas);
    return new TileView(canvas, endpoint, tile);
  });
  // The first second warms up (sockets, shaders); measure after it.
  await new Promise((r) => setTimeout(r, 1000));
  const start = views.map((v) => ({
    received: v.stats.received,
    frames: v.stats.frames,
    latencies: v.stats.latencies.length,
  }));
  const t0 = performance.now();
  await new Promise((r) => setTimeout(r, config.seconds * 1000));
  const seconds = (performance.now() - t0) / 1000;
  const results = views.map((v, i): TileResult => {
    const latencies = v.stats.latencies.slice(start[i].latencies);
    return {
      tile: v.tile,
      width: v.stats.width,
      height: v.stats.height,
      received: v.stats.received - start[i].received,
      frames: v.stats.frames - start[i].frames,
      seconds,
      latency_p50_ms: percentile(latencies, 0.5),
      latency_p95_ms: percentile(latencies, 0.95),
      renderer: v.rendererName,
    };
  });
  views.forEach((v) => v.close());
  await commands.benchReport(results);
}
