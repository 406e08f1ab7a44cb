import "./style.css";
import type { CallView_Serialize as CallView, FrameEndpoint } from "./bindings";
import { commands, events, platform } from "./engine";
import { labelOf, renderHome } from "./home";
import { renderPrejoin } from "./prejoin";
import { CallScreen } from "./call";
import { loadSettings, remember, saveSettings, type Settings } from "./settings";
import type { RecentRoom } from "./bindings";

/** Where the user is going: a server and a link or room. */
export interface Destination {
  server: string;
  link: string;
  label: string;
  /** The invite link to share, when this app hosts the meeting. */
  invite?: string;
  /** Who the invite link does not reach, when this app hosts the meeting. */
  reachNote?: string | null;
}

/** The app's screens and what they share. */
export class App {
  private frames: Promise<FrameEndpoint | null> | null = null;
  /** Set while the call screen is up. */
  inCall: ((text: string) => void) | null = null;
  /** A quick-join from the tray is under way. */
  private joining = false;

  constructor(
    readonly root: HTMLElement,
    readonly settings: Settings,
  ) {}

  /** A join link from the desktop: the pre-join screen for it (home first when no name is known yet). */
  openLink(link: string): void {
    if (this.inCall) {
      this.inCall(`Leave this call to join ${labelOf(link)}: the link is in Recent on the home screen.`);
      remember(this.settings, { server: this.settings.server, link, label: labelOf(link) });
      return;
    }
    // The web client asks for the name on the pre-join screen.
    if (!this.settings.name.trim() && platform === "app") {
      this.showHome(undefined, link);
      return;
    }
    this.showPrejoin({ server: this.settings.server, link, label: labelOf(link) });
  }

  /** A room picked in the tray: straight into the call with the stored name and devices. */
  async quickJoin(room: RecentRoom): Promise<void> {
    if (this.inCall || this.joining) return;
    const dest = { server: room.server, link: room.link, label: room.label };
    if (!this.settings.name.trim()) {
      this.showHome(undefined, room.link);
      return;
    }
    this.joining = true;
    try {
      const joined = await commands.joinCall({ server: dest.server, name: this.settings.name, link: dest.link, media: this.settings.media });
      if (joined.status === "error") {
        this.showHome({ code: joined.error.code, text: joined.error.message }, room.link);
        return;
      }
      remember(this.settings, dest);
      this.showCall(joined.data);
    } finally {
      this.joining = false;
    }
  }

  /** Quitting during a call: leave and quit, or stay. */
  confirmQuit(): void {
    if (document.querySelector("#quit-dialog")) return;
    const dialog = document.createElement("dialog");
    dialog.className = "dialog";
    dialog.id = "quit-dialog";
    dialog.innerHTML = `
      <form method="dialog">
        <h2>Quit Confer?</h2>
        <p>You are in a call. Quitting leaves it.</p>
        <menu>
          <button value="" class="secondary" id="quit-cancel">Stay in the call</button>
          <button value="quit" class="danger" id="quit-confirm">Leave and quit</button>
        </menu>
      </form>`;
    document.body.append(dialog);
    dialog.addEventListener("close", () => {
      const quit = dialog.returnValue === "quit";
      dialog.remove();
      if (quit) void commands.quitApp();
    });
    dialog.showModal();
  }

  endpoint(): Promise<FrameEndpoint | null> {
    this.frames ??= commands.frameEndpoint();
    return this.frames;
  }

  showHome(message?: { code: string; text: string }, link?: string): void {
    this.inCall = null;
    void saveSettings(this.settings);
    renderHome(this, message, link);
  }

  showPrejoin(dest: Destination): void {
    void saveSettings(this.settings);
    void renderPrejoin(this, dest);
  }

  showCall(view: CallView): void {
    void this.endpoint().then((endpoint) => new CallScreen(this, view, endpoint).start());
  }

  /** Fills the footer with the app's version. */
  async showVersion(): Promise<void> {
    const footer = document.querySelector<HTMLElement>("#version");
    if (!footer) return;
    try {
      footer.textContent = `Confer ${await commands.appVersion()}`;
    } catch (e) {
      console.error("app_version failed", e);
    }
  }
}

const root = document.querySelector<HTMLDivElement>("#app");
if (root) void start(root);

/** The home screen, or the frame benchmark when the app was started as one. */
async function start(root: HTMLElement): Promise<void> {
  const bench = await commands.benchConfig();
  if (bench) {
    const { runBench } = await import("./bench");
    await runBench(root, bench);
    return;
  }
  const app = new App(root, await loadSettings());
  const launch = await commands.takeLaunchLink();
  if (launch) app.openLink(launch);
  else app.showHome();
  await events.linkOpened.listen((e) => app.openLink(e.payload));
  await events.quickJoin.listen((e) => void app.quickJoin(e.payload));
  await events.quitRequested.listen(() => app.confirmQuit());
}
