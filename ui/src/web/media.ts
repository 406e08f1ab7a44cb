/**
 * The browser's devices and video: what can be picked, the local camera and
 * microphone, and the tiles (`<video>` elements fed from a `MediaStream` per tile name,
 * the names the call view uses: `preview`, `local:main`, `<participant>:<key>`).
 */

import type { DeviceList, DeviceOption, MediaSettings_Serialize as MediaSettings } from "../bindings";
import type { TileHandle } from "../engineTypes";

/** The top layer each video quality captures (simulcast adds half and quarter layers). */
const SIZES = { high: [1280, 720], standard: [960, 540], low: [320, 180] } as const;

export async function listDevices(): Promise<DeviceList> {
  const all = await navigator.mediaDevices?.enumerateDevices().catch(() => []) ?? [];
  const of = (kind: MediaDeviceKind): DeviceOption[] =>
    all
      .filter((d) => d.kind === kind && d.deviceId !== "communications")
      .map((d, i) => ({ id: d.deviceId, name: d.label || `${kind.replace("input", "").replace("output", "")} ${i + 1}`, is_default: d.deviceId === "default" }));
  // The browser asks which screen or window when sharing starts.
  const screens = navigator.mediaDevices && "getDisplayMedia" in navigator.mediaDevices ? [{ id: "browser", name: "Choose in the browser", is_default: true }] : [];
  return { microphones: of("audioinput"), speakers: of("audiooutput"), cameras: of("videoinput"), screens };
}

export function microphoneConstraints(media: MediaSettings): MediaTrackConstraints {
  return {
    deviceId: media.microphone ? { exact: media.microphone } : undefined,
    echoCancellation: media.echo_cancellation,
    noiseSuppression: media.noise_suppression,
    autoGainControl: media.gain_control,
  };
}

export function cameraConstraints(media: MediaSettings): MediaTrackConstraints {
  const [width, height] = SIZES[media.video_quality] ?? SIZES.standard;
  return { deviceId: media.camera ? { exact: media.camera } : undefined, width: { ideal: width }, height: { ideal: height }, frameRate: { ideal: 30 } };
}

/** One device opened, or why not (no such device, or permission refused). */
export async function open(kind: "audio" | "video", constraints: MediaTrackConstraints): Promise<MediaStreamTrack | null> {
  try {
    const stream = await navigator.mediaDevices.getUserMedia({ [kind]: constraints });
    return stream.getTracks()[0] ?? null;
  } catch (e) {
    console.warn(`no ${kind === "audio" ? "microphone" : "camera"}`, e);
    return null;
  }
}

// Tiles: the stream each tile name shows now, and who shows it.
const streams = new Map<string, MediaStream>();
const watchers = new Map<string, Set<(stream: MediaStream | null) => void>>();

export function setTile(tile: string, stream: MediaStream | null): void {
  if (stream) streams.set(tile, stream);
  else streams.delete(tile);
  for (const watch of watchers.get(tile) ?? []) watch(stream);
}

/** Draws `tile` in a `<video>` beside the tile's canvas, following its stream. */
export function showVideo(canvas: HTMLCanvasElement, tile: string): TileHandle {
  const video = document.createElement("video");
  video.className = "tile-video";
  video.autoplay = true;
  video.muted = true;
  video.playsInline = true;
  video.dataset.tile = tile;
  canvas.hidden = true;
  canvas.after(video);
  let frames = 0;
  let closed = false;
  // Frames presented, for people and tests inspecting the page (as the app's canvases).
  const count = () => {
    if (closed) return;
    frames += 1;
    if (frames % 10 === 1) video.dataset.frames = String(frames);
    video.requestVideoFrameCallback(count);
  };
  if ("requestVideoFrameCallback" in video) video.requestVideoFrameCallback(count);
  const watch = (stream: MediaStream | null) => {
    if (video.srcObject !== stream) video.srcObject = stream;
  };
  watch(streams.get(tile) ?? null);
  let set = watchers.get(tile);
  if (!set) watchers.set(tile, (set = new Set()));
  set.add(watch);
  return {
    tile,
    close() {
      closed = true;
      set!.delete(watch);
      video.srcObject = null;
      video.remove();
      canvas.hidden = false;
    },
  };
}

/** The microphone's level, 0 to 1, a few times a second, until stopped. */
export function meter(track: MediaStreamTrack, report: (level: number) => void): () => void {
  const context = new AudioContext();
  const source = context.createMediaStreamSource(new MediaStream([track]));
  const analyser = context.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const samples = new Float32Array(analyser.fftSize);
  const timer = window.setInterval(() => {
    analyser.getFloatTimeDomainData(samples);
    let sum = 0;
    for (const s of samples) sum += s * s;
    // As the app's meter: RMS, scaled so that speech fills most of the bar.
    report(Math.min(1, Math.sqrt(sum / samples.length) * 4));
  }, 100);
  return () => {
    window.clearInterval(timer);
    void context.close();
  };
}
