/**
 * The call screen. The Rust side sends the whole call view on every change; this file
 * lays it out (grid with pages, speaker, or screen share), keeps one canvas per video
 * tile alive across updates, and tells the Rust side which tiles are seen and how big,
 * so that hidden tiles get no video and small ones the low simulcast layer.
 */

import type {
  CallView_Serialize as CallView,
  ChatMessage_Serialize as ChatMessage,
  FrameEndpoint,
  ParticipantView,
} from "./bindings";
import { commands, events, showTile, type TileHandle } from "./engine";
import type { App } from "./main";
import { el, esc, initials, tip } from "./dom";
import { openSettings } from "./settingsDialog";
import { arrange, type Layout, type Slot } from "./layout";

type Panel = "chat" | "people" | "breakouts";

/** How long people may get to finish when a moderator closes the breakout rooms (s). */
const CLOSE_COUNTDOWNS = [0, 10, 30, 60, 120];

/** The reactions there are, as the server names them, and how they are drawn. */
const REACTIONS: [string, string][] = [
  ["thumbs_up", "👍"],
  ["clap", "👏"],
  ["heart", "❤️"],
  ["laugh", "😂"],
  ["surprised", "😮"],
  ["celebrate", "🎉"],
];

const ICON = {
  mic: `<svg viewBox="0 0 24 24"><path d="M12 14a3 3 0 0 0 3-3V5a3 3 0 0 0-6 0v6a3 3 0 0 0 3 3zm5-3a5 5 0 0 1-10 0H5a7 7 0 0 0 6 6.9V21h2v-3.1A7 7 0 0 0 19 11z"/></svg>`,
  micOff: `<svg viewBox="0 0 24 24"><path d="M19 11h-2a5 5 0 0 1-.6 2.4l1.5 1.5A7 7 0 0 0 19 11zM15 11V5a3 3 0 0 0-5.9-.8L15 10.1zM4.3 3 3 4.3l6 6V11a3 3 0 0 0 4.3 2.7l1.6 1.6A5 5 0 0 1 7 11H5a7 7 0 0 0 6 6.9V21h2v-3.1a7 7 0 0 0 3.4-1.3l3.3 3.3 1.3-1.3z"/></svg>`,
  cam: `<svg viewBox="0 0 24 24"><path d="M17 10.5V7a1 1 0 0 0-1-1H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12a1 1 0 0 0 1-1v-3.5l4 4v-11z"/></svg>`,
  camOff: `<svg viewBox="0 0 24 24"><path d="m21 6.5-4 4V7a1 1 0 0 0-1-1H9.8L21 17.2zM3.3 2 2 3.3 4.7 6H4a1 1 0 0 0-1 1v10a1 1 0 0 0 1 1h12l.2-.1 3.5 3.4 1.3-1.3z"/></svg>`,
  screen: `<svg viewBox="0 0 24 24"><path d="M20 18a2 2 0 0 0 2-2V6a2 2 0 0 0-2-2H4a2 2 0 0 0-2 2v10a2 2 0 0 0 2 2H0v2h24v-2zM4 6h16v10H4z"/></svg>`,
  chat: `<svg viewBox="0 0 24 24"><path d="M20 2H4a2 2 0 0 0-2 2v18l4-4h14a2 2 0 0 0 2-2V4a2 2 0 0 0-2-2z"/></svg>`,
  people: `<svg viewBox="0 0 24 24"><path d="M16 11a3 3 0 1 0-3-3 3 3 0 0 0 3 3zm-8 0a3 3 0 1 0-3-3 3 3 0 0 0 3 3zm0 2c-2.3 0-7 1.2-7 3.5V19h14v-2.5C15 14.2 10.3 13 8 13zm8 0h-1a4.8 4.8 0 0 1 2 3.5V19h6v-2.5c0-2.3-4.7-3.5-7-3.5z"/></svg>`,
  leave: `<svg viewBox="0 0 24 24"><path d="M12 9c-1.6 0-3.1.3-4.6.7v3.1c0 .4-.2.7-.6.9a11 11 0 0 0-2.6 1.8.9.9 0 0 1-1.3 0L.3 13.1a.9.9 0 0 1 0-1.3A16.9 16.9 0 0 1 12 7a16.9 16.9 0 0 1 11.7 4.8.9.9 0 0 1 0 1.3l-2.5 2.4a.9.9 0 0 1-1.3 0 11 11 0 0 0-2.6-1.8.9.9 0 0 1-.6-.9V9.7C15.1 9.3 13.6 9 12 9z"/></svg>`,
};

export class CallScreen {
  private view: CallView;
  private layout: Layout = "grid";
  private page = 0;
  /** Live canvases by tile name. */
  private tiles = new Map<string, { box: HTMLElement; video: TileHandle | null }>();
  private unlisten: (() => void) | null = null;
  private lastWants = "";
  private chatTo: string | null = null;
  private unread = 0;
  private bannerTimer = 0;
  private panel: Panel | null = null;

  constructor(
    private readonly app: App,
    initial: CallView,
    private readonly endpoint: FrameEndpoint | null,
  ) {
    this.view = initial;
  }

  async start(): Promise<void> {
    this.app.root.innerHTML = `
      <main class="call" id="call">
        <div class="topbar">
          <span class="room-name" id="room-name"></span>
          <span class="banner reconnecting" id="reconnecting" hidden>Connection lost — reconnecting…</span>
          <span class="banner sharing" id="sharing" hidden>You are sharing your screen</span>
          <span class="banner locked" id="locked" hidden>Meeting locked</span>
          <span class="banner breakout" id="breakout-banner" hidden></span>
          <span class="spacer"></span>
          <button type="button" class="ghost" id="copy-invite" hidden>Copy invite link</button>
          <div class="segmented" role="group" aria-label="Layout">
            <button type="button" id="layout-grid" class="on">Grid</button>
            <button type="button" id="layout-speaker">Speaker</button>
          </div>
        </div>
        <div class="body">
          <section class="stage-area">
            <div class="stage" id="stage"></div>
            <div class="strip" id="strip"></div>
            <div class="pager" id="pager" hidden>
              <button type="button" class="ghost" id="page-prev">‹</button>
              <span id="page-label"></span>
              <button type="button" class="ghost" id="page-next">›</button>
            </div>
          </section>
          <aside class="panel" id="panel" hidden></aside>
        </div>
        <div class="toasts" id="toasts"></div>
        <nav class="controls">
          <button type="button" class="control" id="mic-toggle" data-tip="Microphone" aria-label="Microphone"></button>
          <button type="button" class="control" id="camera-toggle" data-tip="Camera" aria-label="Camera"></button>
          <button type="button" class="control" id="screen-toggle" data-tip="Share screen" aria-label="Share screen">${ICON.screen}</button>
          <button type="button" class="control" id="chat-toggle" data-tip="Chat" aria-label="Chat">${ICON.chat}<span class="badge" id="chat-badge" hidden></span></button>
          <button type="button" class="control" id="people-toggle" data-tip="Participants" aria-label="Participants">${ICON.people}<span class="badge" id="people-badge" hidden></span></button>
          <button type="button" class="control" id="hand-toggle" data-tip="Raise hand" aria-label="Raise hand">✋</button>
          <span class="reactions-anchor">
            <button type="button" class="control" id="react-toggle" data-tip="Reactions" aria-label="Reactions">🙂</button>
            <span class="reactions" id="reactions" hidden>${REACTIONS.map(([name, glyph]) => `<button type="button" class="reaction" data-reaction="${name}" data-tip="${name.replace("_", " ")}" aria-label="${name.replace("_", " ")}">${glyph}</button>`).join("")}</span>
          </span>
          <span class="reactions-anchor">
            <button type="button" class="control" id="more-toggle" data-tip="More" aria-label="More">⋯</button>
            <span class="menu" id="more-menu" hidden>
              <button type="button" id="audio-only-toggle">Audio only</button>
              <button type="button" id="breakouts-toggle">Breakout rooms</button>
              <button type="button" id="lock-toggle" class="host-only">Lock meeting</button>
              <button type="button" id="mute-all" class="host-only">Mute everyone</button>
              <button type="button" id="end-for-all" class="host-only danger">End meeting for everyone</button>
            </span>
          </span>
          <button type="button" class="control" id="settings-toggle" data-tip="Settings" aria-label="Settings">⚙</button>
          <button type="button" class="control danger" id="leave" data-tip="Leave" aria-label="Leave">${ICON.leave}</button>
        </nav>
      </main>`;
    this.buildPanel();
    const q = (id: string) => this.app.root.querySelector<HTMLButtonElement>(id)!;
    q("#mic-toggle").addEventListener("click", () => this.act(commands.setMicrophone(this.view.microphone !== "on")));
    q("#camera-toggle").addEventListener("click", () => this.act(commands.setCamera(this.view.camera !== "on")));
    q("#screen-toggle").addEventListener("click", () => void this.toggleScreen());
    q("#chat-toggle").addEventListener("click", () => this.showPanel(this.panel === "chat" ? null : "chat"));
    q("#people-toggle").addEventListener("click", () => this.showPanel(this.panel === "people" ? null : "people"));
    // Devices picked in the settings change at once, on the same call.
    q("#settings-toggle").addEventListener("click", () => void openSettings(this.app, () => this.act(commands.useDevices(this.app.settings.media))));
    q("#leave").addEventListener("click", () => void this.leave());
    q("#hand-toggle").addEventListener("click", () => this.act(commands.raiseHand(!this.me()?.hand_raised)));
    q("#react-toggle").addEventListener("click", () => this.toggleMenu("#reactions"));
    q("#more-toggle").addEventListener("click", () => this.toggleMenu("#more-menu"));
    this.app.root.querySelectorAll<HTMLButtonElement>("#reactions .reaction").forEach((b) =>
      b.addEventListener("click", () => {
        this.toggleMenu(null);
        this.act(commands.react(b.dataset.reaction!));
      }),
    );
    q("#audio-only-toggle").addEventListener("click", () => {
      this.toggleMenu(null);
      this.act(commands.setAudioOnly(!this.view.audio_only));
    });
    q("#breakouts-toggle").addEventListener("click", () => {
      this.toggleMenu(null);
      this.showPanel(this.panel === "breakouts" ? null : "breakouts");
    });
    q("#lock-toggle").addEventListener("click", () => {
      this.toggleMenu(null);
      this.act(commands.setLocked(!this.view.locked));
    });
    q("#mute-all").addEventListener("click", () => {
      this.toggleMenu(null);
      this.act(commands.muteAll());
    });
    q("#end-for-all").addEventListener("click", () => {
      this.toggleMenu(null);
      if (confirm("End the meeting for everyone?")) this.act(commands.endForAll());
    });
    q("#layout-grid").addEventListener("click", () => this.setLayout("grid"));
    q("#layout-speaker").addEventListener("click", () => this.setLayout("speaker"));
    q("#page-prev").addEventListener("click", () => this.turn(-1));
    q("#page-next").addEventListener("click", () => this.turn(1));
    q("#copy-invite").addEventListener("click", async () => {
      if (!this.view.invite_link) return;
      try {
        await navigator.clipboard.writeText(this.view.invite_link);
        this.toast("Invite link copied.");
      } catch {
        this.toast(this.view.invite_link);
      }
    });
    this.unlisten = await events.callUpdate.listen((e) => {
      const event = e.payload;
      switch (event.type) {
        case "updated":
          this.view = event.view;
          this.render();
          break;
        case "chat":
          this.addChat(event.message);
          break;
        case "notice":
          this.toast(event.message, event.code);
          break;
        case "reaction":
          this.showReaction(event.from_id, event.reaction);
          break;
        case "unmute_requested":
          this.askToUnmute(event.by_name, event.camera);
          break;
        case "ended":
          this.close();
          // Left from the tray: home, as after the leave button.
          this.app.showHome(event.code === "left" ? undefined : { code: event.code, text: event.message });
          break;
      }
    });
    window.addEventListener("resize", this.onResize);
    document.addEventListener("visibilitychange", this.onResize);
    this.app.inCall = (text) => this.toast(text, "link");
    this.render();
  }

  private onResize = () => this.render();

  private me(): ParticipantView | undefined {
    return this.view.participants.find((p) => p.local);
  }

  /** Opens one of the control bar's pop-up menus (closing the other), or closes both. */
  private toggleMenu(which: "#reactions" | "#more-menu" | null): void {
    for (const id of ["#reactions", "#more-menu"]) {
      const menu = this.app.root.querySelector<HTMLElement>(id)!;
      menu.hidden = id !== which || !menu.hidden;
    }
  }

  /** A reaction floats over its sender's tile for a few seconds. */
  private showReaction(from: string, reaction: string): void {
    const glyph = REACTIONS.find(([name]) => name === reaction)?.[1] ?? "👍";
    const box = this.tiles.get(`person:${from}`)?.box;
    const who = this.view.participants.find((p) => p.id === from)?.name ?? "Someone";
    if (!box) {
      this.toast(`${who} ${glyph}`, "reaction");
      return;
    }
    const float = el("span", { class: "reaction-float", "data-reaction": reaction }, [glyph]);
    box.append(float);
    setTimeout(() => float.remove(), 4000);
  }

  /** A moderator asks to unmute: the user decides (nobody can unmute anyone else). */
  private askToUnmute(by: string, camera: boolean): void {
    const what = camera ? "start your camera" : "unmute";
    const dialog = document.createElement("dialog");
    dialog.className = "dialog";
    dialog.id = "unmute-prompt";
    dialog.innerHTML = `<form method="dialog"><h2>${esc(by)} asks you to ${what}</h2><menu>
      <button value="" class="secondary">Not now</button><button value="yes" id="unmute-accept">${camera ? "Start camera" : "Unmute"}</button></menu></form>`;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const yes = dialog.returnValue === "yes";
      dialog.remove();
      if (yes) this.act(camera ? commands.setCamera(true) : commands.setMicrophone(true));
    });
    dialog.showModal();
  }

  private act(request: Promise<{ status: "ok" } | { status: "error"; error: { code: string; message: string } }>): void {
    void request.then((r) => {
      if (r.status === "error") this.toast(r.error.message, r.error.code);
    });
  }

  private close(): void {
    this.app.inCall = null;
    this.unlisten?.();
    this.unlisten = null;
    window.removeEventListener("resize", this.onResize);
    document.removeEventListener("visibilitychange", this.onResize);
    for (const t of this.tiles.values()) t.video?.close();
    this.tiles.clear();
    document.querySelectorAll("dialog").forEach((d) => d.remove());
  }

  private async leave(): Promise<void> {
    this.close();
    await commands.leaveCall();
    this.app.showHome();
  }

  private setLayout(layout: Layout): void {
    this.layout = layout;
    this.app.root.querySelector("#layout-grid")!.classList.toggle("on", layout === "grid");
    this.app.root.querySelector("#layout-speaker")!.classList.toggle("on", layout === "speaker");
    this.render();
  }

  private turn(by: number): void {
    this.page += by;
    this.render();
  }

  private render(): void {
    const v = this.view;
    const root = this.app.root;
    root.querySelector("#room-name")!.textContent = v.room_name || v.room;
    root.querySelector<HTMLElement>("#reconnecting")!.hidden = v.connection !== "reconnecting";
    root.querySelector<HTMLElement>("#copy-invite")!.hidden = !v.invite_link;
    root.querySelector<HTMLElement>("#sharing")!.hidden = !v.sharing_screen;
    root.querySelector<HTMLElement>("#locked")!.hidden = !v.locked;
    this.renderBreakoutBanner();
    this.renderControls();

    const { stage, strip, pages, page, kind, wants } = arrange(v.participants, {
      layout: this.layout,
      page: this.page,
      activeSpeaker: v.active_speaker,
      hidden: document.hidden,
    });
    this.page = page;
    const pager = root.querySelector<HTMLElement>("#pager")!;
    pager.hidden = pages <= 1;
    root.querySelector("#page-label")!.textContent = `${this.page + 1} / ${pages}`;
    root.querySelector<HTMLButtonElement>("#page-prev")!.disabled = this.page === 0;
    root.querySelector<HTMLButtonElement>("#page-next")!.disabled = this.page >= pages - 1;

    const stageEl = root.querySelector<HTMLElement>("#stage")!;
    const stripEl = root.querySelector<HTMLElement>("#strip")!;
    stageEl.className = `stage n${Math.min(stage.length, 9)} ${kind}`;
    stripEl.hidden = strip.length === 0;
    const shown = new Set<string>();
    const place = (container: HTMLElement, list: Slot[]) => {
      list.forEach((slot, i) => {
        const box = this.box(slot);
        shown.add(slot.id);
        if (container.children[i] !== box) container.insertBefore(box, container.children[i] ?? null);
      });
      while (container.children.length > list.length) container.lastElementChild!.remove();
    };
    place(stageEl, stage);
    place(stripEl, strip);
    for (const [id, t] of this.tiles) {
      if (!shown.has(id)) {
        t.video?.close();
        t.box.remove();
        this.tiles.delete(id);
      }
    }
    // Subscriptions follow what is seen.
    const key = JSON.stringify(wants);
    if (key !== this.lastWants) {
      this.lastWants = key;
      this.act(commands.setTiles(wants));
    }
    if (this.panel === "people") this.renderPeople();
    if (this.panel === "breakouts") this.renderBreakouts();
    this.renderRecipients();
  }

  /** The box for a slot, created once and updated in place. */
  private box(slot: Slot): HTMLElement {
    let entry = this.tiles.get(slot.id);
    if (!entry) {
      const box = el("div", { class: "tile", "data-slot": slot.id });
      box.innerHTML = `<canvas width="640" height="360"></canvas><div class="avatar"></div><div class="label"><span class="hand" hidden>✋</span><span class="mic"></span><span class="name"></span><span class="quality"></span></div>`;
      entry = { box, video: null };
      this.tiles.set(slot.id, entry);
    }
    const p = slot.participant;
    const box = entry.box;
    const wantTile = slot.tile;
    if (entry.video && entry.video.tile !== wantTile) {
      entry.video.close();
      entry.video = null;
    }
    if (!entry.video && wantTile) entry.video = showTile(box.querySelector("canvas")!, wantTile, this.endpoint);
    box.dataset.tile = wantTile ?? "";
    box.dataset.participant = p.id;
    box.classList.toggle("remote", !p.local);
    box.classList.toggle("local", p.local);
    box.classList.toggle("screen", slot.screen);
    box.classList.toggle("no-video", !wantTile);
    box.classList.toggle("speaking", p.speaking && !slot.screen);
    setText(box.querySelector(".avatar")!, initials(p.name));
    box.querySelector<HTMLElement>(".hand")!.hidden = !p.hand_raised || slot.screen;
    setText(box.querySelector(".name")!, slot.screen ? `${p.name} (screen)` : p.local ? `${p.name} (you)` : p.name);
    const mic = box.querySelector<HTMLElement>(".mic")!;
    if (mic.classList.contains("muted") !== p.mic_muted || !mic.dataset.drawn) {
      mic.dataset.drawn = "1";
      mic.innerHTML = p.mic_muted ? ICON.micOff : "";
      mic.classList.toggle("muted", p.mic_muted);
    }
    const q = box.querySelector<HTMLElement>(".quality")!;
    if (q.dataset.score !== String(p.network_quality)) {
      q.dataset.score = String(p.network_quality);
      tip(q, p.network_quality ? `Network quality ${p.network_quality}/5` : "Network quality unknown");
      q.innerHTML = [1, 2, 3].map((b) => `<i class="${p.network_quality >= b * 2 - 1 ? "on" : ""}"></i>`).join("");
    }
    return box;
  }

  private renderControls(): void {
    const v = this.view;
    // Rendered on every update (several a second while people speak): a button is only
    // touched when its state changed, or a click landing mid-update would be lost.
    const set = (id: string, state: string, on: string, off: string, title: string) => {
      const b = this.app.root.querySelector<HTMLButtonElement>(id)!;
      if (b.dataset.state === state) return;
      b.dataset.state = state;
      b.classList.toggle("off", state !== "on");
      b.disabled = state === "missing" || state === "censored";
      b.innerHTML = state === "on" ? on : off;
      tip(b, state === "missing" ? `No ${title.toLowerCase()}` : state === "censored" ? `${title} stopped by a moderator` : title);
    };
    set("#mic-toggle", v.microphone, ICON.mic, ICON.micOff, "Microphone");
    set("#camera-toggle", v.camera, ICON.cam, ICON.camOff, "Camera");
    const screen = this.app.root.querySelector<HTMLButtonElement>("#screen-toggle")!;
    screen.classList.toggle("active", v.sharing_screen);
    tip(screen, v.sharing_screen ? "Stop sharing" : "Share screen");
    const raised = !!this.me()?.hand_raised;
    const hand = this.app.root.querySelector<HTMLButtonElement>("#hand-toggle")!;
    hand.classList.toggle("active", raised);
    tip(hand, raised ? "Lower hand" : "Raise hand");
    // Moderators: people waiting in the lobby show as a count on the participants button.
    const badge = this.app.root.querySelector<HTMLElement>("#people-badge")!;
    badge.hidden = !v.moderator || v.knocks.length === 0;
    badge.textContent = String(v.knocks.length);
    this.app.root.querySelectorAll<HTMLElement>(".host-only").forEach((b) => (b.hidden = !v.moderator));
    // Breakout rooms: moderators set them up; others see them once they may choose.
    this.app.root.querySelector<HTMLElement>("#breakouts-toggle")!.hidden = !v.moderator && !v.breakouts?.allow_choice;
    setText(this.app.root.querySelector("#lock-toggle")!, v.locked ? "Unlock meeting" : "Lock meeting");
    setText(this.app.root.querySelector("#audio-only-toggle")!, v.audio_only ? "Turn video back on" : "Audio only");
  }

  private async toggleScreen(): Promise<void> {
    if (this.view.sharing_screen) {
      this.act(commands.shareScreen(null));
      return;
    }
    const devices = await commands.listDevices();
    if (devices.screens.length === 0) {
      this.toast("There is no screen or window to share.", "screen_unavailable");
      return;
    }
    const dialog = document.createElement("dialog");
    dialog.className = "dialog";
    dialog.id = "screen-picker";
    dialog.innerHTML = `<form method="dialog"><h2>Share your screen</h2><div class="sources">${devices.screens
      .map((s) => `<button value="${esc(s.id)}" class="source">${s.id.startsWith("monitor") ? "🖥" : "🗔"} ${esc(s.name)}</button>`)
      .join("")}</div><menu><button value="" class="secondary">Cancel</button></menu></form>`;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const choice = dialog.returnValue;
      dialog.remove();
      if (choice) this.act(commands.shareScreen(choice));
    });
    dialog.showModal();
  }

  private buildPanel(): void {
    const panel = this.app.root.querySelector<HTMLElement>("#panel")!;
    panel.innerHTML = `
      <div class="panel-chat" id="chat">
        <h2>Chat</h2>
        <ol class="messages" id="chat-messages"></ol>
        <form id="chat-form" class="chat-form">
          <select id="chat-to" aria-label="Send to"></select>
          <div class="row"><input id="chat-input" autocomplete="off" placeholder="Message" maxlength="2000" /><button id="chat-send">Send</button></div>
        </form>
      </div>
      <div class="panel-people" id="people"><h2>Participants</h2><ul id="people-list"></ul></div>
      <div class="panel-breakouts" id="breakouts"><h2>Breakout rooms</h2><div id="breakouts-body"></div></div>`;
    panel.querySelector("#chat-form")!.addEventListener("submit", async (e) => {
      e.preventDefault();
      const input = panel.querySelector<HTMLInputElement>("#chat-input")!;
      const text = input.value.trim();
      if (!text) return;
      const sent = await commands.sendChat(text, this.chatTo);
      if (sent.status === "error") {
        this.toast(sent.error.message, sent.error.code);
        return;
      }
      input.value = "";
      this.addChat(sent.data);
    });
    panel.querySelector<HTMLSelectElement>("#chat-to")!.addEventListener("change", (e) => {
      this.chatTo = (e.target as HTMLSelectElement).value || null;
    });
  }

  private showPanel(which: Panel | null): void {
    this.panel = which;
    const panel = this.app.root.querySelector<HTMLElement>("#panel")!;
    panel.hidden = which === null;
    panel.dataset.show = which ?? "";
    this.app.root.querySelector("#chat-toggle")!.classList.toggle("active", which === "chat");
    this.app.root.querySelector("#people-toggle")!.classList.toggle("active", which === "people");
    if (which === "chat") {
      this.unread = 0;
      this.app.root.querySelector<HTMLElement>("#chat-badge")!.hidden = true;
      panel.querySelector<HTMLInputElement>("#chat-input")!.focus();
    }
    if (which === "people") this.renderPeople();
    if (which === "breakouts") this.renderBreakouts();
  }

  private renderRecipients(): void {
    const select = this.app.root.querySelector<HTMLSelectElement>("#chat-to");
    if (!select) return;
    const others = this.view.participants.filter((p) => !p.local);
    if (this.chatTo && !others.some((p) => p.id === this.chatTo)) this.chatTo = null;
    const html = `<option value="">Everyone</option>${others
      .map((p) => `<option value="${esc(p.id)}" ${p.id === this.chatTo ? "selected" : ""}>${esc(p.name)} (private)</option>`)
      .join("")}`;
    if (select.innerHTML !== html) select.innerHTML = html;
  }

  private addChat(m: ChatMessage): void {
    const list = this.app.root.querySelector<HTMLOListElement>("#chat-messages");
    if (!list) return;
    const time = new Date(m.sent_at ?? Date.now()).toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
    const who = m.mine ? (m.to_name ? `You → ${m.to_name}` : "You") : m.private ? `${m.from_name} (privately)` : m.from_name;
    const item = el("li", { class: `chat-message${m.mine ? " mine" : ""}${m.private ? " private" : ""}`, "data-from": m.from_name }, [
      el("div", { class: "meta" }, [`${who} · ${time}`]),
      el("div", { class: "text" }, [m.text]),
    ]);
    list.append(item);
    list.scrollTop = list.scrollHeight;
    if (this.panel !== "chat" && !m.mine) {
      this.unread += 1;
      const badge = this.app.root.querySelector<HTMLElement>("#chat-badge")!;
      badge.hidden = false;
      badge.textContent = String(this.unread);
      this.toast(`${m.from_name}: ${m.text}`, "chat");
    }
  }

  private renderPeople(): void {
    const list = this.app.root.querySelector<HTMLUListElement>("#people-list");
    if (!list) return;
    // Rebuilt only when what it shows changed (a click on kick must not be lost to an update).
    const v = this.view;
    const key = JSON.stringify([
      v.moderator,
      v.hands,
      v.knocks,
      v.participants.map((p) => [p.id, p.name, p.moderator, p.co_host, p.guest, p.mic_muted, p.camera_off]),
      v.breakouts?.open ? v.breakouts.rooms.map((r) => r.name) : null,
    ]);
    if (list.dataset.key === key) return;
    list.dataset.key = key;
    list.innerHTML = "";
    const me = this.me();
    // Managers (not co-hosts) make co-hosts.
    const manager = v.moderator && !me?.co_host;
    if (v.moderator && v.knocks.length > 0) {
      const lobby = el("li", { class: "lobby", id: "lobby" });
      lobby.append(el("h3", {}, [`Waiting to join (${v.knocks.length})`]));
      for (const k of v.knocks) {
        const row = el("div", { class: "knock", "data-knock": k.id }, [el("span", { class: "who" }, [`${k.name}${k.guest ? " (guest)" : ""}`])]);
        const admit = el("button", { type: "button", class: "small admit" }, ["Admit"]);
        admit.addEventListener("click", () => this.act(commands.admit(k.id)));
        const deny = el("button", { type: "button", class: "ghost small danger deny" }, ["Deny"]);
        deny.addEventListener("click", () => this.act(commands.deny(k.id)));
        row.append(admit, deny);
        lobby.append(row);
      }
      if (v.knocks.length > 1) {
        const all = el("button", { type: "button", class: "small admit-all" }, ["Admit all"]);
        all.addEventListener("click", () => this.act(commands.admit(null)));
        lobby.append(all);
      }
      list.append(lobby);
    }
    if (v.hands.length > 0) {
      const hands = el("li", { class: "hands", id: "hands" });
      hands.append(el("h3", {}, ["Raised hands"]));
      const ol = el("ol", {});
      for (const id of v.hands) {
        const p = v.participants.find((q) => q.id === id);
        if (!p) continue;
        const item = el("li", { "data-participant": id }, [`✋ ${p.name}${p.local ? " (you)" : ""}`]);
        if (v.moderator && !p.local) {
          const lower = el("button", { type: "button", class: "ghost small lower-hand" }, ["Lower"]);
          lower.addEventListener("click", () => this.act(commands.lowerHandOf(id)));
          item.append(lower);
        }
        ol.append(item);
      }
      hands.append(ol);
      list.append(hands);
    }
    for (const p of this.view.participants) {
      const row = el("li", { class: "person", "data-participant": p.id });
      row.innerHTML = `<span class="avatar small">${esc(initials(p.name))}</span>
        <span class="who">${esc(p.name)}${p.local ? " (you)" : ""}${p.co_host ? " <em>co-host</em>" : p.moderator ? " <em>host</em>" : ""}${p.guest ? " <em>guest</em>" : ""}</span>
        <span class="state">${p.mic_muted ? ICON.micOff : ICON.mic}${p.camera_off ? ICON.camOff : ICON.cam}</span>`;
      if (v.moderator && !p.local) {
        if (p.mic_muted) {
          const ask = el("button", { type: "button", class: "ghost small ask-unmute" }, ["Ask to unmute"]);
          ask.addEventListener("click", () => this.act(commands.askToUnmute(p.id, false)));
          row.append(ask);
        } else {
          const mute = el("button", { type: "button", class: "ghost small mute" }, ["Mute"]);
          mute.addEventListener("click", () => this.act(commands.muteParticipant(p.id, false)));
          row.append(mute);
        }
        if (!p.camera_off) {
          const stop = el("button", { type: "button", class: "ghost small stop-video" }, ["Stop video"]);
          stop.addEventListener("click", () => this.act(commands.muteParticipant(p.id, true)));
          row.append(stop);
        }
        if (v.breakouts?.open) {
          const move = el("select", { class: "move-to", "aria-label": `Move ${p.name} to` });
          move.innerHTML = `<option value="">Move to…</option><option value="main">Main room</option>${v.breakouts.rooms
            .map((r, i) => `<option value="${i}">${esc(r.name)}</option>`)
            .join("")}`;
          move.addEventListener("change", () => {
            if (move.value === "") return;
            this.act(commands.moveParticipant(p.id, move.value === "main" ? null : Number(move.value)));
          });
          row.append(move);
        }
        if (manager && (!p.moderator || p.co_host)) {
          const cohost = el("button", { type: "button", class: "ghost small co-host" }, [p.co_host ? "Remove co-host" : "Make co-host"]);
          cohost.addEventListener("click", () => this.act(commands.setCoHost(p.id, !p.co_host)));
          row.append(cohost);
        }
        const censor = el("button", { type: "button", class: "ghost small censor" }, ["Stop media"]);
        censor.addEventListener("click", () => this.act(commands.censor(p.id, true)));
        const kick = el("button", { type: "button", class: "ghost small danger kick" }, ["Remove"]);
        kick.addEventListener("click", () => {
          if (confirm(`Remove ${p.name} from the call?`)) this.act(commands.kick(p.id));
        });
        row.append(censor, kick);
      }
      list.append(row);
    }
  }

  /** Where this participant is, and the countdown when the rooms are closing. */
  private renderBreakoutBanner(): void {
    const banner = this.app.root.querySelector<HTMLElement>("#breakout-banner")!;
    const b = this.view.breakouts;
    const room = b?.current != null ? b.rooms[b.current]?.name : null;
    const left = b?.closes_at != null ? Math.max(0, Math.ceil((b.closes_at - Date.now()) / 1000)) : null;
    const text = [room ? `Breakout room: ${room}` : "", left != null && b?.open ? `Breakout rooms close in ${left} s` : ""].filter(Boolean).join(" · ");
    banner.hidden = text === "";
    setText(banner, text);
    window.clearTimeout(this.bannerTimer);
    if (left != null && left > 0) this.bannerTimer = window.setTimeout(() => this.renderBreakoutBanner(), 1000);
  }

  private renderBreakouts(): void {
    const body = this.app.root.querySelector<HTMLElement>("#breakouts-body");
    if (!body) return;
    const v = this.view;
    const b = v.breakouts;
    const key = JSON.stringify([v.moderator, b, v.participants.map((p) => [p.id, p.name])]);
    if (body.dataset.key === key) return;
    body.dataset.key = key;
    body.innerHTML = "";
    if (!b || !b.open) {
      if (!v.moderator) {
        body.append(el("p", { class: "hint" }, ["No breakout rooms are open."]));
        return;
      }
      const others = v.participants.filter((p) => !p.local && !p.moderator).length;
      const form = el("form", { id: "breakouts-form", class: "breakouts-form" });
      form.innerHTML = `
        <label>Rooms <input type="number" id="breakouts-count" min="1" max="50" value="${Math.max(1, Math.min(Math.floor(others / 2), 50)) || 1}" /></label>
        <label class="check"><input type="checkbox" id="breakouts-choice" /> Let people choose their room</label>
        <p class="hint">Everyone but the hosts is spread over the rooms at random.</p>
        <button type="submit" id="breakouts-open">Open breakout rooms</button>`;
      form.addEventListener("submit", (e) => {
        e.preventDefault();
        const count = Number(form.querySelector<HTMLInputElement>("#breakouts-count")!.value);
        const choice = form.querySelector<HTMLInputElement>("#breakouts-choice")!.checked;
        this.act(commands.openBreakouts(count, choice));
      });
      body.append(form);
      return;
    }
    const rooms = el("ol", { class: "breakout-rooms", id: "breakout-rooms" });
    b.rooms.forEach((room, i) => {
      const here = b.current === i;
      const item = el("li", { class: `breakout-room${here ? " here" : ""}`, "data-room": String(i) }, [
        el("strong", {}, [room.name + (here ? " (you are here)" : "")]),
        el("span", { class: "members" }, [room.members.filter(Boolean).join(", ") || "Nobody yet"]),
      ]);
      if (!here && (v.moderator || b.allow_choice)) {
        const join = el("button", { type: "button", class: "ghost small join-room" }, ["Join"]);
        join.addEventListener("click", () => this.act(commands.joinBreakout(i)));
        item.append(join);
      }
      rooms.append(item);
    });
    body.append(rooms);
    if (b.current != null && (v.moderator || b.allow_choice)) {
      const back = el("button", { type: "button", class: "secondary", id: "breakouts-main" }, ["Back to the main room"]);
      back.addEventListener("click", () => this.act(commands.joinBreakout(null)));
      body.append(back);
    }
    if (!v.moderator) return;
    const message = el("form", { class: "row", id: "breakouts-message-form" });
    message.innerHTML = `<input id="breakouts-message" placeholder="Message to every room" maxlength="2000" /><button id="breakouts-send">Send</button>`;
    message.addEventListener("submit", (e) => {
      e.preventDefault();
      const input = message.querySelector<HTMLInputElement>("#breakouts-message")!;
      if (!input.value.trim()) return;
      this.act(commands.messageBreakouts(input.value));
      input.value = "";
    });
    body.append(message);
    if (b.closes_at == null) {
      // Like other meeting apps: people get a moment to finish, as long as the host likes.
      const close = el("form", { class: "row", id: "breakouts-close-form" });
      close.innerHTML = `<select id="breakouts-countdown" aria-label="Countdown">
          ${CLOSE_COUNTDOWNS.map((s) => `<option value="${s}" ${s === 30 ? "selected" : ""}>${s === 0 ? "At once" : `In ${s} s`}</option>`).join("")}
        </select><button class="danger" id="breakouts-close">Close rooms</button>`;
      close.addEventListener("submit", (e) => {
        e.preventDefault();
        this.act(commands.closeBreakouts(Number(close.querySelector<HTMLSelectElement>("#breakouts-countdown")!.value)));
      });
      body.append(close);
    }
  }

  private toast(text: string, code = "info"): void {
    const box = this.app.root.querySelector<HTMLElement>("#toasts");
    if (!box) return;
    const t = el("div", { class: "toast", "data-code": code }, [text]);
    box.append(t);
    setTimeout(() => t.remove(), 6000);
  }
}

/** Sets an element's text only when it differs (no needless DOM churn). */
function setText(node: Element, text: string): void {
  if (node.textContent !== text) node.textContent = text;
}
