/**
 * The user's choices that outlive a call, kept by the Rust side (tauri-plugin-store,
 * `src-tauri/settings.rs`); the browser preview keeps them in local storage.
 */

import { isTauri } from "@tauri-apps/api/core";
import { commands, type AppSettings_Serialize as Settings, type MediaSettings_Serialize as MediaSettings } from "./bindings";

export type { Settings };

const KEY = "confer.settings";
const RECENT = 8;

export const DEFAULT_MEDIA: MediaSettings = {
  microphone: null,
  speaker: null,
  camera: null,
  echo_cancellation: true,
  noise_suppression: true,
  gain_control: true,
  video_quality: "standard",
  start_muted: false,
  start_camera_off: false,
};

const DEFAULTS: Settings = { server: "http://127.0.0.1:7880", name: "", media: { ...DEFAULT_MEDIA }, recent: [] };

export async function loadSettings(): Promise<Settings> {
  const stored: Partial<Settings> | null = isTauri()
    ? await commands.getSettings()
    : (JSON.parse(localStorage.getItem(KEY) ?? "null") as Partial<Settings> | null);
  return {
    server: stored?.server || DEFAULTS.server,
    name: stored?.name ?? "",
    media: { ...DEFAULT_MEDIA, ...(stored?.media ?? {}) },
    recent: (stored?.recent ?? []).slice(0, RECENT),
  };
}

export function saveSettings(settings: Settings): void {
  if (!isTauri()) {
    localStorage.setItem(KEY, JSON.stringify(settings));
    return;
  }
  void commands.setSettings(settings).then((r) => {
    if (r.status === "error") console.error("settings not saved", r.error);
  });
}

/** Puts a room at the top of the recent list (a link is the way back in, so it is kept). */
export function remember(settings: Settings, entry: { server: string; link: string; label: string }): void {
  settings.recent = [{ ...entry, at: Date.now() }, ...(settings.recent ?? []).filter((r) => r.link !== entry.link)].slice(0, RECENT);
  saveSettings(settings);
}
