/**
 * Where each participant's video goes in a call: the stage, the strip beside it, or
 * another page of the grid; and which tiles to receive, at what size. Pure (no DOM),
 * so that it is tested without a window (`ui/test/layout.test.mjs`, `npm test`) and
 * any view of a call lays out alike.
 *
 * - A screen share takes the stage (a remote one first), everyone else the strip.
 * - Speaker layout puts the active speaker (else the first other person) on the stage.
 * - The grid shows people a page at a time, [`PAGE_SIZE`] to a page.
 * - Remote tiles on the stage or strip are wanted; only a stage of a few tiles asks for
 *   the large layer; nothing is wanted while the window is hidden.
 */

import type { ParticipantView, TileWant } from "./bindings";

export type Layout = "grid" | "speaker";

/** One box on the stage: a participant's camera (or its avatar) or a screen share. */
export interface Slot {
  id: string;
  participant: ParticipantView;
  /** The video tile it draws; `null` for an avatar (no camera, or camera off). */
  tile: string | null;
  screen: boolean;
}

export const PAGE_SIZE = 9;
export const STRIP_SIZE = 6;
/** A stage with at most this many tiles draws them large. */
const LARGE_UP_TO = 4;

export interface Arrangement {
  stage: Slot[];
  strip: Slot[];
  pages: number;
  /** The page shown, kept within `0..pages`. */
  page: number;
  /** What the stage shows, for its style. */
  kind: "grid" | "speaker" | "screen";
  /** What to receive: every remote tile, and whether it is seen and large. */
  wants: TileWant[];
}

/** Everything that can be on the stage, in order: screens, then people. */
export function slotsOf(participants: ParticipantView[]): Slot[] {
  const slots: Slot[] = [];
  for (const p of participants) {
    for (const t of p.tiles.filter((t) => t.screen)) slots.push({ id: t.tile, participant: p, tile: t.tile, screen: true });
  }
  for (const p of participants) {
    const camera = p.tiles.find((t) => !t.screen);
    slots.push({ id: `person:${p.id}`, participant: p, tile: camera && !p.camera_off ? camera.tile : null, screen: false });
  }
  return slots;
}

export function arrange(
  participants: ParticipantView[],
  how: { layout: Layout; page: number; activeSpeaker: string | null; hidden: boolean },
): Arrangement {
  const slots = slotsOf(participants);
  const screens = slots.filter((s) => s.screen);
  const people = slots.filter((s) => !s.screen);
  let stage: Slot[];
  let strip: Slot[] = [];
  let pages = 1;
  let page = 0;
  if (screens.length > 0) {
    const main = screens.find((s) => !s.participant.local) ?? screens[0];
    stage = [main];
    strip = [...screens.filter((s) => s !== main), ...people].slice(0, STRIP_SIZE);
  } else if (how.layout === "speaker" && people.length > 1) {
    const others = people.filter((s) => !s.participant.local);
    const speaker = others.find((s) => s.participant.id === how.activeSpeaker) ?? others[0];
    stage = [speaker];
    strip = people.filter((s) => s !== speaker).slice(0, STRIP_SIZE);
  } else {
    pages = Math.max(1, Math.ceil(people.length / PAGE_SIZE));
    page = Math.min(Math.max(how.page, 0), pages - 1);
    stage = people.slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE);
  }
  const shown = new Set([...stage, ...strip].map((s) => s.id));
  const large = stage.length <= LARGE_UP_TO;
  const wants: TileWant[] = [];
  for (const s of slots) {
    // A camera that is off is still subscribed (it may come back), just not seen.
    const tile = s.screen ? s.id : s.participant.tiles.find((t) => !t.screen)?.tile;
    if (!tile || s.participant.local) continue;
    wants.push({ tile, visible: shown.has(s.id) && !how.hidden, large: stage.includes(s) && large });
  }
  return { stage, strip, pages, page, kind: screens.length > 0 ? "screen" : how.layout, wants };
}
