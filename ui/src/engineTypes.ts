/** What every engine offers the screens (`engine.ts`, `web/engine.ts`). */

import type {
  CallUpdate_Serialize,
  DevicesChanged,
  LinkOpened,
  MicLevel,
  QuickJoin_Serialize,
  QuitRequested,
} from "./bindings";

/** An event the screens listen to; `listen` resolves to the function that stops it. */
export interface EventSource<T> {
  listen(callback: (event: { payload: T }) => void): Promise<() => void>;
}

export interface Events {
  callUpdate: EventSource<CallUpdate_Serialize>;
  devicesChanged: EventSource<DevicesChanged>;
  linkOpened: EventSource<LinkOpened>;
  micLevel: EventSource<MicLevel>;
  quickJoin: EventSource<QuickJoin_Serialize>;
  quitRequested: EventSource<QuitRequested>;
}

/** A video tile being drawn. */
export interface TileHandle {
  readonly tile: string;
  close(): void;
}
