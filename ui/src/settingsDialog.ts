/**
 * Settings: devices, audio processing and video quality. Changes are saved at once and
 * apply to the next preview or call.
 */

import { commands, type DeviceList, type DeviceOption } from "./bindings";
import type { App } from "./main";
import { esc } from "./dom";
import { saveSettings } from "./settings";

export async function openSettings(app: App, onChange?: () => void): Promise<void> {
  const devices = await commands.listDevices();
  const dialog = document.createElement("dialog");
  dialog.className = "dialog";
  dialog.id = "settings";
  dialog.innerHTML = `
    <form method="dialog" class="settings">
      <h2>Settings</h2>
      ${deviceFields(devices, app.settings.media)}
      <fieldset>
        <legend>Audio processing</legend>
        <label class="check"><input type="checkbox" name="echo_cancellation" ${app.settings.media.echo_cancellation ? "checked" : ""}/> Echo cancellation</label>
        <label class="check"><input type="checkbox" name="noise_suppression" ${app.settings.media.noise_suppression ? "checked" : ""}/> Noise suppression</label>
        <label class="check"><input type="checkbox" name="gain_control" ${app.settings.media.gain_control ? "checked" : ""}/> Automatic gain</label>
      </fieldset>
      <label>Video quality
        <select name="video_quality">
          ${(["high", "standard", "low"] as const)
            .map((q) => `<option value="${q}" ${app.settings.media.video_quality === q ? "selected" : ""}>${{ high: "High (720p)", standard: "Standard (360p)", low: "Low (180p, saves bandwidth)" }[q]}</option>`)
            .join("")}
        </select>
      </label>
      <p class="hint">Device and quality changes apply to the next call.</p>
      <menu><button value="done" id="settings-done">Done</button></menu>
    </form>`;
  document.body.append(dialog);
  const form = dialog.querySelector("form")!;
  form.addEventListener("change", () => {
    const data = new FormData(form);
    const pick = (k: string) => {
      const v = String(data.get(k) ?? "");
      return v === "" ? null : v;
    };
    app.settings.media = {
      ...app.settings.media,
      microphone: pick("microphone"),
      speaker: pick("speaker"),
      camera: pick("camera"),
      echo_cancellation: data.has("echo_cancellation"),
      noise_suppression: data.has("noise_suppression"),
      gain_control: data.has("gain_control"),
      video_quality: (pick("video_quality") ?? "standard") as "high" | "standard" | "low",
    };
    saveSettings(app.settings);
    onChange?.();
  });
  dialog.addEventListener("close", () => dialog.remove());
  dialog.showModal();
}

/** The three device pickers (also on the pre-join screen). */
export function deviceFields(
  devices: DeviceList,
  media: { microphone?: string | null; speaker?: string | null; camera?: string | null },
): string {
  const select = (name: string, label: string, options: DeviceOption[], picked: string | null | undefined, none: string) => {
    const current = picked ?? null;
    return `
    <label>${label}
      <select name="${name}" id="pick-${name}">
        <option value="" ${current === null ? "selected" : ""}>${none}</option>
        ${options.map((o) => `<option value="${esc(o.id)}" ${current === o.id ? "selected" : ""}>${esc(o.name)}${o.is_default ? " (default)" : ""}</option>`).join("")}
      </select>
    </label>`;
  };
  return (
    select("microphone", "Microphone", devices.microphones, media.microphone, "System default") +
    select("speaker", "Speaker", devices.speakers, media.speaker, "System default") +
    select("camera", "Camera", devices.cameras, media.camera, devices.cameras.length > 1 ? "First camera" : "No camera found")
  );
}
