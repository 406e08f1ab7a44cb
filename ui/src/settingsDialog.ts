/**
 * Settings: devices, audio processing, video quality and the mute shortcut. Changes are
 * saved at once. In a call the devices change live (`onChange`); quality, processing and
 * the network apply to the next call. The device lists follow devices plugged in or out.
 */

import type { DeviceList, DeviceOption } from "./bindings";
import { commands, events, platform } from "./engine";
import type { App } from "./main";
import { esc } from "./dom";
import { DEFAULT_MUTE_SHORTCUT, saveSettings } from "./settings";

export async function openSettings(app: App, onChange?: () => void): Promise<void> {
  const devices = await commands.listDevices();
  const dialog = document.createElement("dialog");
  dialog.className = "dialog";
  dialog.id = "settings";
  dialog.innerHTML = `
    <form method="dialog" class="settings">
      <h2>Settings</h2>
      <div class="devices" id="device-fields">${deviceFields(devices, app.settings.media)}</div>
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
      <fieldset>
        <legend>Network</legend>
        <label class="check"><input type="checkbox" name="force_relay" ${app.settings.media.force_relay ? "checked" : ""}/> Relay media through the server's TURN relay only</label>
        <p class="hint">For networks that allow nothing else out, or to keep this computer's addresses private. Needs a server with a TURN relay.</p>
      </fieldset>
      <p class="hint">Devices change at once, also during a call; quality, audio processing and network changes apply to the next call.</p>
      <label ${platform === "web" ? "hidden" : ""}>Mute shortcut (works in any application during a call)
        <span class="shortcut-row">
          <input type="text" name="mute_shortcut" id="setting-mute-shortcut" value="${esc(app.settings.mute_shortcut)}"
            placeholder="None" autocomplete="off" spellcheck="false" />
          <button type="button" class="secondary" id="shortcut-default">Default</button>
        </span>
      </label>
      <p class="hint" id="shortcut-status" role="status" ${platform === "web" ? "hidden" : ""}>Press the keys here, or type them (Ctrl+Alt+M); empty turns it off.</p>
      <menu><button value="done" id="settings-done">Done</button></menu>
    </form>`;
  document.body.append(dialog);
  const form = dialog.querySelector("form")!;
  const shortcut = dialog.querySelector<HTMLInputElement>("#setting-mute-shortcut")!;
  const shortcutStatus = dialog.querySelector<HTMLElement>("#shortcut-status")!;
  // A combination pressed in the field is written down, not typed.
  shortcut.addEventListener("keydown", (event) => {
    const combination = accelerator(event);
    if (!combination) return;
    event.preventDefault();
    shortcut.value = combination;
    form.dispatchEvent(new Event("change"));
  });
  dialog.querySelector("#shortcut-default")!.addEventListener("click", () => {
    shortcut.value = DEFAULT_MUTE_SHORTCUT;
    form.dispatchEvent(new Event("change"));
  });
  form.addEventListener("change", async () => {
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
      force_relay: data.has("force_relay"),
      video_quality: (pick("video_quality") ?? "standard") as "high" | "standard" | "low",
    };
    const previous = app.settings.mute_shortcut;
    app.settings.mute_shortcut = shortcut.value.trim();
    const refused = await saveSettings(app.settings);
    if (refused) {
      // Only the shortcut can be refused: keep the rest, and say what is wrong with it.
      app.settings.mute_shortcut = previous;
      shortcutStatus.textContent = refused.message;
      shortcutStatus.dataset.code = refused.code;
      void saveSettings(app.settings);
    } else {
      shortcutStatus.textContent = app.settings.mute_shortcut ? `Mute shortcut: ${app.settings.mute_shortcut}` : "No mute shortcut.";
      delete shortcutStatus.dataset.code;
    }
    onChange?.();
  });
  const unlisten = events.devicesChanged.listen((e) => {
    dialog.querySelector("#device-fields")!.innerHTML = deviceFields(e.payload, app.settings.media);
  });
  dialog.addEventListener("close", () => {
    dialog.remove();
    void unlisten.then((stop) => stop());
  });
  dialog.showModal();
}

/** The three device pickers (also on the pre-join screen and in the call). The first
 * choice follows the system and says which device that is now. */
export function deviceFields(
  devices: DeviceList,
  media: { microphone?: string | null; speaker?: string | null; camera?: string | null },
): string {
  const select = (name: string, label: string, options: DeviceOption[], picked: string | null | undefined, missing: string) => {
    const current = picked ?? null;
    const fallback = options.find((o) => o.is_default);
    const real = options.filter((o) => !TEST_DEVICES.includes(o.id));
    const none = fallback ? `Default (${esc(fallback.name)})` : real.length > 0 ? "System default" : missing;
    return `
    <label>${label}
      <select name="${name}" id="pick-${name}">
        <option value="" ${current === null ? "selected" : ""}>${none}</option>
        ${options.map((o) => `<option value="${esc(o.id)}" ${current === o.id ? "selected" : ""}>${esc(o.name)}</option>`).join("")}
      </select>
    </label>`;
  };
  return (
    select("microphone", "Microphone", devices.microphones, media.microphone, "No microphone found") +
    select("speaker", "Speaker", devices.speakers, media.speaker, "No speaker found") +
    select("camera", "Camera", devices.cameras, media.camera, "No camera found")
  );
}

/** The stand-ins a machine without devices can still pick: the test tone and pattern. */
const TEST_DEVICES = ["tone", "synthetic"];

/** The accelerator for a key press with Ctrl, Alt or Super held (`Ctrl+Shift+M`), or null. */
function accelerator(event: KeyboardEvent): string | null {
  if (!(event.ctrlKey || event.altKey || event.metaKey)) return null;
  const code = event.code;
  let key: string | null = null;
  if (/^Key[A-Z]$/.test(code)) key = code.slice(3);
  else if (/^Digit[0-9]$/.test(code)) key = code.slice(5);
  else if (/^F([1-9]|1[0-9]|2[0-4])$/.test(code)) key = code;
  else if (["Space", "Backquote", "Minus", "Equal", "BracketLeft", "BracketRight", "Backslash", "Semicolon", "Quote", "Comma", "Period", "Slash"].includes(code)) key = code;
  if (!key) return null;
  const mods = [event.ctrlKey && "Ctrl", event.altKey && "Alt", event.shiftKey && "Shift", event.metaKey && "Super"].filter(Boolean);
  return [...mods, key].join("+");
}
