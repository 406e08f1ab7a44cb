/**
 * The user's choices that outlive a call, kept by the engine: the app's Rust side
 * (tauri-plugin-store, `src-tauri/settings.rs`), or the browser's local storage.
 */

import type { AppSettings_Serialize as Settings } from "./bindings";
import { DEFAULT_MEDIA } from "./defaults";
import { commands } from "./engine";

export { DEFAULT_MEDIA };

export type { Settings };

const RECENT = 8;

/** Mutes and unmutes during a call, whichever application has the focus. */
export const DEFAULT_MUTE_SHORTCUT = "CommandOrControl+Shift+M";

const DEFAULTS: Settings = {
  server: "http://127.0.0.1:7880",
  name: "",
  media: { ...DEFAULT_MEDIA },
  recent: [],
  mute_shortcut: DEFAULT_MUTE_SHORTCUT,
};

export async function loadSettings(): Promise<Settings> {
  const stored: Partial<Settings> | null = await commands.getSettings();
  return {
    server: stored?.server || DEFAULTS.server,
    name: stored?.name ?? "",
    media: { ...DEFAULT_MEDIA, ...(stored?.media ?? {}) },
    recent: trimRooms((stored?.recent ?? []).map((r) => ({ ...r, saved: r.saved ?? false }))),
    mute_shortcut: stored?.mute_shortcut ?? DEFAULTS.mute_shortcut,
  };
}

/** Every saved room, and the newest of the others. */
function trimRooms(rooms: Settings["recent"]): Settings["recent"] {
  let unsaved = 0;
  return rooms.filter((r) => r.saved || ++unsaved <= RECENT);
}

/** Saves the settings; resolves to the error when the Rust side refuses them (a bad shortcut). */
export async function saveSettings(settings: Settings): Promise<{ code: string; message: string } | null> {
  const r = await commands.setSettings(settings);
  if (r.status === "ok") return null;
  console.error("settings not saved", r.error);
  return r.error;
}

/** Puts a room at the top of the recent list (a link is the way back in, so it is kept; a saved room stays saved). */
export function remember(settings: Settings, entry: { server: string; link: string; label: string }): void {
  const saved = settings.recent.some((r) => r.link === entry.link && r.saved);
  settings.recent = trimRooms([{ ...entry, at: Date.now(), saved }, ...settings.recent.filter((r) => r.link !== entry.link)]);
  void saveSettings(settings);
}
