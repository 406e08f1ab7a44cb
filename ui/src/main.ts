import "./style.css";
import { isTauri } from "@tauri-apps/api/core";
import { commands, type CallView_Serialize as CallView, type FrameEndpoint } from "./bindings";
import { renderHome } from "./home";
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
  readonly settings: Settings = loadSettings();
  private frames: Promise<FrameEndpoint | null> | null = null;

  constructor(readonly root: HTMLElement) {}

  endpoint(): Promise<FrameEndpoint | null> {
    this.frames ??= isTauri() ? commands.frameEndpoint() : Promise.resolve(null);
    return this.frames;
  }

  showHome(message?: { code: string; text: string }): void {
    saveSettings(this.settings);
    renderHome(this, message);
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
  new App(root).showHome();
}
