// What the browser scripts share: their arguments, and headless Chromium with fake
// devices (its moving test camera, a microphone playing a tone) set up for a Confer
// server on loopback.

import { writeFile } from "node:fs/promises";
import { join } from "node:path";
import { tmpdir } from "node:os";
import { chromium } from "playwright-core";

/** `--name value` pairs; exits with a message when one of `required` is missing. */
export function parseArgs(required) {
  const args = Object.fromEntries(
    process.argv.slice(2).reduce((pairs, a, i, all) => (a.startsWith("--") ? [...pairs, [a.slice(2), all[i + 1]]] : pairs), []),
  );
  for (const name of required) {
    if (!args[name]) {
      console.error(`missing --${name}`);
      process.exit(2);
    }
  }
  return args;
}

/** A mono 16-bit WAV of a sine tone, for Chromium's fake microphone. The tone comes in
 * syllables (a quarter second on, a twelfth off, with soft edges), as a voice does: a
 * steady tone is what noise suppression is made to remove. */
function toneWav(hz, seconds, rate = 48000) {
  const samples = rate * seconds;
  const buf = Buffer.alloc(44 + samples * 2);
  buf.write("RIFF", 0);
  buf.writeUInt32LE(36 + samples * 2, 4);
  buf.write("WAVEfmt ", 8);
  buf.writeUInt32LE(16, 16);
  buf.writeUInt16LE(1, 20);
  buf.writeUInt16LE(1, 22);
  buf.writeUInt32LE(rate, 24);
  buf.writeUInt32LE(rate * 2, 28);
  buf.writeUInt16LE(2, 32);
  buf.writeUInt16LE(16, 34);
  buf.write("data", 36);
  buf.writeUInt32LE(samples * 2, 40);
  const syllable = rate / 3;
  const on = rate / 4;
  const edge = rate / 100;
  for (let i = 0; i < samples; i++) {
    const t = i % syllable;
    const envelope = t >= on ? 0 : Math.min(1, t / edge, (on - t) / edge);
    buf.writeInt16LE(Math.round(12000 * envelope * Math.sin((2 * Math.PI * hz * i) / rate)), 44 + i * 2);
  }
  return buf;
}

/** Headless Chromium whose fake microphone plays `toneHz` (for `seconds`, looped). */
export async function launchWithFakeDevices({ executablePath = "/usr/bin/chromium", toneHz = 660, seconds = 120 } = {}) {
  const wav = join(tmpdir(), `confer-tone-${process.pid}.wav`);
  await writeFile(wav, toneWav(toneHz, seconds));
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--use-fake-ui-for-media-stream",
      "--use-fake-device-for-media-stream",
      `--use-file-for-fake-audio-capture=${wav}`,
      "--autoplay-policy=no-user-gesture-required",
      // The screen the fake picker shares.
      "--auto-select-desktop-capture-source=Entire screen",
      // The server is on loopback, and real addresses (not mDNS names) go in candidates.
      "--allow-loopback-in-peer-connection",
      "--disable-features=WebRtcHideLocalIpsWithMdns",
    ],
  });
}
