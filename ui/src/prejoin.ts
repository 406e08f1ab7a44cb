/**
 * Pre-join: see yourself, watch the microphone meter move, pick devices, choose to
 * start muted or with the camera off, then join.
 */

import type { FrameEndpoint } from "./bindings";
import { commands, events, platform, showTile, type TileHandle } from "./engine";
import type { App, Destination } from "./main";
import { esc } from "./dom";
import { deviceFields } from "./settingsDialog";
import { remember, saveSettings } from "./settings";

export async function renderPrejoin(app: App, dest: Destination, error?: { code: string; message: string }): Promise<void> {
  const media = app.settings.media;
  app.root.innerHTML = `
    <main class="prejoin" id="prejoin">
      <section class="card prejoin-card">
        <div class="prejoin-media">
          <div class="preview">
            <canvas id="preview-video" width="640" height="360"></canvas>
            <p class="preview-missing" id="preview-missing" hidden>No camera</p>
          </div>
          <div class="meter" aria-label="Microphone level"><div id="mic-meter"></div></div>
          <form id="prejoin-form" class="devices"><p class="hint">Looking for devices…</p></form>
        </div>
        <div class="prejoin-join">
          <h2>Ready to join?</h2>
          <p class="tagline">${esc(dest.label)}</p>
          ${platform === "web" ? `<label>Your name <input id="prejoin-name" type="text" autocomplete="name" maxlength="100" placeholder="The name others see" value="${esc(app.settings.name)}" /></label>` : ""}
          ${dest.reachNote ? `<p class="hint" id="reach-note">${esc(dest.reachNote)}</p>` : ""}
          <label class="check"><input type="checkbox" id="start-muted" ${media.start_muted ? "checked" : ""}/> Join with the microphone muted</label>
          <label class="check"><input type="checkbox" id="start-camera-off" ${media.start_camera_off ? "checked" : ""}/> Join with the camera off</label>
          <label class="check"><input type="checkbox" id="start-audio-only" ${media.audio_only ? "checked" : ""}/> Audio only (no video, for a weak connection)</label>
          <button type="button" id="prejoin-join">Join now</button>
          <button type="button" class="secondary" id="prejoin-back">Back</button>
          <p id="status" class="status" role="status" ${error ? `data-code="${esc(error.code)}"` : ""}>${esc(error?.message ?? "")}</p>
        </div>
      </section>
    </main>`;
  const status = app.root.querySelector<HTMLElement>("#status")!;
  const meter = app.root.querySelector<HTMLElement>("#mic-meter")!;
  // The buttons answer from the moment they are on screen; what they need is set up
  // meanwhile (a click before that waits for it, instead of being lost).
  const listening = events.micLevel.listen((e) => {
    meter.style.width = `${Math.round((e.payload ?? 0) * 100)}%`;
  });
  const endpoint: Promise<FrameEndpoint | null> = app.endpoint();
  let tile: TileHandle | null = null;
  let left = false;
  const startPreview = async () => {
    if (left) return;
    const started = await commands.startPreview(app.settings.media);
    if (left) return;
    if (started.status === "error") {
      status.textContent = started.error.message;
      return;
    }
    app.root.querySelector<HTMLElement>("#preview-missing")!.hidden = !started.data.camera_missing;
    if (started.data.microphone_missing) status.textContent = "No microphone found: the others will not hear you.";
    const frames = await endpoint;
    if (!tile && !left) tile = showTile(app.root.querySelector("#preview-video")!, "preview", frames);
  };
  const leave = async () => {
    left = true;
    tile?.close();
    (await listening)();
    (await plugged)();
    await commands.stopPreview();
  };

  app.root.querySelector("#prejoin-back")!.addEventListener("click", async () => {
    await leave();
    app.showHome();
  });
  app.root.querySelector("#prejoin-join")!.addEventListener("click", async (event) => {
    const nameField = app.root.querySelector<HTMLInputElement>("#prejoin-name");
    if (nameField) {
      if (!nameField.value.trim()) {
        status.textContent = "Please enter your name.";
        nameField.focus();
        return;
      }
      app.settings.name = nameField.value.trim();
    }
    (event.currentTarget as HTMLButtonElement).disabled = true;
    status.textContent = "Joining…";
    app.settings.media = {
      ...app.settings.media,
      start_muted: app.root.querySelector<HTMLInputElement>("#start-muted")!.checked,
      start_camera_off: app.root.querySelector<HTMLInputElement>("#start-camera-off")!.checked,
      audio_only: app.root.querySelector<HTMLInputElement>("#start-audio-only")!.checked,
    };
    void saveSettings(app.settings);
    await leave();
    // A meeting with a lobby: the join waits until the host lets this person in.
    const unlisten = await events.callUpdate.listen((e) => {
      if (e.payload.type === "notice" && e.payload.code === "waiting_in_lobby") {
        status.textContent = e.payload.message;
        status.dataset.code = e.payload.code;
      }
    });
    const joined = await commands.joinCall({ server: dest.server, name: app.settings.name, link: dest.link, media: app.settings.media });
    unlisten();
    if (joined.status === "error") {
      await renderPrejoin(app, dest, joined.error);
      return;
    }
    remember(app.settings, { server: dest.server, link: dest.invite ?? dest.link, label: dest.label });
    app.showCall(joined.data);
  });

  const form = app.root.querySelector<HTMLFormElement>("#prejoin-form")!;
  // Devices plugged in or out show up in the pickers as they come and go.
  const plugged = events.devicesChanged.listen((e) => {
    if (!left) form.innerHTML = deviceFields(e.payload, app.settings.media);
  });
  void commands.listDevices().then((devices) => {
    if (left) return;
    form.innerHTML = deviceFields(devices, app.settings.media);
    form.addEventListener("change", () => {
      const data = new FormData(form);
      const pick = (k: string) => (String(data.get(k) ?? "") || null);
      app.settings.media = { ...app.settings.media, microphone: pick("microphone"), speaker: pick("speaker"), camera: pick("camera") };
      void saveSettings(app.settings);
      void startPreview();
    });
  });
  void startPreview();
}
