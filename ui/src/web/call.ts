/**
 * A call in the browser, on the browser's own WebRTC: the web engine's counterpart of
 * the app's Rust call (`crates/app-core/src/call`). It joins over signaling, publishes
 * the camera (with simulcast) and microphone, subscribes to everyone as the view shows
 * them (small tiles the low layer, hidden ones no video), keeps the join token fresh,
 * resumes after a dropped connection, and projects it all into the same `CallView` the
 * app's screens draw.
 */

import type {
  CallUpdate_Serialize as CallUpdate,
  CallView_Serialize as CallView,
  ChatMessage_Serialize as ChatMessage,
  EndReason,
  LocalDevice,
  MediaSettings_Serialize as MediaSettings,
  ParticipantView,
  TileWant,
} from "../bindings";
import { pageLink, type JoinTarget } from "./link";
import { cameraConstraints, microphoneConstraints, open, setTile } from "./media";
import { Signal, SignalError, type ErrorBody, type Frame } from "./signal";

/** A refusal the view shows: a stable code and words a person can act on. */
export interface CallError {
  code: string;
  message: string;
}

export const LOCAL_TILE = "local:main";

/** What the app says for each refusal (`crates/app-core/src/call/join.rs`). */
export function refusal(body: ErrorBody): CallError {
  const words: Record<string, string> = {
    invalid_invite: "This invite link is invalid or has expired. Ask for a new one.",
    invalid_token: "This join link is invalid or has expired. Ask for a new one.",
    token_expired: "This join link is invalid or has expired. Ask for a new one.",
    room_full: "This meeting is full.",
    room_not_found: "This meeting's room does not exist.",
    disabled_by_policy: "This meeting does not admit guests.",
    not_a_member: "You are not allowed into this meeting.",
    room_locked: "The host locked this meeting: nobody new can join.",
  };
  return { code: body.name, message: words[body.name] ?? body.message };
}

const ENDED: Record<EndReason, string> = {
  left: "You left the call.",
  kicked: "A moderator removed you from the call.",
  token_expired: "Your access to this meeting expired. Join again with a fresh link.",
  replaced: "You joined this meeting from somewhere else, so this window left it.",
  session_ended: "The meeting was ended for everyone.",
  room_deleted: "The meeting's room was deleted.",
  protocol_violation: "The server closed the connection after an error in this app.",
  server_shutdown: "The server shut down.",
  server_error: "The server ran into an error. Join again to continue.",
  denied: "The host did not let you into the meeting.",
  connection_lost: "The connection to the meeting was lost and could not be restored.",
};

function asCallError(e: unknown, server: string): CallError {
  if (e instanceof SignalError) {
    if (e.body.name === "server_unreachable") return unreachable(server);
    return refusal(e.body);
  }
  return { code: "join_failed", message: e instanceof Error ? e.message : String(e) };
}

function unreachable(server: string): CallError {
  return { code: "server_unreachable", message: `Cannot reach the server at ${server}. Check the address and your network connection.` };
}

interface TokenPair {
  token: string;
  expires_at: number;
  refresh_token?: string;
}

/** Calls the room API (only the routes that need no API key). */
async function api(server: string, path: string, body: unknown): Promise<Frame> {
  let response: Response;
  try {
    response = await fetch(`${server}v1/${path}`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
  } catch {
    throw unreachable(server);
  }
  const answer = await response.json().catch(() => null);
  if (!response.ok) throw answer?.name ? refusal(answer as ErrorBody) : unreachable(server);
  return answer;
}

/** A subscribed track, by the mid of its media section in the server's offer. */
interface Incoming {
  participant_id: string;
  key: string;
  track_id: string;
  kind: string;
}

interface Options {
  audio: boolean;
  video: boolean;
  quality: "low" | "medium" | "high";
}

export class WebCall {
  private signal!: Signal;
  private token!: TokenPair;
  private refreshTimer = 0;
  private iceServers: RTCIceServer[] = [];
  private resumeToken = "";
  private resumeGraceMs = 20_000;
  private ended = false;

  // The room, as the snapshot and the events since tell it.
  private room = { id: "", name: "" };
  private me!: Frame;
  private people = new Map<string, Frame>();
  private names = new Map<string, string>();
  private hands: { participant_id: string }[] = [];
  private knocks: Frame[] = [];
  private locked = false;
  private breakouts: Frame | null = null;
  private reconnecting = false;

  // What this browser sends.
  private mic: MediaStreamTrack | null = null;
  private camera: MediaStreamTrack | null = null;
  private micState: LocalDevice = "missing";
  private cameraState: LocalDevice = "missing";
  private publisher: RTCPeerConnection | null = null;
  private micSender: RTCRtpSender | null = null;
  private cameraSender: RTCRtpSender | null = null;
  /** Track ids of the published stream `main`, by kind. */
  private mainTracks = new Map<string, string>();
  private screen: { transceiver: RTCRtpTransceiver; track: MediaStreamTrack | null } | null = null;
  private sharing = false;
  private negotiating: Promise<unknown> = Promise.resolve();
  /** When `main` went live (Unix ms). */
  private publishedAt: number | null = null;

  // What it receives.
  private subscriber: RTCPeerConnection | null = null;
  private answering: Promise<unknown> = Promise.resolve();
  private incoming = new Map<string, Incoming>();
  private subscribed = new Map<string, Options>();
  private wants = new Map<string, TileWant>();
  private audioOnly: boolean;
  private speaking = new Set<string>();
  private activeSpeaker: string | null = null;
  private quality = new Map<string, number>();
  private audio = new Map<string, HTMLAudioElement>();

  private constructor(
    private readonly target: JoinTarget,
    private media: MediaSettings,
    private readonly emit: (update: CallUpdate) => void,
  ) {
    this.audioOnly = media.audio_only;
  }

  /** Gets a token for the link, opens the devices, joins and starts sending. */
  static async join(target: JoinTarget, name: string, media: MediaSettings, emit: (u: CallUpdate) => void): Promise<WebCall> {
    const call = new WebCall(target, media, emit);
    const server = target.server;
    call.token = target.invite
      ? ((await api(server, "invites/exchange", { invite: target.invite, name })) as TokenPair)
      : { token: target.token ?? "", expires_at: 0 };
    await call.openDevices();
    try {
      call.signal = await Signal.open(`${server.replace(/^http/, "ws")}v1/signal`);
      call.signal.onEvent = (e) => call.onEvent(e);
      let joined = await call.signal.request({ type: "join", token: call.token.token, room: target.room, name });
      if (joined.type === "knocking") joined = await call.waitInLobby();
      await call.enter(joined);
    } catch (e) {
      call.release();
      throw asCallError(e, server);
    }
    call.signal.onClose = () => void call.resume();
    call.scheduleRefresh();
    return call;
  }

  // ---- Joining, moving, resuming ----------------------------------------------

  private waitInLobby(): Promise<Frame> {
    this.emit({ type: "notice", code: "waiting_in_lobby", message: "Waiting for the host to let you in…" });
    return new Promise((resolve, reject) => {
      this.lobby = { resolve, reject };
    });
  }

  private lobby: { resolve: (snapshot: Frame) => void; reject: (e: unknown) => void } | null = null;

  /** Takes in a snapshot (a join, an admission, a move): the room's state, then media. */
  private async enter(snapshot: Frame): Promise<void> {
    this.room = { id: snapshot.room.id, name: snapshot.room.name };
    this.me = snapshot.participant;
    this.people = new Map((snapshot.participants as Frame[]).map((p) => [p.id, p]));
    for (const p of [this.me, ...this.people.values()]) this.names.set(p.id, p.name);
    this.hands = snapshot.hands ?? [];
    this.knocks = snapshot.knocks ?? [];
    this.locked = snapshot.locked;
    this.breakouts = snapshot.breakouts ?? null;
    this.resumeToken = snapshot.resume_token ?? this.resumeToken;
    this.resumeGraceMs = snapshot.limits?.resume_grace_ms ?? this.resumeGraceMs;
    if (snapshot.token_expires_at) this.token.expires_at = snapshot.token_expires_at;
    this.iceServers = (snapshot.ice_servers ?? []).map((s: Frame) => ({ urls: s.urls, username: s.username, credential: s.credential }));
    // New media connections in every room (a move closes the old ones).
    this.closeMedia();
    this.update();
    await this.publishMain();
    for (const p of this.people.values()) for (const s of p.streams ?? []) void this.subscribe(p.id, s.key);
    void this.signal.request({ type: "set_network_metrics", participants: [this.me.id, ...this.people.keys()] }).catch(() => {});
    this.update();
  }

  /** The signaling connection dropped: come back as the same participant while the server keeps us. */
  private async resume(): Promise<void> {
    if (this.ended) return;
    this.reconnecting = true;
    this.update();
    const giveUp = Date.now() + this.resumeGraceMs;
    for (let delay = 250; Date.now() < giveUp && !this.ended; delay = Math.min(delay * 2, 2000)) {
      await new Promise((r) => setTimeout(r, delay * (0.75 + Math.random() / 2)));
      try {
        const signal = await Signal.open(`${this.target.server.replace(/^http/, "ws")}v1/signal`);
        signal.lastSeq = this.signal.lastSeq;
        signal.onEvent = (e) => this.onEvent(e);
        const resume = { participant_id: this.me.id, resume_token: this.resumeToken, last_seq: this.signal.lastSeq };
        const answer = signal.request({ type: "join", token: this.token.token, room: this.room.id, resume });
        this.signal = signal;
        await answer;
        signal.onClose = () => void this.resume();
        this.reconnecting = false;
        this.update();
        // Media connections that lost their path meanwhile start over.
        if (this.publisher && this.publisher.connectionState !== "connected") void this.restartPublisher();
        if (this.subscriber && this.subscriber.connectionState !== "connected") void signal.request({ type: "restart_subscriber" }).catch(() => {});
        return;
      } catch (e) {
        if (e instanceof SignalError && e.body.name === "resume_failed") break;
        console.warn("resume failed, trying again", e);
      }
    }
    // The server no longer keeps us (or was out of reach for the whole grace): join afresh.
    if (!this.ended) void this.rejoin("connection_lost");
  }

  /** The server restarted, or forgot us: a fresh join (the session is gone), retried
   * with growing, jittered delays while it is out of reach, for up to two minutes. */
  private async rejoin(failure: "server_shutdown" | "connection_lost" = "server_shutdown"): Promise<void> {
    this.signal.onClose = () => {};
    this.signal.close();
    this.reconnecting = true;
    this.closeMedia();
    this.update();
    const giveUp = Date.now() + 120_000;
    for (let delay = 500; Date.now() < giveUp && !this.ended; delay = Math.min(delay * 2, 8000)) {
      await new Promise((r) => setTimeout(r, delay * (0.75 + Math.random() / 2)));
      try {
        if (this.token.refresh_token) {
          this.token = (await api(this.target.server, "tokens/refresh", { refresh_token: this.token.refresh_token })) as TokenPair;
        }
        const signal = await Signal.open(`${this.target.server.replace(/^http/, "ws")}v1/signal`);
        signal.onEvent = (e) => this.onEvent(e);
        this.signal = signal;
        let joined = await signal.request({ type: "join", token: this.token.token, room: this.room.id, name: this.me.name });
        if (joined.type === "knocking") joined = await this.waitInLobby();
        signal.onClose = () => void this.resume();
        this.reconnecting = false;
        await this.enter(joined);
        this.scheduleRefresh();
        return;
      } catch (e) {
        const refused = (e as Partial<CallError>)?.code ?? (e instanceof SignalError ? e.body.name : null);
        console.warn("rejoining", refused, e);
        if (refused && refused !== "server_unreachable" && refused !== "connection_lost") break;
      }
    }
    this.finish(failure);
  }

  private restartPublisher(): Promise<unknown> {
    return this.renegotiate(async (pc) => {
      await pc.setLocalDescription(await pc.createOffer({ iceRestart: true }));
      const answer = await this.signal.request({ type: "publisher_offer", sdp: pc.localDescription!.sdp });
      await pc.setRemoteDescription({ type: "answer", sdp: answer.sdp });
    });
  }

  /** Trades the refresh token for a new join token two thirds into each token's life. */
  private scheduleRefresh(): void {
    window.clearTimeout(this.refreshTimer);
    if (!this.token.refresh_token || !this.token.expires_at || this.ended) return;
    const wait = Math.max(1000, ((this.token.expires_at - Date.now()) * 2) / 3);
    this.refreshTimer = window.setTimeout(async () => {
      try {
        const pair = (await api(this.target.server, "tokens/refresh", { refresh_token: this.token.refresh_token })) as TokenPair;
        const updated = await this.signal.request({ type: "update_token", token: pair.token });
        this.token = { ...pair, expires_at: updated.expires_at ?? pair.expires_at };
        if (updated.ice_servers) {
          this.iceServers = updated.ice_servers.map((s: Frame) => ({ urls: s.urls, username: s.username, credential: s.credential }));
          for (const pc of [this.publisher, this.subscriber]) pc?.setConfiguration(this.rtcConfig());
        }
        this.scheduleRefresh();
      } catch (e) {
        console.warn("the join token cannot be renewed", e);
        this.emit({ type: "notice", code: "token_renewal_failed", message: "Your access to this meeting could not be renewed: the call ends when it runs out." });
      }
    }, wait);
  }

  // ---- Sending ---------------------------------------------------------------

  private async openDevices(): Promise<void> {
    const [mic, camera] = await Promise.all([
      open("audio", microphoneConstraints(this.media)),
      this.media.start_camera_off || this.audioOnly ? Promise.resolve(null) : open("video", cameraConstraints(this.media)),
    ]);
    this.mic = mic;
    this.camera = camera;
    const hasCamera = camera !== null || (await navigator.mediaDevices.enumerateDevices().catch(() => [])).some((d) => d.kind === "videoinput");
    this.micState = mic ? (this.media.start_muted ? "off" : "on") : "missing";
    this.cameraState = camera ? "on" : hasCamera ? "off" : "missing";
    if (mic) mic.enabled = this.micState === "on";
    if (!mic) this.emit({ type: "notice", code: "no_microphone", message: "No microphone could be opened: the others will not hear you." });
    setTile(LOCAL_TILE, camera ? new MediaStream([camera]) : null);
  }

  private rtcConfig(): RTCConfiguration {
    return { iceServers: this.iceServers, iceTransportPolicy: this.media.force_relay ? "relay" : "all" };
  }

  /** Runs one renegotiation of the publisher connection at a time. */
  private renegotiate<T>(step: (pc: RTCPeerConnection) => Promise<T>): Promise<T> {
    const run = this.negotiating.then(() => step(this.publisher!));
    this.negotiating = run.catch(() => {});
    return run;
  }

  /** Publishes the microphone and the camera (three simulcast layers) as stream `main`. */
  private async publishMain(): Promise<void> {
    if (this.micState === "missing" && this.cameraState === "missing") return;
    const pc = new RTCPeerConnection(this.rtcConfig());
    this.publisher = pc;
    // An application section from the start: data tracks later need no renegotiation.
    pc.createDataChannel("confer");
    const tracks: { transceiver: RTCRtpTransceiver; kind: string; source: string; muted: boolean }[] = [];
    if (this.mic) {
      const transceiver = pc.addTransceiver(this.mic, { direction: "sendonly" });
      this.micSender = transceiver.sender;
      tracks.push({ transceiver, kind: "audio", source: "microphone", muted: this.micState !== "on" });
    }
    if (this.cameraState !== "missing") {
      const sendEncodings = [
        { rid: "q", scaleResolutionDownBy: 4 },
        { rid: "h", scaleResolutionDownBy: 2 },
        { rid: "f", scaleResolutionDownBy: 1 },
      ];
      const transceiver = pc.addTransceiver(this.camera ?? "video", { direction: "sendonly", sendEncodings });
      this.cameraSender = transceiver.sender;
      tracks.push({ transceiver, kind: "video", source: "camera", muted: this.cameraState !== "on" });
    }
    pc.onconnectionstatechange = () => {
      if (pc.connectionState === "failed" && this.publisher === pc && !this.reconnecting) void this.restartPublisher().catch(() => {});
    };
    await this.renegotiate(async () => {
      await pc.setLocalDescription(await pc.createOffer());
      const published = await this.signal.request({
        type: "publish",
        key: "main",
        tracks: tracks.map((t) => ({ mid: t.transceiver.mid, kind: t.kind, source: t.source, simulcast: t.kind === "video", muted: t.muted })),
        sdp: pc.localDescription!.sdp,
      });
      await pc.setRemoteDescription({ type: "answer", sdp: published.sdp });
      this.publishedAt = Date.now();
      this.mainTracks = new Map((published.stream.tracks as Frame[]).map((t) => [t.kind, t.id]));
      this.me = { ...this.me, streams: [published.stream] };
    });
  }

  /** Mutes or unmutes a track of `main` for everyone. */
  private async setMuted(kind: "audio" | "video", muted: boolean): Promise<void> {
    const track_id = this.mainTracks.get(kind);
    if (!track_id) return;
    await this.signal.request({ type: "update_stream", key: "main", tracks: [{ track_id, muted }] });
  }

  async setMicrophone(on: boolean): Promise<void> {
    if (this.micState === "missing" || !this.mic) throw { code: "no_microphone", message: "There is no microphone to unmute." };
    if (this.micState === "censored") throw { code: "censored", message: "A moderator stopped your microphone." };
    await this.setMuted("audio", !on);
    this.mic.enabled = on;
    this.micState = on ? "on" : "off";
    this.update();
  }

  async setCamera(on: boolean): Promise<void> {
    if (this.cameraState === "missing" || !this.cameraSender) throw { code: "no_camera", message: "There is no camera to turn on." };
    if (this.cameraState === "censored") throw { code: "censored", message: "A moderator stopped your camera." };
    if (on) {
      const camera = this.camera ?? (await open("video", cameraConstraints(this.media)));
      if (!camera) throw { code: "no_camera", message: "The camera could not be opened." };
      this.camera = camera;
      await this.cameraSender.replaceTrack(camera);
      setTile(LOCAL_TILE, new MediaStream([camera]));
      if (this.audioOnly) await this.setAudioOnly(false);
    } else {
      // Off means off: the camera's light too.
      await this.cameraSender.replaceTrack(null);
      this.camera?.stop();
      this.camera = null;
      setTile(LOCAL_TILE, null);
    }
    await this.setMuted("video", !on);
    this.cameraState = on ? "on" : "off";
    this.update();
  }

  /** Moves the call to the devices the settings name. */
  async useDevices(media: MediaSettings): Promise<void> {
    const micChanged = media.microphone !== this.media.microphone;
    const cameraChanged = media.camera !== this.media.camera;
    this.media = media;
    if (micChanged && this.mic && this.micSender) {
      const mic = await open("audio", microphoneConstraints(media));
      if (mic) {
        mic.enabled = this.mic.enabled;
        await this.micSender.replaceTrack(mic);
        this.mic.stop();
        this.mic = mic;
      }
    }
    if (cameraChanged && this.camera && this.cameraSender) {
      const camera = await open("video", cameraConstraints(media));
      if (camera) {
        await this.cameraSender.replaceTrack(camera);
        this.camera.stop();
        this.camera = camera;
        setTile(LOCAL_TILE, new MediaStream([camera]));
      }
    }
    for (const element of this.audio.values()) void setSink(element, media.speaker);
  }

  /** Shares a screen or window the browser lets the user pick; `false` stops. */
  async shareScreen(on: boolean): Promise<void> {
    if (!on) return this.stopSharing();
    if (this.sharing) return;
    let track: MediaStreamTrack;
    try {
      const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { ideal: 15 } }, audio: false });
      track = stream.getVideoTracks()[0];
    } catch (e) {
      // Cancelled in the browser's picker, or not allowed.
      throw { code: "screen_unavailable", message: `The screen could not be shared${e instanceof Error ? ` (${e.message})` : ""}.` };
    }
    track.contentHint = "detail";
    track.addEventListener("ended", () => void this.stopSharing());
    if (!this.publisher) {
      track.stop();
      throw { code: "screen_unavailable", message: "Screen sharing needs a microphone or camera connection to the meeting." };
    }
    await this.renegotiate(async (pc) => {
      // One media section for every share: a new share reuses it.
      if (this.screen) await this.screen.transceiver.sender.replaceTrack(track);
      else this.screen = { transceiver: pc.addTransceiver(track, { direction: "sendonly" }), track };
      this.screen.track = track;
      await pc.setLocalDescription(await pc.createOffer());
      const published = await this.signal.request({
        type: "publish",
        key: "screen",
        tracks: [{ mid: this.screen.transceiver.mid, kind: "video", source: "screen_share" }],
        sdp: pc.localDescription!.sdp,
      });
      await pc.setRemoteDescription({ type: "answer", sdp: published.sdp });
    });
    this.sharing = true;
    this.update();
  }

  private async stopSharing(): Promise<void> {
    if (!this.sharing || !this.screen) return;
    this.sharing = false;
    this.screen.track?.stop();
    this.screen.track = null;
    await this.screen.transceiver.sender.replaceTrack(null);
    await this.signal.request({ type: "unpublish", key: "screen" }).catch((e) => console.warn("unpublish", e));
    this.update();
  }

  // ---- Receiving ---------------------------------------------------------------

  /** What to receive of a stream, as the view shows it (as the app's `wanted`). */
  private wanted(participant: string, key: string): Options {
    const want = this.wants.get(`${participant}:${key}`);
    const quality = key === "screen" || want?.large ? "high" : want ? "low" : "medium";
    return { audio: true, video: !this.audioOnly && (want?.visible ?? true), quality };
  }

  private async subscribe(participant: string, key: string): Promise<void> {
    const id = `${participant}:${key}`;
    if (this.subscribed.has(id)) return;
    const options = this.wanted(participant, key);
    this.subscribed.set(id, options);
    try {
      await this.signal.request({ type: "subscribe", participant_id: participant, key, ...options });
    } catch (e) {
      this.subscribed.delete(id);
      console.warn("subscribe failed", participant, key, e);
    }
  }

  /** Brings every subscription in line with what the view shows. */
  async setTiles(wants: TileWant[]): Promise<void> {
    this.wants = new Map(wants.map((w) => [w.tile, w]));
    await this.applyWants();
  }

  private async applyWants(): Promise<void> {
    for (const [id, options] of [...this.subscribed]) {
      const at = id.lastIndexOf(":");
      const [participant, key] = [id.slice(0, at), id.slice(at + 1)];
      const wanted = this.wanted(participant, key);
      if (JSON.stringify(wanted) === JSON.stringify(options)) continue;
      this.subscribed.set(id, wanted);
      await this.signal
        .request({ type: "update_subscription", participant_id: participant, key, ...wanted })
        .catch((e) => console.warn("subscription change failed", id, e));
    }
  }

  async setAudioOnly(on: boolean): Promise<void> {
    this.audioOnly = on;
    if (on && this.cameraState === "on") await this.setCamera(false);
    await this.applyWants();
    this.update();
  }

  private answer(sdp: string): void {
    this.answering = this.answering
      .then(async () => {
        if (!this.subscriber) {
          const pc = new RTCPeerConnection(this.rtcConfig());
          pc.ontrack = (e) => this.onTrack(e);
          this.subscriber = pc;
        }
        const pc = this.subscriber;
        await pc.setRemoteDescription({ type: "offer", sdp });
        await pc.setLocalDescription(await pc.createAnswer());
        await this.signal.request({ type: "subscriber_answer", sdp: pc.localDescription!.sdp });
      })
      .catch((e) => console.warn("subscriber offer not answered", e));
  }

  private onTrack(event: RTCTrackEvent): void {
    const info = this.incoming.get(event.transceiver.mid ?? "");
    if (!info) return;
    if (event.track.kind === "video") {
      setTile(`${info.participant_id}:${info.key}`, new MediaStream([event.track]));
    } else {
      const element = document.createElement("audio");
      element.autoplay = true;
      element.dataset.track = info.track_id;
      element.dataset.participant = info.participant_id;
      element.srcObject = new MediaStream([event.track]);
      void setSink(element, this.media.speaker);
      audioBox().append(element);
      this.audio.get(info.track_id)?.remove();
      this.audio.set(info.track_id, element);
    }
  }

  /** Stops showing and playing what a subscription carried. */
  private dropSubscription(participant: string, key: string): void {
    this.subscribed.delete(`${participant}:${key}`);
    setTile(`${participant}:${key}`, null);
    for (const [mid, info] of this.incoming) {
      if (info.participant_id !== participant || info.key !== key) continue;
      this.incoming.delete(mid);
      this.audio.get(info.track_id)?.remove();
      this.audio.delete(info.track_id);
    }
  }

  // ---- Events --------------------------------------------------------------------

  private onEvent(frame: Frame): void {
    const p = (id: string) => (id === this.me?.id ? this.me : this.people.get(id));
    const trackOf = (participant: string, trackId: string) =>
      (p(participant)?.streams as Frame[] | undefined)?.flatMap((s) => s.tracks as Frame[]).find((t) => t.id === trackId);
    switch (frame.event) {
      case "participant_joined":
        this.people.set(frame.participant.id, frame.participant);
        this.names.set(frame.participant.id, frame.participant.name);
        void this.signal.request({ type: "set_network_metrics", participants: [this.me.id, ...this.people.keys()] }).catch(() => {});
        break;
      case "participant_updated":
        if (frame.participant.id === this.me.id) this.me = { ...frame.participant, streams: this.me.streams };
        else this.people.set(frame.participant.id, frame.participant);
        break;
      case "participant_left":
        this.people.delete(frame.participant_id);
        this.hands = this.hands.filter((h) => h.participant_id !== frame.participant_id);
        break;
      case "stream_published": {
        const who = this.people.get(frame.participant_id);
        if (who) who.streams = [...((who.streams as Frame[]) ?? []).filter((s) => s.key !== frame.stream.key), frame.stream];
        void this.subscribe(frame.participant_id, frame.stream.key);
        break;
      }
      case "stream_unpublished": {
        const who = this.people.get(frame.participant_id);
        if (who) who.streams = ((who.streams as Frame[]) ?? []).filter((s) => s.key !== frame.key);
        this.dropSubscription(frame.participant_id, frame.key);
        break;
      }
      case "subscription_started":
        for (const t of frame.tracks) this.incoming.set(t.mid, { participant_id: frame.participant_id, key: frame.key, track_id: t.track_id, kind: t.kind });
        return;
      case "subscription_ended":
        this.dropSubscription(frame.participant_id, frame.key);
        // A lost subscriber connection ends every subscription: subscribe again.
        if (frame.reason === "media_failed" && this.people.has(frame.participant_id)) void this.subscribe(frame.participant_id, frame.key);
        return;
      case "subscriber_offer":
        this.answer(frame.sdp);
        return;
      case "stream_failed":
        // The publisher connection is gone: publish again on a new one.
        if (frame.key === "main") void this.publishMain().catch((e) => console.warn("publish again", e));
        if (frame.key === "screen") this.sharing = false;
        break;
      case "track_disabled":
      case "track_enabled":
      case "track_censored":
      case "track_uncensored": {
        const t = trackOf(frame.participant_id, frame.track_id);
        if (t) {
          if (frame.event.startsWith("track_censor") || frame.event.startsWith("track_uncensor")) t.censored = frame.event === "track_censored";
          else t.muted = frame.event === "track_disabled";
        }
        if (frame.participant_id === this.me.id) this.followModerator(frame);
        break;
      }
      case "message_received": {
        const message: ChatMessage = {
          id: frame.message_id,
          from_id: frame.from,
          from_name: frame.from_name ?? this.names.get(frame.from) ?? frame.from_identity,
          text: frame.text,
          private: Array.isArray(frame.to),
          to_name: null,
          sent_at: frame.sent_at,
          mine: false,
        };
        this.emit({ type: "chat", message });
        return;
      }
      case "audio_activity": {
        this.speaking = new Set((frame.levels as Frame[]).filter((l) => l.voice ?? l.level > 0.1).map((l) => l.participant_id));
        if (frame.active_speaker) this.activeSpeaker = frame.active_speaker;
        break;
      }
      case "network_metrics":
        for (const r of frame.reports) this.quality.set(r.participant_id, r.score);
        break;
      case "hand_raised":
        if (!this.hands.some((h) => h.participant_id === frame.participant_id)) this.hands.push({ participant_id: frame.participant_id });
        break;
      case "hand_lowered":
        this.hands = this.hands.filter((h) => h.participant_id !== frame.participant_id);
        break;
      case "reaction":
        this.emit({ type: "reaction", from_id: frame.participant_id, from_name: this.names.get(frame.participant_id) ?? "", reaction: frame.reaction });
        return;
      case "unmute_requested":
        this.emit({ type: "unmute_requested", by_name: this.names.get(frame.by) ?? "A moderator", camera: frame.kind === "video" });
        return;
      case "room_locked":
      case "room_unlocked":
        this.locked = frame.event === "room_locked";
        break;
      case "room_updated":
        this.room = { id: frame.room.id, name: frame.room.name };
        break;
      case "knocking":
        this.knocks = [...this.knocks.filter((k) => k.participant_id !== frame.knock.participant_id), frame.knock];
        break;
      case "knock_ended":
        this.knocks = this.knocks.filter((k) => k.participant_id !== frame.participant_id);
        break;
      case "admitted":
        this.lobby?.resolve(frame.snapshot);
        this.lobby = null;
        return;
      case "denied":
        this.lobby?.reject(new SignalError({ code: 0, name: "denied", message: ENDED.denied }));
        this.lobby = null;
        return;
      case "breakouts_updated":
        this.breakouts = frame.breakouts ?? null;
        break;
      case "moved":
        this.emit({ type: "notice", code: "moved", message: `You are now in ${frame.snapshot.room.name}.` });
        void this.enter(frame.snapshot).catch((e) => console.warn("after the move", e));
        return;
      case "disconnected":
        // A restart means "come back": join afresh once the server is up again.
        if (frame.reason === "server_shutdown") void this.rejoin();
        else this.finish(frame.reason in ENDED ? (frame.reason as EndReason) : "server_error");
        return;
    }
    this.update();
  }

  /** A moderator muted or stopped this participant's microphone or camera. */
  private followModerator(frame: Frame): void {
    const audio = frame.kind === "audio";
    const state: LocalDevice =
      frame.event === "track_censored" ? "censored" : frame.event === "track_uncensored" || frame.event === "track_enabled" ? "on" : "off";
    if (frame.event === "track_uncensored") {
      // Back as it was before: the track's own mute decides.
      const muted = !!(this.me.streams as Frame[] | undefined)?.flatMap((s) => s.tracks as Frame[]).find((t) => t.id === frame.track_id)?.muted;
      return this.setLocalState(audio, muted ? "off" : "on");
    }
    if (frame.event === "track_disabled" && frame.by) this.emit({ type: "notice", code: "muted_by_moderator", message: `${this.names.get(frame.by) ?? "A moderator"} muted your ${audio ? "microphone" : "camera"}.` });
    if (frame.event === "track_disabled" || frame.event === "track_censored") this.setLocalState(audio, state);
  }

  private setLocalState(audio: boolean, state: LocalDevice): void {
    if (audio) {
      this.micState = this.mic ? state : "missing";
      if (this.mic) this.mic.enabled = state === "on";
    } else if (state !== "on") {
      this.cameraState = state;
      void this.cameraSender?.replaceTrack(null);
      this.camera?.stop();
      this.camera = null;
      setTile(LOCAL_TILE, null);
    } else {
      this.cameraState = "off";
    }
  }

  // ---- Requests ------------------------------------------------------------------

  request(request: Frame): Promise<Frame> {
    return this.signal.request(request);
  }

  async sendChat(text: string, to: string | null): Promise<ChatMessage> {
    const sent = await this.signal.request({ type: "send_message", text, ...(to ? { to: [to] } : {}) });
    return {
      id: sent.message_id,
      from_id: this.me.id,
      from_name: this.me.name,
      text,
      private: to !== null,
      to_name: to ? (this.names.get(to) ?? null) : null,
      sent_at: Date.now(),
      mine: true,
    };
  }

  /** Stops a participant's media for everyone (every track they publish), or lets it flow again. */
  async censor(participant: string, censored: boolean): Promise<void> {
    const tracks = ((this.people.get(participant)?.streams as Frame[]) ?? []).flatMap((s) => s.tracks as Frame[]);
    for (const t of tracks) await this.signal.request({ type: censored ? "censor" : "uncensor", track_id: t.id });
  }

  async leave(): Promise<void> {
    if (this.ended) return;
    await this.signal.request({ type: "leave" }).catch(() => {});
    this.finish("left");
  }

  /** Ends the call, says why, and lets go of everything. */
  private finish(code: EndReason): void {
    if (this.ended) return;
    this.ended = true;
    this.release();
    this.emit({ type: "ended", code, message: ENDED[code] });
  }

  private closeMedia(): void {
    this.publisher?.close();
    this.subscriber?.close();
    this.publisher = this.subscriber = null;
    this.micSender = this.cameraSender = null;
    this.screen = null;
    this.sharing = false;
    for (const [id] of this.subscribed) {
      const at = id.lastIndexOf(":");
      this.dropSubscription(id.slice(0, at), id.slice(at + 1));
    }
    this.incoming.clear();
    this.negotiating = this.answering = Promise.resolve();
  }

  private release(): void {
    window.clearTimeout(this.refreshTimer);
    this.closeMedia();
    for (const t of [this.mic, this.camera]) t?.stop();
    setTile(LOCAL_TILE, null);
    for (const a of this.audio.values()) a.remove();
    this.audio.clear();
    this.signal?.close();
  }

  /** What the connections carry now, from their statistics: for people and tests
   * looking into a call (`window.confer.report()`). */
  async report(): Promise<Frame> {
    const inbound: Frame[] = [];
    const outbound: Frame[] = [];
    const byMid = new Map([...this.incoming].map(([mid, info]) => [mid, info]));
    (await this.subscriber?.getStats())?.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      const info = byMid.get(s.mid);
      inbound.push({
        participant_id: info?.participant_id,
        name: info ? this.names.get(info.participant_id) : undefined,
        key: info?.key,
        kind: s.kind,
        frames_decoded: s.framesDecoded,
        frame_width: s.frameWidth,
        frame_height: s.frameHeight,
        total_samples_received: s.totalSamplesReceived,
        audio_level: s.audioLevel,
      });
    });
    (await this.publisher?.getStats())?.forEach((s) => {
      if (s.type === "outbound-rtp") outbound.push({ kind: s.kind, mid: s.mid, rid: s.rid, frames_sent: s.framesSent, frame_width: s.frameWidth, packets_sent: s.packetsSent });
    });
    return {
      participant_id: this.me.id,
      publisher: this.publisher?.connectionState ?? null,
      subscriber: this.subscriber?.connectionState ?? null,
      published_at: this.publishedAt,
      inbound,
      outbound,
    };
  }

  // ---- The view --------------------------------------------------------------------

  private update(): void {
    if (!this.ended && this.me) this.emit({ type: "updated", view: this.view() });
  }

  view(): CallView {
    const person = (p: Frame, local: boolean): ParticipantView => {
      const streams: Frame[] = p.streams ?? [];
      const main = streams.find((s) => s.key === "main");
      const off = (kind: string) => {
        const t = (main?.tracks as Frame[] | undefined)?.find((t) => t.kind === kind);
        return !t || t.muted || t.censored;
      };
      const tiles = local
        ? this.cameraSender
          ? [{ tile: LOCAL_TILE, key: "main", screen: false }]
          : []
        : streams
            .filter((s) => (s.tracks as Frame[]).some((t) => t.kind === "video"))
            .map((s) => ({ tile: `${p.id}:${s.key}`, key: s.key, screen: (s.tracks as Frame[]).some((t) => t.source === "screen_share") }));
      return {
        id: p.id,
        identity: p.identity,
        name: p.name,
        local,
        moderator: p.role === "manager" || p.role === "co_host",
        co_host: p.role === "co_host",
        guest: p.role === "guest",
        hand_raised: this.hands.some((h) => h.participant_id === p.id),
        mic_muted: local ? this.micState !== "on" : off("audio"),
        camera_off: local ? this.cameraState !== "on" : off("video"),
        speaking: this.speaking.has(p.id),
        network_quality: this.quality.get(p.id) ?? 0,
        tiles,
      };
    };
    const b = this.breakouts;
    return {
      room: this.room.id,
      room_name: this.room.name,
      me: this.me.id,
      moderator: this.me.role === "manager" || this.me.role === "co_host",
      participants: [person(this.me, true), ...[...this.people.values()].map((p) => person(p, false))],
      active_speaker: this.activeSpeaker,
      connection: this.reconnecting ? "reconnecting" : "connected",
      microphone: this.micState,
      camera: this.cameraState,
      sharing_screen: this.sharing,
      invite_link: this.target.invite ? pageLink(this.target) : null,
      locked: this.locked,
      audio_only: this.audioOnly,
      hands: this.hands.map((h) => h.participant_id),
      knocks: this.knocks.map((k) => ({ id: k.participant_id, name: k.name, guest: k.via === "invite" })),
      breakouts: b
        ? {
            rooms: (b.rooms as Frame[]).map((r, i) => ({
              name: r.name,
              members: (b.assignments as Frame[]).filter((a) => a.room === i).map((a) => this.names.get(a.participant_id) ?? ""),
            })),
            open: b.open,
            allow_choice: b.allow_choice,
            closes_at: b.closes_at ?? null,
            current: (() => {
              const i = (b.rooms as Frame[]).findIndex((r) => r.id === this.room.id);
              return i >= 0 ? i : null;
            })(),
          }
        : null,
    };
  }
}

/** The hidden box the call's `<audio>` elements play from. */
function audioBox(): HTMLElement {
  let box = document.getElementById("call-audio");
  if (!box) {
    box = document.createElement("div");
    box.id = "call-audio";
    box.hidden = true;
    document.body.append(box);
  }
  return box;
}

/** Plays through the picked speaker, where the browser lets a page choose. */
async function setSink(element: HTMLAudioElement, speaker: string | null): Promise<void> {
  const withSink = element as HTMLAudioElement & { setSinkId?: (id: string) => Promise<void> };
  if (!withSink.setSinkId) return;
  await withSink.setSinkId(speaker ?? "").catch((e) => console.warn("speaker not available", e));
}

export type { ErrorBody };
export { asCallError };
