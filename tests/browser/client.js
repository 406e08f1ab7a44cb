// A Confer client in plain browser JavaScript: join a room over signaling, publish the
// camera and microphone on the publisher connection, subscribe to everyone's streams on
// the subscriber connection the server offers, and show what arrives. It is written
// from docs/protocol.md alone, as a third party would, and the interop test runs it in
// headless Chromium against the real server.

/** One signaling connection: requests with ids, their responses, and events. */
class Signal {
  constructor(url) {
    this.ws = new WebSocket(url);
    this.nextId = 1;
    this.pending = new Map();
    this.onEvent = () => {};
    this.opened = new Promise((resolve, reject) => {
      this.ws.onopen = resolve;
      this.ws.onerror = () => reject(new Error(`cannot reach ${url}`));
    });
    this.ws.onmessage = (m) => {
      const frame = JSON.parse(m.data);
      if (frame.type === "response") {
        const waiter = this.pending.get(frame.id);
        this.pending.delete(frame.id);
        if (!waiter) return;
        if (frame.error) waiter.reject(Object.assign(new Error(frame.error.message), frame.error));
        else waiter.resolve(frame.result);
      } else if (frame.type === "event") {
        this.onEvent(frame);
      }
    };
  }

  request(request) {
    const id = this.nextId++;
    this.ws.send(JSON.stringify({ id, request }));
    return new Promise((resolve, reject) => this.pending.set(id, { resolve, reject }));
  }
}

/** Resolves once the connection has gathered all its candidates (capped at
 * `limitMs`). Not needed with Confer: the server is ICE-lite and learns the client's
 * addresses from its connectivity checks, so descriptions go out at once; kept to
 * measure the old advice (`?gather=1`). */
function gathered(pc, limitMs = 5000) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  const limit = new Promise((resolve) => setTimeout(resolve, limitMs));
  return Promise.race([limit, new Promise((resolve) => {
    const check = () => {
      if (pc.iceGatheringState === "complete") {
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      }
    };
    pc.addEventListener("icegatheringstatechange", check);
  })]);
}

export class ConferClient {
  /** `relayOnly`: media through the TURN relays of the join response only.
   * `waitForGathering`: send descriptions only once ICE gathering completed. */
  constructor(serverUrl, token, log = () => {}, { relayOnly = false, waitForGathering = false } = {}) {
    this.relayOnly = relayOnly;
    this.waitForGathering = waitForGathering;
    const ws = serverUrl.replace(/^http/, "ws").replace(/\/$/, "");
    this.signal = new Signal(`${ws}/v1/signal`);
    this.token = token;
    this.log = log;
    this.participants = new Map();
    this.expected = new Map(); // subscriber mid -> {participant_id, key, track_id, kind}
    this.remote = []; // {info, track, element}
    this.events = [];
    this.subscriber = null;
    this.answering = Promise.resolve();
  }

  async join() {
    await this.signal.opened;
    this.signal.onEvent = (e) => this.onEvent(e);
    const joined = await this.signal.request({ type: "join", token: this.token });
    this.joinedAt = performance.now();
    this.me = joined.participant;
    // The relays the server names, with credentials that expire with the join token.
    this.iceServers = joined.ice_servers;
    for (const p of joined.participants) this.participants.set(p.id, p);
    this.log(`joined as ${this.me.id} with ${joined.participants.length} others`);
    return joined;
  }

  /** Publishes the camera and microphone as stream `main`. */
  async publish(constraints = { audio: true, video: { width: 640, height: 480 } }) {
    this.local = await navigator.mediaDevices.getUserMedia(constraints);
    const pc = new RTCPeerConnection(this.rtcConfig());
    this.publisher = pc;
    // An application section from the start: later data tracks need no renegotiation.
    pc.createDataChannel("confer");
    const sent = [];
    for (const track of this.local.getTracks()) {
      const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [this.local] });
      sent.push({ transceiver, track });
    }
    await pc.setLocalDescription(await pc.createOffer());
    if (this.waitForGathering) await gathered(pc);
    const tracks = sent.map(({ transceiver, track }) => ({
      mid: transceiver.mid,
      kind: track.kind,
      source: track.kind === "audio" ? "microphone" : "camera",
    }));
    const published = await this.signal.request({ type: "publish", key: "main", tracks, sdp: pc.localDescription.sdp });
    await pc.setRemoteDescription({ type: "answer", sdp: published.sdp });
    this.log(`published ${published.stream.tracks.map((t) => `${t.kind}:${t.codec}`).join(", ")}`);
    return published.stream;
  }

  /** The peer connections' configuration: the server's relays, relay-only if asked. */
  rtcConfig() {
    const iceServers = (this.iceServers || []).map((s) => ({ urls: s.urls, username: s.username, credential: s.credential }));
    return { iceServers, iceTransportPolicy: this.relayOnly ? "relay" : "all" };
  }

  /** Subscribes to every stream published now and later. */
  async subscribeToAll() {
    this.autoSubscribe = true;
    for (const p of this.participants.values()) {
      for (const s of p.streams || []) await this.subscribe(p.id, s.key);
    }
  }

  subscribe(participantId, key) {
    return this.signal.request({ type: "subscribe", participant_id: participantId, key, audio: true, video: true, quality: "high" });
  }

  onEvent(e) {
    this.events.push(e.event);
    switch (e.event) {
      case "participant_joined":
        this.participants.set(e.participant.id, e.participant);
        break;
      case "participant_left":
        this.participants.delete(e.participant_id);
        break;
      case "stream_published": {
        const p = this.participants.get(e.participant_id);
        if (p) p.streams = [...(p.streams || []).filter((s) => s.key !== e.stream.key), e.stream];
        if (this.autoSubscribe) this.subscribe(e.participant_id, e.stream.key).catch((err) => this.log(`subscribe: ${err.message}`));
        break;
      }
      case "subscription_started":
        for (const t of e.tracks) this.expected.set(t.mid, { participant_id: e.participant_id, key: e.key, ...t });
        break;
      case "subscriber_offer":
        // One offer at a time, answered in order.
        this.answering = this.answering.then(() => this.answer(e.sdp)).catch((err) => this.log(`answer: ${err.message}`));
        break;
    }
  }

  async answer(sdp) {
    if (!this.subscriber) {
      this.subscriber = new RTCPeerConnection(this.rtcConfig());
      this.subscriber.ontrack = (t) => this.onTrack(t);
    }
    const pc = this.subscriber;
    await pc.setRemoteDescription({ type: "offer", sdp });
    await pc.setLocalDescription(await pc.createAnswer());
    if (this.waitForGathering) await gathered(pc);
    await this.signal.request({ type: "subscriber_answer", sdp: pc.localDescription.sdp });
  }

  onTrack(event) {
    const info = this.expected.get(event.transceiver.mid) || { mid: event.transceiver.mid };
    const element = document.createElement(event.track.kind === "video" ? "video" : "audio");
    element.autoplay = true;
    element.muted = event.track.kind === "video";
    element.playsInline = true;
    element.srcObject = new MediaStream([event.track]);
    element.dataset.trackId = info.track_id || "";
    if (event.track.kind === "video" && element.requestVideoFrameCallback) {
      // Join to the first picture decoded and presented: what a person waits for.
      element.requestVideoFrameCallback(() => {
        this.firstFrameMs ??= Math.round(performance.now() - this.joinedAt);
      });
    }
    document.body.appendChild(element);
    this.remote.push({ info, track: event.track, element });
    this.log(`receiving ${event.track.kind} ${info.track_id} from ${info.participant_id}`);
  }

  /** What arrived and what went out, from the connections' statistics and the media
   * elements: what the interop test judges. */
  async report() {
    const inbound = [];
    if (this.subscriber) {
      const stats = await this.subscriber.getStats();
      const codecs = new Map();
      stats.forEach((s) => s.type === "codec" && codecs.set(s.id, s.mimeType));
      stats.forEach((s) => {
        if (s.type !== "inbound-rtp") return;
        const remote = this.remote.find((r) => r.track.id === s.trackIdentifier || r.info.mid === s.mid);
        inbound.push({
          kind: s.kind,
          mid: s.mid,
          track_id: remote?.info.track_id,
          participant_id: remote?.info.participant_id,
          codec: codecs.get(s.codecId),
          packets_received: s.packetsReceived,
          packets_lost: s.packetsLost,
          frames_decoded: s.framesDecoded,
          frame_width: s.frameWidth,
          frame_height: s.frameHeight,
          total_samples_received: s.totalSamplesReceived,
          concealed_samples: s.concealedSamples,
          audio_level: s.audioLevel,
        });
      });
    }
    const outbound = [];
    if (this.publisher) {
      const stats = await this.publisher.getStats();
      stats.forEach((s) => {
        if (s.type === "outbound-rtp") outbound.push({ kind: s.kind, packets_sent: s.packetsSent, frames_encoded: s.framesEncoded });
      });
    }
    const path = async (pc) => {
      if (!pc) return null;
      const stats = await pc.getStats();
      let pair = null;
      stats.forEach((s) => {
        if (s.type === "transport" && s.selectedCandidatePairId) pair = stats.get(s.selectedCandidatePairId);
      });
      if (!pair) stats.forEach((s) => { if (s.type === "candidate-pair" && s.nominated && s.state === "succeeded") pair = s; });
      const local = pair && stats.get(pair.localCandidateId);
      return local ? { local_type: local.candidateType, protocol: local.protocol, relay_protocol: local.relayProtocol } : null;
    };
    const media_path = { publisher: await path(this.publisher), subscriber: await path(this.subscriber) };
    const elements = this.remote.map((r) => ({
      kind: r.track.kind,
      track_id: r.info.track_id,
      ready_state: r.track.readyState,
      video_width: r.element.videoWidth,
      video_height: r.element.videoHeight,
      current_time: r.element.currentTime,
      paused: r.element.paused,
    }));
    return {
      participant_id: this.me?.id,
      publisher_state: this.publisher?.connectionState,
      subscriber_state: this.subscriber?.connectionState,
      inbound,
      outbound,
      media_path,
      elements,
      first_frame_ms: this.firstFrameMs ?? null,
      events: this.events,
    };
  }
}
