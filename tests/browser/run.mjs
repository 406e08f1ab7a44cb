// Runs the browser client (index.html + client.js) in headless Chromium with its fake
// camera and a microphone that plays a tone, joins a Confer room, stays for a while,
// and writes what the page received and sent (getStats, media elements) as JSON.
//
//   node run.mjs --url http://127.0.0.1:7880 --token TOKEN --seconds 15 --out result.json
//                [--tone 660] [--chromium /usr/bin/chromium] [--screenshot shot.png] [--relay 1]
//                [--publish 0] [--gather 1 (send descriptions only once ICE gathering completed)]
//                [--join-after MS (join that long after the page loaded, as from a pre-join screen)]

import { createServer } from "node:http";
import { readFile, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { launchWithFakeDevices, parseArgs } from "./chromium.mjs";

const here = dirname(fileURLToPath(import.meta.url));
const args = parseArgs(["url", "token", "out"]);
const seconds = Number(args.seconds || 15);

// The page is served from localhost, a secure context, so getUserMedia works.
const files = { "/index.html": "text/html", "/client.js": "text/javascript" };
const server = createServer(async (req, res) => {
  const path = new URL(req.url, "http://x").pathname;
  if (!files[path]) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { "content-type": files[path] }).end(await readFile(join(here, path)));
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const pagePort = server.address().port;

const browser = await launchWithFakeDevices({ executablePath: args.chromium, toneHz: Number(args.tone || 660), seconds: 60 });
let exitCode = 0;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.log(`[page] ${m.text()}`));
  page.on("pageerror", (e) => console.log(`[page error] ${e.message}`));
  const query = new URLSearchParams({
    url: args.url,
    token: args.token,
    publish: args.publish ?? "1",
    relay: args.relay ?? "0",
    gather: args.gather ?? "0",
    join_after: args["join-after"] ?? "0",
  });
  await page.goto(`http://127.0.0.1:${pagePort}/index.html?${query}`);
  await page.evaluate(() => window.conferReady);
  await page.waitForTimeout(seconds * 1000);
  const report = await page.evaluate(() => window.confer.report());
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  await writeFile(args.out, JSON.stringify(report, null, 2));
  console.log(JSON.stringify({ inbound: report.inbound, media_path: report.media_path, elements: report.elements, first_frame_ms: report.first_frame_ms }));
} catch (e) {
  console.error(`browser client failed: ${e.stack || e}`);
  exitCode = 1;
} finally {
  await browser.close();
  server.close();
}
process.exit(exitCode);
