import "./style.css";
import { invoke, isTauri } from "@tauri-apps/api/core";
import { renderHome } from "./home";

const root = document.querySelector<HTMLDivElement>("#app");
if (root) {
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
