import "./style.css";
import { isTauri } from "@tauri-apps/api/core";
import { commands, events, type CallView_Serialize as CallView, type FrameEndpoint } from "./bindings";
import { labelOf, renderHome } from "./home";
import { renderPrejoin } from "./prejoin";
import { CallScreen } from "./call";
import { runBench } from "./bench";
import { loadSettings, saveSettings, type Settings } from "./settings";

/** Where the user is going: a server and a link or room. */
export interface Destination {
  server: string;
  link: string;
  label: string;
  /** The invite link to share, when this app hosts the meeting. */
  invite?: string;
}

/** The app's screens and what they share. */
export class App {
  private frames: Promise<FrameEndpoint | null> | null = null;
  /** Set while the call screen is up. */
  inCall: ((text: string) => void) | null = null;

  constructor(
    readonly root: HTMLElement,
    readonly settings: Settings,
  ) {}

  /** A join link from the desktop: the pre-join screen for it (home first when no name is known yet). */
  openLink(link: string): void {
    if (this.inCall) {
      this.inCall(`Leave this call to join ${labelOf(link)}: the link is in Recent on the home screen.`);
      this.settings.recent = [{ server: this.settings.server, link, label: labelOf(link), at: Date.now() }, ...(this.settings.recent ?? [])];
      saveSettings(this.settings);
      return;
    }
    if (!this.settings.name.trim()) {
      this.showHome(undefined, link);
      return;
    }
    this.showPrejoin({ server: this.settings.server, link, label: labelOf(link) });
  }

  endpoint(): Promise<FrameEndpoint | null> {
    this.frames ??= isTauri() ? commands.frameEndpoint() : Promise.resolve(null);
    return this.frames;
  }

  showHome(message?: { code: string; text: string }, link?: string): void {
    this.inCall = null;
    saveSettings(this.settings);
    renderHome(this, message, link);
  }

  showPrejoin(dest: Destination): void {
    saveSettings(this.settings);
    void renderPrejoin(this, dest);
  }

  showCall(view: CallView): void {
    void this.endpoint().then((endpoint) => new CallScreen(this, view, endpoint).start());
  }

  /** Fills the footer with the app's version from the Rust side. */
  async showVersion(): Promise<void> {
    const footer = document.querySelector<HTMLElement>("#version");
    if (!footer) return;
    if (!isTauri()) {
      footer.textContent = "Confer (browser preview)";
      return;
    }
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
  const bench = isTauri() ? await commands.benchConfig() : null;
  if (bench) {
    await runBench(root, bench);
    return;
  }
  const app = new App(root, await loadSettings());
  const launch = isTauri() ? await commands.takeLaunchLink() : null;
  if (launch) app.openLink(launch);
  else app.showHome();
  if (isTauri()) await events.linkOpened.listen((e) => app.openLink(e.payload));
}
