import "./style.css";
import { isTauri } from "@tauri-apps/api/core";
import { commands } from "./bindings";
import { renderHome } from "./home";
import { runBench } from "./bench";

const root = document.querySelector<HTMLDivElement>("#app");
if (root) void start(root);

/** The home screen, or the frame benchmark when the app was started as one. */
async function start(root: HTMLElement): Promise<void> {
  const bench = isTauri() ? await commands.benchConfig() : null;
  if (bench) {
    await runBench(root, bench);
    return;
  }
  renderHome(root);
  void showVersion();
}

/** Fills the footer with the app's version from the Rust side. */
async function showVersion(): Promise<void> {
  const footer = document.querySelector<HTMLElement>("#version");
  if (!footer) return;
  if (!isTauri()) {
    footer.textContent = "Confer (browser preview)";
    return;
  }
  try {
    const version = await commands.appVersion();
    footer.textContent = `Confer ${version}`;
  } catch (e) {
    console.error("app_version failed", e);
  }
}
