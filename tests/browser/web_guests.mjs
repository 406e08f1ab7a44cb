// Guests who have no app: each opens the invite link in Chromium (its fake camera, and a
// microphone playing a tone), presses "Join in this browser" on the join page, gives a
// name on the pre-join screen and joins the web client's call. Then, as people would,
// through the page: the first guest chats, the second mutes, the first shares a screen.
// Writes what each page showed and received as JSON, and a screenshot of the first
// guest's call with every tile showing video.
//
//   node web_guests.mjs --link URL --guests Ann,Ben --others 1 --out result.json
//                       [--screenshot shot.png] [--seconds 10] [--tone 660] [--share 0]
//                       [--chromium /usr/bin/chromium] [--ignore-https-errors 1]
//
// `--pause FILE`: once everyone sees everyone, write FILE.ready and wait for FILE (the
// test restarts the server or cuts the connection meanwhile), then wait until every
// guest's call is back: connected, and video from every other person moving again.
// `--hold FILE`: at the end, every guest turns the camera off (so the frames sent stop
// growing), the reports are taken a moment later, then FILE.ready is written and the
// guests stay until FILE appears: the test reads what the others received meanwhile.
// `--share 0`: no screen share (a share starting makes the browser pause its camera's
// top layer for a moment, which a test counting the camera's frames does not want).
// `--others`: how many people besides the guests are in the call (each guest waits
// until it sees video from every other person).

import { access, writeFile } from "node:fs/promises";
import { launchWithFakeDevices, parseArgs } from "./chromium.mjs";

const args = parseArgs(["link", "guests", "out"]);
const names = args.guests.split(",");
const others = Number(args.others ?? 0);
const seconds = Number(args.seconds ?? 10);
/** Writes `file`.ready, then waits until the test writes `file`. */
async function handOver(file) {
  await writeFile(`${file}.ready`, "");
  log(`waiting for ${file}`);
  while (!(await access(file).then(() => true, () => false))) await new Promise((r) => setTimeout(r, 100));
}
const log = (text) => console.log(`[${new Date().toISOString().slice(11, 23)}] ${text}`);

const browser = await launchWithFakeDevices({ executablePath: args.chromium, toneHz: Number(args.tone || 660) });

/** Waits for `pred` to hold in the page (polling), saying what it waited for if not. */
async function until(page, what, pred, arg, timeout = 30_000) {
  try {
    await page.waitForFunction(pred, arg, { timeout, polling: 250 });
  } catch (e) {
    throw new Error(`${what}: not within ${timeout / 1000} s (${e.message.split("\n")[0]})`);
  }
}

const result = { guests: [] };
let exitCode = 0;
try {
  const pages = [];
  for (const name of names) {
    const context = await browser.newContext({
      viewport: { width: 1280, height: 720 },
      ignoreHTTPSErrors: args["ignore-https-errors"] === "1",
    });
    const page = await context.newPage();
    page.on("console", (m) => m.type() !== "debug" && console.log(`[${name}] ${m.text()}`));
    page.on("pageerror", (e) => console.log(`[${name} page error] ${e.message}`));
    const response = await page.goto(args.link, { waitUntil: "load" });
    const joinPage = { status: response?.status(), heading: await page.textContent("h1") };
    log(`${name}: join page ${joinPage.status} "${joinPage.heading}"`);
    await page.click("#join-web");
    await page.waitForSelector("#prejoin", { timeout: 15_000 });
    await until(page, `${name}'s camera preview`, () => !!document.querySelector(".preview video")?.videoWidth);
    await page.fill("#prejoin-name", name);
    await page.click("#prejoin-join");
    await page.waitForSelector("#call", { timeout: 30_000 });
    log(`${name}: in the call`);
    pages.push({ name, page, joinPage });
  }

  // Everyone sees everyone: a tile with moving video from each other person.
  const expected = names.length - 1 + others;
  for (const { name, page } of pages) {
    await until(
      page,
      `${name} sees video from ${expected} others`,
      (n) => [...document.querySelectorAll(".tile.remote:not(.screen) video")].filter((v) => v.videoWidth > 0 && Number(v.dataset.frames) > 10).length >= n,
      expected,
    );
    log(`${name}: sees ${expected} others`);
  }
  if (args.pause) {
    // Whether the banner showed at any time while the test held the network or the
    // server: by the time the test hands back, the page may be back already.
    await pages[0].page.evaluate(() => {
      window.reconnectingSeen = false;
      setInterval(() => {
        if (document.querySelector("#reconnecting")?.hidden === false) window.reconnectingSeen = true;
      }, 50);
    });
    await handOver(args.pause);
    const started = Date.now();
    result.reconnecting_shown = await pages[0].page.evaluate(() => window.reconnectingSeen);
    for (const { name, page } of pages) {
      await until(page, `${name} back in the call`, () => document.querySelector("#reconnecting")?.hidden === true && !!document.querySelector("#call"));
      // Moving again: 20 frames drawn on each other person's tile from now on (a fresh
      // join has new tiles; a resumed call keeps its own).
      await page.evaluate(() => document.querySelectorAll(".tile.remote:not(.screen) video").forEach((v) => (v.dataset.mark = v.dataset.frames ?? "0")));
      await until(
        page,
        `${name} sees video from ${expected} others again`,
        (n) => [...document.querySelectorAll(".tile.remote:not(.screen) video")].filter((v) => v.videoWidth > 0 && Number(v.dataset.frames) > Number(v.dataset.mark ?? 0) + 20).length >= n,
        expected,
      );
      log(`${name}: back, with video`);
    }
    result.back_after_ms = Date.now() - started;
  }
  const [first, second] = pages;
  if (args.screenshot) await first.page.screenshot({ path: args.screenshot });

  // Chat, through the chat panel.
  await first.page.click("#chat-toggle");
  await first.page.fill("#chat-input", `hello from ${first.name}`);
  await first.page.press("#chat-input", "Enter");
  const chatSeen = {};
  for (const { name, page } of pages.slice(1)) {
    await until(page, `${name} reads ${first.name}'s message`, (t) => [...document.querySelectorAll(".chat-message .text")].some((m) => m.textContent === t), `hello from ${first.name}`);
    chatSeen[name] = true;
  }
  if (others > 0) {
    // The bot answers every message ("re: ...").
    await until(first.page, `${first.name} reads the bot's answer`, (t) => [...document.querySelectorAll(".chat-message .text")].some((m) => m.textContent === t), `re: hello from ${first.name}`);
    chatSeen.answer = true;
  }
  log("chat went both ways");

  // The second guest mutes; the first sees it on the tile.
  if (second) {
    await second.page.click("#mic-toggle");
    await until(second.page, `${second.name}'s microphone button shows muted`, () => document.querySelector("#mic-toggle")?.dataset.state === "off");
    const id = await second.page.evaluate(() => document.querySelector(".tile.local")?.dataset.participant);
    await until(first.page, `${first.name} sees ${second.name} muted`, (p) => !!document.querySelector(`.tile[data-participant="${p}"] .mic.muted`), id);
    log(`${second.name} muted`);
    // And raises a hand; the first sends a reaction.
    await second.page.click("#hand-toggle");
    await until(first.page, `${first.name} sees ${second.name}'s raised hand`, (p) => !document.querySelector(`.tile[data-participant="${p}"] .hand`)?.hidden, id);
    await first.page.click("#react-toggle");
    await first.page.click('#reactions .reaction[data-reaction="clap"]');
    await until(second.page, `${second.name} sees ${first.name}'s reaction`, () => !!document.querySelector('.reaction-float[data-reaction="clap"]'));
    log(`${second.name} raised a hand, ${first.name} clapped`);
  }

  // The first guest shares a screen; the others see it on the stage.
  if (args.share !== "0") {
    await first.page.click("#screen-toggle");
    await first.page.click("#screen-picker .source");
    await until(first.page, `${first.name}'s sharing banner`, () => !document.querySelector("#sharing")?.hidden);
    for (const { name, page } of pages.slice(1)) {
      await until(page, `${name} sees the shared screen`, () => !!document.querySelector(".tile.screen video")?.videoWidth);
    }
    log(`${first.name} shares a screen`);
  }

  await first.page.waitForTimeout(seconds * 1000);
  if (args.hold) {
    for (const { name, page } of pages) {
      await page.click("#camera-toggle");
      await until(page, `${name}'s camera button shows off`, () => document.querySelector("#camera-toggle")?.dataset.state === "off");
    }
    // The last frames sent reach everyone.
    await first.page.waitForTimeout(1500);
  }
  for (const { name, page, joinPage } of pages) {
    const seen = await page.evaluate(async () => ({
      tiles: [...document.querySelectorAll(".tile")].map((t) => ({
        participant: t.dataset.participant,
        name: t.querySelector(".name")?.textContent,
        local: t.classList.contains("local"),
        screen: t.classList.contains("screen"),
        muted: !!t.querySelector(".mic.muted"),
        video_width: t.querySelector("video")?.videoWidth ?? 0,
        frames: Number(t.querySelector("video")?.dataset.frames ?? 0),
      })),
      chat: [...document.querySelectorAll(".chat-message")].map((m) => m.querySelector(".text")?.textContent),
      report: await window.confer.report(),
    }));
    result.guests.push({ name, join_page: joinPage, chat_seen: name === first.name ? chatSeen : undefined, ...seen });
  }
  if (args.hold) await handOver(args.hold);
  // Leaving from the call screen brings the home screen back.
  for (const { page } of pages) {
    await page.click("#leave");
    await page.waitForSelector("#home", { timeout: 10_000 });
  }
} catch (e) {
  console.error(`web guests failed: ${e.stack || e}`);
  result.error = String(e.message || e);
  exitCode = 1;
} finally {
  await writeFile(args.out, JSON.stringify(result, null, 2));
  await browser.close();
}
process.exit(exitCode);
