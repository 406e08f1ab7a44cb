/**
 * The web client's engine: the surface of `../engine.ts` (the app's Tauri commands and
 * events) on the browser's own WebRTC and devices, so that the app's screens run in a
 * browser unchanged. `vite build --mode web` puts it in place of the app's engine.
 * What only the desktop can do (hosting a meeting, the tray, the frame benchmark)
 * answers `not_in_browser`.
 */

import type {
  AppError,
  AppSettings_Serialize as Settings,
  CallUpdate_Serialize as CallUpdate,
  DeviceList,
  FrameEndpoint,
  MicLevel,
} from "../bindings";
import type { commands as appCommands } from "../bindings";
import type { EventSource, Events, TileHandle } from "../engineTypes";
import { DEFAULT_MEDIA } from "../defaults";
import { asCallError, WebCall, type CallError } from "./call";
import { LinkError, pageLink, parseLink } from "./link";
import { cameraConstraints, listDevices, meter, microphoneConstraints, open, setTile, showVideo } from "./media";

export type { Events, TileHandle };

export const platform: "app" | "web" = "web";

/** Listeners of one event. */
class Emitter<T> implements EventSource<T> {
  private listeners = new Set<(event: { payload: T }) => void>();

  listen(callback: (event: { payload: T }) => void): Promise<() => void> {
    this.listeners.add(callback);
    return Promise.resolve(() => this.listeners.delete(callback));
  }

  emit(payload: T): void {
    for (const l of [...this.listeners]) l({ payload });
  }
}

const callUpdate = new Emitter<CallUpdate>();
const devicesChanged = new Emitter<DeviceList>();
const linkOpened = new Emitter<string>();
const micLevel = new Emitter<MicLevel>();

export const events: Events = {
  callUpdate,
  devicesChanged,
  linkOpened,
  micLevel,
  quickJoin: new Emitter(),
  quitRequested: new Emitter(),
};

navigator.mediaDevices?.addEventListener("devicechange", () => void listDevices().then((d) => devicesChanged.emit(d)));

/** The invite in the address (`/web/#/j/<room>?invite=…`, as the join page links it) is
 * opened when it changes, as a link handed to the app. */
window.addEventListener("hashchange", () => {
  const link = launchLink();
  if (link) linkOpened.emit(link);
});

/** The join link the page was opened with: the part after `#` names the room and the
 * invite (kept out of the address the server sees), the page's own address the server. */
function launchLink(): string | null {
  const hash = location.hash.replace(/^#\/?/, "");
  if (!hash.startsWith("j/")) return null;
  const server = new URL("..", location.href).href;
  return `${server}${hash}`;
}

const KEY = "confer.settings";
let call: WebCall | null = null;
let preview: { tracks: MediaStreamTrack[]; stopMeter: () => void } | null = null;

type Result<T> = Promise<{ status: "ok"; data: T } | { status: "error"; error: AppError }>;

async function attempt<T>(work: () => Promise<T>): Result<T> {
  try {
    return { status: "ok", data: await work() };
  } catch (e) {
    if (e instanceof LinkError) return { status: "error", error: { code: e.code, message: e.message } };
    const error = e as Partial<CallError>;
    if (typeof error?.code === "string" && typeof error.message === "string") return { status: "error", error: { code: error.code, message: error.message } };
    return { status: "error", error: asCallError(e, "") };
  }
}

function inCall(): WebCall {
  if (!call) throw { code: "not_in_call", message: "You are not in a call." };
  return call;
}

const notInBrowser = (what: string): AppError => ({ code: "not_in_browser", message: `${what} needs the Confer app.` });

function stopPreview(): void {
  if (!preview) return;
  preview.stopMeter();
  for (const t of preview.tracks) t.stop();
  preview = null;
  setTile("preview", null);
  micLevel.emit(null);
}

export const commands: typeof appCommands = {
  appVersion: async () => "in the browser",
  frameEndpoint: async (): Promise<FrameEndpoint> => ({ base: "", key: "" }),
  benchConfig: async () => null,
  benchReport: async () => {},
  listDevices,
  startPreview: (media) =>
    attempt(async () => {
      stopPreview();
      const settings = { ...defaultsOf(media) };
      const [mic, camera] = await Promise.all([open("audio", microphoneConstraints(settings)), open("video", cameraConstraints(settings))]);
      const stopMeter = mic ? meter(mic, (level) => micLevel.emit(level)) : () => {};
      preview = { tracks: [mic, camera].filter((t): t is MediaStreamTrack => t !== null), stopMeter };
      setTile("preview", camera ? new MediaStream([camera]) : null);
      // Labels come once the page may use the devices: the pickers fill in now.
      void listDevices().then((d) => devicesChanged.emit(d));
      return { camera_missing: camera === null, microphone_missing: mic === null };
    }),
  stopPreview: async () => stopPreview(),
  hostMeeting: async () => ({ status: "error", error: notInBrowser("Hosting a meeting") }),
  joinCall: (form) =>
    attempt(async () => {
      if (call) throw { code: "already_in_call", message: "Leave this call first." };
      stopPreview();
      const target = parseLink(form.link);
      const name = form.name.trim();
      if (!name) throw { code: "name_needed", message: "Please enter your display name." };
      call = await WebCall.join(target, name, defaultsOf(form.media), (update) => {
        if (update.type === "ended") call = null;
        callUpdate.emit(update);
      });
      return call.view();
    }),
  leaveCall: () => attempt(async () => {
    await call?.leave();
    call = null;
    return null;
  }),
  setMicrophone: (on) => attempt(async () => (await inCall().setMicrophone(on), null)),
  setCamera: (on) => attempt(async () => (await inCall().setCamera(on), null)),
  useDevices: (media) => attempt(async () => (await inCall().useDevices(defaultsOf(media)), null)),
  shareScreen: (source) => attempt(async () => (await inCall().shareScreen(source !== null), null)),
  sendChat: (text, to) => attempt(() => inCall().sendChat(text, to)),
  kick: (participant) => request({ type: "kick", participant_id: participant }),
  censor: (participant, censored) => attempt(async () => (await inCall().censor(participant, censored), null)),
  raiseHand: (raised) => request(raised ? { type: "raise_hand" } : { type: "lower_hand" }),
  lowerHandOf: (participant) => request({ type: "lower_hand", participant_id: participant }),
  react: (reaction) => request({ type: "react", reaction }),
  admit: (participant) => request({ type: "admit", ...(participant ? { participant_id: participant } : {}) }),
  deny: (participant) => request({ type: "deny", ...(participant ? { participant_id: participant } : {}) }),
  setLocked: (locked) => request({ type: "set_locked", locked }),
  endForAll: () => request({ type: "end_session" }),
  muteAll: () => request({ type: "mute_all" }),
  muteParticipant: (participant, camera) => request({ type: "mute_participant", participant_id: participant, kind: camera ? "video" : "audio" }),
  askToUnmute: (participant, camera) => request({ type: "request_unmute", participant_id: participant, kind: camera ? "video" : "audio" }),
  setCoHost: (participant, coHost) => request({ type: coHost ? "promote" : "demote", participant_id: participant }),
  openBreakouts: (count, allowChoice) =>
    attempt(async () => {
      const rooms = Array.from({ length: count }, (_, i) => `Room ${i + 1}`);
      await inCall().request({ type: "create_breakouts", rooms, allow_choice: allowChoice });
      await inCall().request({ type: "assign_breakouts", evenly: true });
      await inCall().request({ type: "open_breakouts" });
      return null;
    }),
  closeBreakouts: (countdownSecs) => request({ type: "close_breakouts", countdown_secs: countdownSecs }),
  joinBreakout: (room) => request({ type: "join_breakout", ...(room === null ? {} : { room }) }),
  moveParticipant: (participant, room) => request({ type: "move_participant", participant_id: participant, ...(room === null ? {} : { room }) }),
  messageBreakouts: (text) => request({ type: "message_breakouts", text }),
  setAudioOnly: (on) => attempt(async () => (await inCall().setAudioOnly(on), null)),
  setTiles: (tiles) => attempt(async () => (await call?.setTiles(tiles), null)),
  getSettings: async () => {
    const stored = JSON.parse(localStorage.getItem(KEY) ?? "null") as Partial<Settings> | null;
    // The server for a bare room name is the one that served this page.
    return { server: new URL("..", location.href).href, name: "", recent: [], mute_shortcut: "", ...stored, media: defaultsOf(stored?.media ?? {}) };
  },
  setSettings: async (settings) => {
    localStorage.setItem(KEY, JSON.stringify(settings));
    return { status: "ok", data: null };
  },
  takeLaunchLink: async () => launchLink(),
  quitApp: async () => {},
};

// For people and tests looking into a call from the browser's console.
(window as unknown as { confer: object }).confer = { report: () => call?.report() ?? null };

/** One signaling request whose answer is only `ok`. */
function request(body: Record<string, unknown>): Result<null> {
  return attempt(async () => (await inCall().request(body), null));
}

/** Media settings with every field present. */
function defaultsOf(media: Partial<Settings["media"]>): Settings["media"] {
  return { ...DEFAULT_MEDIA, ...media };
}

/** Shows `tile` in a `<video>` over the tile's canvas. */
export function showTile(canvas: HTMLCanvasElement, tile: string, _endpoint: FrameEndpoint | null): TileHandle | null {
  return showVideo(canvas, tile);
}

export { pageLink };
