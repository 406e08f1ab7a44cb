// Join links as the web client reads them: `npm test` compiles src/web/link.ts and runs this.
import { test } from "node:test";
import assert from "node:assert/strict";
import { pageLink, parseLink } from "../.test-build/web/link.js";

test("the join page's address gives the server, the room and the invite", () => {
  const t = parseLink("https://meet.example.org/j/standup?invite=nYwh-RL8");
  assert.deepEqual(t, { server: "https://meet.example.org/", room: "standup", invite: "nYwh-RL8", token: null });
  assert.equal(pageLink(t), "https://meet.example.org/j/standup?invite=nYwh-RL8");
});

test("a server below a proxy's path prefix keeps its prefix", () => {
  const t = parseLink("https://example.org/confer/j/RM_a%20b?token=eyJ.x.y");
  assert.equal(t.server, "https://example.org/confer/");
  assert.equal(t.room, "RM_a b");
  assert.equal(t.token, "eyJ.x.y");
  assert.equal(pageLink(t), "https://example.org/confer/j/RM_a%20b?token=eyJ.x.y");
});

test("the app's confer:// form is read too", () => {
  const t = parseLink("confer://join?server=http%3A%2F%2F127.0.0.1%3A7880&room=standup&invite=abc");
  assert.deepEqual(t, { server: "http://127.0.0.1:7880/", room: "standup", invite: "abc", token: null });
});

test("links that cannot be used say why, with the app's code", () => {
  for (const [link, why] of [
    ["", /Enter a join link/],
    ["standup", /starts with https/],
    ["https://meet.example.org/j/standup", /carries no invite/],
    ["https://meet.example.org/rooms/standup?invite=x", /names no room/],
    ["ftp://meet.example.org/j/standup?invite=x", /start with https/],
    ["confer://join?room=standup&invite=x", /names no server/],
  ]) {
    assert.throws(() => parseLink(link), (e) => e.code === "invalid_link" && why.test(e.message), link);
  }
});
