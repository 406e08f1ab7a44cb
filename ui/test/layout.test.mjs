// The call's layout, without a window: `npm test` compiles src/layout.ts and runs this.
import { test } from "node:test";
import assert from "node:assert/strict";
import { arrange, PAGE_SIZE } from "../.test-build/layout.js";

/** A participant as the view describes one: a camera tile unless `camera` is false. */
function person(id, { local = false, camera = true, cameraOff = false, screen = false } = {}) {
  const tiles = [];
  if (camera) tiles.push({ tile: `${id}/main/v`, key: "main", screen: false });
  if (screen) tiles.push({ tile: `${id}/screen/v`, key: "screen", screen: true });
  return {
    id, identity: id, name: id, local, moderator: false, co_host: false, guest: false, hand_raised: false,
    mic_muted: false, camera_off: cameraOff, speaking: false, network_quality: 5, tiles,
  };
}

const grid = { layout: "grid", page: 0, activeSpeaker: null, hidden: false };
const ids = (slots) => slots.map((s) => s.id);

test("the grid pages through people, nine at a time, and wants only what it shows", () => {
  const people = [person("me", { local: true }), ...Array.from({ length: 10 }, (_, i) => person(`p${i}`))];
  const first = arrange(people, grid);
  assert.equal(PAGE_SIZE, 9);
  assert.equal(first.pages, 2);
  assert.equal(first.kind, "grid");
  assert.deepEqual(ids(first.stage), ["person:me", ...Array.from({ length: 8 }, (_, i) => `person:p${i}`)]);
  assert.equal(first.wants.length, 10, "every remote camera is subscribed");
  assert.deepEqual(first.wants.filter((w) => w.visible).length, 8);
  assert.ok(first.wants.every((w) => !w.large), "nine tiles are small");

  const second = arrange(people, { ...grid, page: 1 });
  assert.deepEqual(ids(second.stage), ["person:p8", "person:p9"]);
  assert.deepEqual(second.wants.filter((w) => w.visible).map((w) => w.tile), ["p8/main/v", "p9/main/v"]);
  assert.ok(second.wants.filter((w) => w.visible).every((w) => w.large), "two tiles are large");

  // A page past the end (people left) shows the last one.
  assert.equal(arrange(people.slice(0, 3), { ...grid, page: 5 }).page, 0);
});

test("a screen share takes the stage, a remote one first, and people go to the strip", () => {
  const people = [person("me", { local: true, screen: true }), person("ann", { screen: true }), person("bob")];
  const a = arrange(people, grid);
  assert.equal(a.kind, "screen");
  assert.deepEqual(ids(a.stage), ["ann/screen/v"]);
  assert.deepEqual(ids(a.strip), ["me/screen/v", "person:me", "person:ann", "person:bob"]);
  const screen = a.wants.find((w) => w.tile === "ann/screen/v");
  assert.deepEqual(screen, { tile: "ann/screen/v", visible: true, large: true });
  assert.ok(!a.wants.some((w) => w.tile.startsWith("me/")), "nothing of one's own is received");
});

test("speaker layout puts the active speaker on the stage", () => {
  const people = [person("me", { local: true }), person("ann"), person("bob")];
  const a = arrange(people, { ...grid, layout: "speaker", activeSpeaker: "bob" });
  assert.equal(a.kind, "speaker");
  assert.deepEqual(ids(a.stage), ["person:bob"]);
  assert.deepEqual(ids(a.strip), ["person:me", "person:ann"]);
  assert.deepEqual(a.wants.find((w) => w.tile === "bob/main/v"), { tile: "bob/main/v", visible: true, large: true });
  // Nobody speaking: the first other person.
  assert.deepEqual(ids(arrange(people, { ...grid, layout: "speaker" }).stage), ["person:ann"]);
});

test("a camera turned off shows an avatar but stays subscribed; a hidden window wants nothing seen", () => {
  const people = [person("me", { local: true }), person("ann", { cameraOff: true }), person("cid", { camera: false })];
  const a = arrange(people, grid);
  assert.equal(a.stage.find((s) => s.id === "person:ann").tile, null, "an avatar");
  assert.deepEqual(a.wants.map((w) => w.tile), ["ann/main/v"], "it may come back; no camera, no tile");
  assert.ok(arrange(people, { ...grid, hidden: true }).wants.every((w) => !w.visible));
});
