import "./style.css";
import { invoke, isTauri } from "@tauri-apps/api/core";
import { renderHome } from "./home";
import { runBench, type BenchConfig } from "./bench";

const root = document.querySelector<HTMLDivElement>("#app");
if (root) void start(root);

/** The home screen, or the frame benchmark when the app was started as one. */
async function start(root: HTMLElement): Promise<void> {
  const bench = isTauri() ? await invoke<BenchConfig | null>("bench_config") : null;
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
    const version = await invoke<string>("app_version");
    footer.textContent = `Confer ${version}`;
  } catch (e) {
    console.error("app_version failed", e);
  }
}
