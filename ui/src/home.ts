/**
 * The home screen: where to meet and under which name, recent rooms, and hosting a
 * meeting on this machine.
 */

import { commands, platform } from "./engine";
import type { App } from "./main";
import { el, esc } from "./dom";
import { openSettings } from "./settingsDialog";
import { saveSettings } from "./settings";

export function renderHome(app: App, message?: { code: string; text: string }, link?: string): void {
  const s = app.settings;
  app.root.innerHTML = `
    <main class="home" id="home">
      <section class="card">
        <header>
          <div class="logo" aria-hidden="true"></div>
          <div>
            <h1>Confer</h1>
            <p class="tagline">Video meetings on your own server</p>
          </div>
          <button type="button" class="ghost icon-only" id="home-settings" title="Settings" aria-label="Settings">⚙</button>
        </header>
        ${message ? `<p class="banner" id="ended-message" data-code="${esc(message.code)}">${esc(message.text)}</p>` : ""}
        <form id="join" novalidate>
          <label>Display name
            <input id="join-name" name="name" type="text" placeholder="Your name" autocomplete="name" value="${esc(s.name)}" required />
          </label>
          <label>Join link or room
            <input id="join-link" name="link" type="text" placeholder="Invite link or room name" value="${esc(link ?? "")}" required />
          </label>
          <label ${platform === "web" ? "hidden" : ""}>Server (for a room name)
            <input id="join-server" name="server" type="url" value="${esc(s.server)}" autocomplete="url" />
          </label>
          <button type="submit" id="join-submit">Continue</button>
          <p id="status" class="status" role="status"></p>
        </form>
        ${platform === "app" ? `<div class="divider"><span>or</span></div>
        <button type="button" class="secondary" id="host">Host a meeting on this machine</button>` : ""}
        ${s.recent?.length ? `<h2 class="section">Recent</h2><ul class="recent" id="recent"></ul>` : ""}
      </section>
      <footer id="version"></footer>
    </main>`;

  const form = app.root.querySelector<HTMLFormElement>("#join")!;
  const status = app.root.querySelector<HTMLElement>("#status")!;
  const field = (id: string) => app.root.querySelector<HTMLInputElement>(id)!;

  // Saved rooms first; a star saves a room for quick-join from the tray.
  const recent = app.root.querySelector<HTMLUListElement>("#recent");
  for (const r of [...s.recent.filter((r) => r.saved), ...s.recent.filter((r) => !r.saved)]) {
    const star = el("button", { type: "button", class: "ghost icon-only save", title: r.saved ? "Saved: shown in the tray. Click to forget." : "Save for quick-join from the tray", "aria-pressed": String(r.saved) }, [r.saved ? "★" : "☆"]);
    const pick = el("button", { type: "button", class: "link" }, [r.label]);
    pick.addEventListener("click", () => {
      field("#join-link").value = r.link;
      field("#join-server").value = r.server;
    });
    star.addEventListener("click", () => {
      r.saved = !r.saved;
      star.textContent = r.saved ? "★" : "☆";
      star.setAttribute("aria-pressed", String(r.saved));
      void saveSettings(app.settings);
    });
    recent?.append(el("li", {}, [star, pick]));
  }

  const name = (): string | null => {
    const value = field("#join-name").value.trim();
    if (!value) {
      status.textContent = "Please enter your display name.";
      field("#join-name").focus();
      return null;
    }
    app.settings.name = value;
    return value;
  };

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    if (!name()) return;
    const link = field("#join-link").value.trim();
    if (!link) {
      status.textContent = "Please paste a join link or type a room name.";
      return;
    }
    const server = field("#join-server").value.trim() || s.server;
    app.settings.server = server;
    app.showPrejoin({ server, link, label: labelOf(link) });
  });

  app.root.querySelector("#host")?.addEventListener("click", async () => {
    const who = name();
    if (!who) return;
    status.textContent = "Starting a meeting server on this machine…";
    const hosted = await commands.hostMeeting(`${who}'s meeting`);
    if (hosted.status === "error") {
      status.textContent = hosted.error.message;
      return;
    }
    status.textContent = "";
    app.showPrejoin({
      server: hosted.data.server,
      link: hosted.data.room,
      label: `${who}'s meeting (hosted here)`,
      invite: hosted.data.invite_link,
      reachNote: hosted.data.reach_note,
    });
  });

  app.root.querySelector("#home-settings")!.addEventListener("click", () => void openSettings(app));
  void app.showVersion();
}

/** A short name for a link in the recent list. */
export function labelOf(link: string): string {
  try {
    const url = new URL(link);
    const room = url.searchParams.get("room");
    if (room) return `${room} · ${url.searchParams.get("server") ?? ""}`;
    // The join page's address: https://host/j/<room>?invite=…
    const page = url.pathname.match(/\/j\/([^/]+)\/?$/);
    if (page) return `${decodeURIComponent(page[1])} · ${url.host}`;
  } catch {
    // a bare room name
  }
  return link;
}
