import { fileURLToPath } from "node:url";
import { defineConfig } from "vite";

// Two builds of one UI. The desktop app's (the default mode): Tauri serves ui/dist in
// release builds and this dev server in `tauri dev`. The web client's (`--mode web`,
// ui/dist-web): the same screens on the browser engine, which the room server embeds and
// serves at /web/ (relative asset paths, so it also works below a proxy's path prefix).
export default defineConfig(({ mode }) => {
  const web = mode === "web";
  return {
    clearScreen: false,
    base: web ? "./" : "/",
    server: { port: web ? 5174 : 5173, strictPort: true },
    resolve: {
      alias: web ? [{ find: /^\.\/engine$/, replacement: fileURLToPath(new URL("./src/web/engine.ts", import.meta.url)) }] : [],
    },
    build: {
      outDir: web ? "dist-web" : "dist",
      emptyOutDir: true,
      // WebKitGTK and Safari 15 for the app; the browsers with simulcast and
      // requestVideoFrameCallback for the web client.
      target: web ? ["chrome100", "firefox110", "safari15.4"] : "safari15",
    },
  };
});
