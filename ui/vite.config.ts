import { defineConfig } from "vite";

// Tauri serves ui/dist in release builds and this dev server in `tauri dev`.
export default defineConfig({
  clearScreen: false,
  server: { port: 5173, strictPort: true },
  build: { outDir: "dist", emptyOutDir: true, target: "safari15" },
});
