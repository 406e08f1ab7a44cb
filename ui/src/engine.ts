/**
 * The engine under the screens: what they call and listen to. This is the desktop
 * app's, the Rust side through Tauri commands and events; the web client's build swaps
 * in `web/engine.ts` (a browser engine with the same surface, see `vite.config.ts`), so
 * the screens are one code for both.
 */

import { commands, events as tauriEvents, type FrameEndpoint } from "./bindings";
import { TileView } from "./video";
import type { Events, TileHandle } from "./engineTypes";

export { commands };
export type { Events, TileHandle };

/** Which engine this build runs on. */
export const platform: "app" | "web" = "app";

export const events: Events = tauriEvents;

/** Starts drawing `tile` on `canvas` (frames from the Rust side's frame socket). */
export function showTile(canvas: HTMLCanvasElement, tile: string, endpoint: FrameEndpoint | null): TileHandle | null {
  return endpoint ? new TileView(canvas, endpoint, tile) : null;
}
