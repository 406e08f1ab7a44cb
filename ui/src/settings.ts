/**
 * The user's choices that outlive a call: who they are, where they meet, their devices
 * and processing. Kept in the view's local storage.
 */

import type { MediaSettings_Deserialize as MediaSettings } from "./bindings";

export interface Recent {
  server: string;
  link: string;
  label: string;
  at: number;
}

export interface Settings {
  server: string;
  name: string;
  media: MediaSettings;
  recent: Recent[];
}

const KEY = "confer.settings";

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

export function loadSettings(): Settings {
  const fallback: Settings = { server: "http://127.0.0.1:7880", name: "", media: { ...DEFAULT_MEDIA }, recent: [] };
  try {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? "null") as Partial<Settings> | null;
    if (!stored) return fallback;
    return {
      server: stored.server ?? fallback.server,
      name: stored.name ?? "",
      media: { ...DEFAULT_MEDIA, ...(stored.media ?? {}) },
      recent: Array.isArray(stored.recent) ? stored.recent.slice(0, 8) : [],
    };
  } catch {
    return fallback;
  }
}

export function saveSettings(settings: Settings): void {
  localStorage.setItem(KEY, JSON.stringify(settings));
}

/** Puts a room at the top of the recent list (links with secrets are kept: they are the way back in). */
export function remember(settings: Settings, entry: Omit<Recent, "at">): void {
  settings.recent = [{ ...entry, at: Date.now() }, ...settings.recent.filter((r) => r.link !== entry.link)].slice(0, 8);
  saveSettings(settings);
}
