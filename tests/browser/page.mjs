// Opens one address in headless Chromium and writes what a person sees there as JSON:
// the HTTP status, the title, the headings, the text, and every link (its id, address
// and words); optionally a screenshot. For the join page an invite link opens.
//
//   node page.mjs --url URL --out page.json [--screenshot shot.png] [--chromium /usr/bin/chromium]
//                 [--ignore-https-errors 1]

import { writeFile } from "node:fs/promises";
import { chromium } from "playwright-core";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
);
for (const required of ["url", "out"]) {
  if (!args[required]) {
    console.error(`missing --${required}`);
    process.exit(2);
  }
}

const browser = await chromium.launch({ executablePath: args.chromium || "/usr/bin/chromium", args: ["--no-sandbox"] });
try {
  const context = await browser.newContext({
    viewport: { width: 900, height: 640 },
    ignoreHTTPSErrors: args["ignore-https-errors"] === "1",
  });
  const page = await context.newPage();
  const response = await page.goto(args.url, { waitUntil: "load" });
  const seen = await page.evaluate(() => ({
    title: document.title,
    headings: [...document.querySelectorAll("h1, h2")].map((h) => h.textContent.trim()),
    text: document.body.innerText,
    links: [...document.querySelectorAll("a")].map((a) => ({
      id: a.id,
      href: a.getAttribute("href"),
      text: a.textContent.trim(),
      visible: a.getBoundingClientRect().width > 0,
    })),
    scripts: document.scripts.length,
  }));
  const headers = response ? await response.allHeaders() : {};
  if (args.screenshot) await page.screenshot({ path: args.screenshot });
  await writeFile(args.out, JSON.stringify({ status: response?.status() ?? 0, headers, ...seen }, null, 2));
} finally {
  await browser.close();
}
