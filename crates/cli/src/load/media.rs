//! The media side of a load participant: one str0m peer connection on its own UDP
//! socket, sending the clip or counting what arrives, whatever the signaling.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use str0m::change::{SdpAnswer, SdpOffer, SdpPendingOffer};
use str0m::media::{Direction, Frequency, MediaKind, MediaTime, Mid, Rid, Simulcast, SimulcastLayer};
use str0m::net::{Protocol, Receive};
use str0m::{Candidate, Event as RtcEvent, Input, Output, Rtc};
use tokio::net::UdpSocket;

use super::clip::{Clip, AUDIO_PACKET};
use super::peer::Seen;

/// At most this many delay samples per participant (the first ones after a warm-up).
const DELAY_SAMPLES: usize = 4000;
/// Frames in the first second after joining are not sampled for delay (queues settle).
const WARM_UP: Duration = Duration::from_secs(1);

/// Every video frame sent ends with when it was sent: a marker and the microseconds
/// since the shared epoch. Servers forward frames as they are (neither Confer nor Janus
/// decodes), so the delay is read the same way whichever is under load, however it
/// rewrites RTP times; nobody decodes these frames, and VP8 decoders skip bytes after
/// the partitions anyway.
const STAMP: &[u8; 4] = b"CFLS";
const STAMP_LEN: usize = 12;

fn stamp(frame: &mut Vec<u8>, since_epoch: Duration) {
    frame.extend_from_slice(STAMP);
    frame.extend_from_slice(&(since_epoch.as_micros() as u64).to_be_bytes());
}

fn read_stamp(frame: &[u8]) -> Option<Duration> {
    let tail = frame.len().checked_sub(STAMP_LEN).map(|at| &frame[at..])?;
    if &tail[..4] != STAMP {
        return None;
    }
    let micros = u64::from_be_bytes(tail[4..].try_into().ok()?);
    Some(Duration::from_micros(micros))
}

struct Track {
    mid: Mid,
    /// The end of the last sequence range received, to see gaps.
    last_seq: Option<u64>,
}

/// An offer to publish the clip, waiting for its answer.
pub struct PublishOffer {
    pub sdp: String,
    pub video: Mid,
    pub audio: Option<Mid>,
    pub simulcast: bool,
    pending: SdpPendingOffer,
}

pub struct Media {
    rtc: Rtc,
    socket: UdpSocket,
    local: SocketAddr,
    /// The shared clock send times are taken from.
    epoch: Instant,
    window: (Instant, Instant),
    pub joined_at: Instant,
    /// Publisher: its video section (and whether simulcast), its audio section, where
    /// each layer is in the clip.
    video: Option<(Mid, bool)>,
    audio: Option<Mid>,
    positions: Vec<usize>,
    audio_position: usize,
    /// Subscriber: the tracks received.
    received: Vec<Track>,
}

impl Media {
    /// `window`: packets received within it are counted apart, for steady-state rates.
    pub async fn new(
        ip: std::net::IpAddr,
        epoch: Instant,
        window: (Instant, Instant),
        layers: usize,
    ) -> anyhow::Result<Media> {
        let socket = UdpSocket::bind(SocketAddr::new(ip, 0)).await?;
        let local = socket.local_addr()?;
        let mut rtc = Rtc::builder().clear_codecs().enable_vp8(true).enable_opus(true, false).build(Instant::now());
        rtc.add_local_candidate(Candidate::host(local, "udp")?);
        Ok(Media {
            rtc,
            socket,
            local,
            epoch,
            window,
            joined_at: Instant::now(),
            video: None,
            audio: None,
            positions: vec![0; layers],
            audio_position: 0,
            received: Vec::new(),
        })
    }

    /// An offer with the clip's video (simulcast if it has layers) and, if asked, audio.
    pub fn publish_offer(&mut self, clip: &Clip, audio: bool) -> anyhow::Result<PublishOffer> {
        let simulcast = clip.layers.len() > 1;
        let mut change = self.rtc.sdp_api();
        let layers = simulcast.then(|| {
            let mut s = Simulcast::new();
            for l in &clip.layers {
                s.add_send_layer(SimulcastLayer::new(l.rid.unwrap_or("f")));
            }
            s
        });
        let video = change.add_media(MediaKind::Video, Direction::SendOnly, None, None, layers);
        let audio = audio.then(|| change.add_media(MediaKind::Audio, Direction::SendOnly, None, None, None));
        let (offer, pending) = change.apply().ok_or_else(|| anyhow::anyhow!("no offer"))?;
        Ok(PublishOffer { sdp: offer.to_sdp_string(), video, audio, simulcast, pending })
    }

    /// The answer to [`Media::publish_offer`]: the clip goes out once connected.
    pub fn published(&mut self, offer: PublishOffer, answer: &str) -> anyhow::Result<()> {
        self.rtc.sdp_api().accept_answer(offer.pending, SdpAnswer::from_sdp_string(answer)?)?;
        self.video = Some((offer.video, offer.simulcast));
        self.audio = offer.audio;
        Ok(())
    }

    /// Answers an offer of media to receive.
    pub fn answer(&mut self, offer: &str) -> anyhow::Result<String> {
        let answer = self.rtc.sdp_api().accept_offer(SdpOffer::from_sdp_string(offer)?)?;
        Ok(answer.to_sdp_string())
    }

    fn media_time(&self, now: Instant, frequency: Frequency) -> MediaTime {
        let elapsed = now.saturating_duration_since(self.epoch);
        MediaTime::from(elapsed).rebase(frequency)
    }

    fn send_video(&mut self, clip: &Clip, now: Instant) -> anyhow::Result<()> {
        let Some((mid, simulcast)) = self.video else { return Ok(()) };
        let time = self.media_time(now, Frequency::NINETY_KHZ);
        for (i, layer) in clip.layers.iter().enumerate() {
            let mut data = Vec::with_capacity(layer.frames[self.positions[i]].len() + STAMP_LEN);
            data.extend_from_slice(&layer.frames[self.positions[i]]);
            stamp(&mut data, now.saturating_duration_since(self.epoch));
            self.positions[i] = (self.positions[i] + 1) % layer.frames.len();
            let Some(writer) = self.rtc.writer(mid) else { return Ok(()) };
            let Some(pt) =
                writer.payload_params().find(|p| p.spec().codec == str0m::format::Codec::Vp8).map(|p| p.pt())
            else {
                anyhow::bail!("the server did not accept VP8");
            };
            let writer = match (simulcast, layer.rid) {
                (true, Some(rid)) => writer.rid(Rid::from(rid)),
                _ => writer,
            };
            writer.write(pt, now, time, data)?;
        }
        Ok(())
    }

    fn send_audio(&mut self, clip: &Clip, now: Instant) -> anyhow::Result<()> {
        let Some(mid) = self.audio else { return Ok(()) };
        let time = self.media_time(now, Frequency::FORTY_EIGHT_KHZ);
        let data = clip.audio[self.audio_position].clone();
        self.audio_position = (self.audio_position + 1) % clip.audio.len();
        let Some(writer) = self.rtc.writer(mid) else { return Ok(()) };
        let Some(pt) = writer.payload_params().next().map(|p| p.pt()) else { return Ok(()) };
        writer.write(pt, now, time, data)?;
        Ok(())
    }

    /// Sends what the peer connection has to send; returns when it wants time next.
    async fn flush(&mut self, seen: &mut Seen) -> anyhow::Result<Instant> {
        loop {
            match self.rtc.poll_output()? {
                Output::Timeout(t) => return Ok(t),
                Output::Transmit(t) => {
                    // A full send buffer drops the datagram, as the network would.
                    let _ = self.socket.try_send_to(&t.contents, t.destination);
                }
                Output::Event(e) => self.on_media(e, seen),
            }
        }
    }

    fn on_media(&mut self, event: RtcEvent, seen: &mut Seen) {
        match event {
            RtcEvent::KeyframeRequest(req) => {
                // The clip's first frame is its keyframe.
                if let Some(i) = self.layer_index(req.rid) {
                    self.positions[i] = 0;
                }
            }
            RtcEvent::MediaData(data) => {
                let now = Instant::now();
                seen.first_frame_in.get_or_insert(now - self.joined_at);
                let range = data.seq_range;
                let (start, end) = (**range.start(), **range.end());
                let track = match self.received.iter_mut().find(|t| t.mid == data.mid) {
                    Some(t) => t,
                    None => {
                        self.received.push(Track { mid: data.mid, last_seq: None });
                        seen.tracks += 1;
                        self.received.last_mut().expect("just pushed")
                    }
                };
                if let Some(last) = track.last_seq {
                    if start > last + 1 {
                        seen.lost += start - last - 1;
                    }
                }
                if track.last_seq.is_none_or(|l| end > l) {
                    track.last_seq = Some(end);
                }
                let packets = end.saturating_sub(start) + 1;
                seen.packets += packets;
                if now >= self.window.0 && now < self.window.1 {
                    seen.window_packets += packets;
                }
                seen.bytes += data.data.len() as u64;
                let sent = read_stamp(&data.data).map(|since_epoch| self.epoch + since_epoch);
                if let Some(sent) =
                    sent.filter(|_| now - self.joined_at > WARM_UP && seen.delays_us.len() < DELAY_SAMPLES)
                {
                    seen.delays_us.push(now.saturating_duration_since(sent).as_micros().min(u32::MAX as u128) as u32);
                }
            }
            _ => {}
        }
    }

    fn layer_index(&self, rid: Option<Rid>) -> Option<usize> {
        let (_, simulcast) = self.video?;
        if !simulcast {
            return Some(0);
        }
        let rid = rid?;
        ["q", "h", "f"].iter().position(|r| Rid::from(*r) == rid)
    }
}

/// A participant's signaling, as the media loop sees it.
pub(crate) trait Signaling {
    /// The next text frame from the server; an error when it closed.
    async fn next_text(&mut self) -> anyhow::Result<String>;
    /// Acts on a frame (answering offers through `media`).
    async fn on_text(&mut self, text: &str, media: &mut Media) -> anyhow::Result<()>;
    /// Called about once a second (keepalives).
    async fn tick(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// The call: media, signaling and timers until `until`.
pub(crate) async fn drive(
    signal: &mut impl Signaling,
    media: &mut Media,
    clip: &Clip,
    until: Instant,
    seen: &mut Seen,
) -> anyhow::Result<()> {
    let mut buf = vec![0u8; 2048];
    let frame_every = clip.frame_interval();
    let mut next_frame = Instant::now();
    let mut next_audio = Instant::now();
    let mut next_tick = Instant::now() + Duration::from_secs(1);
    loop {
        let timeout = media.flush(seen).await?;
        let now = Instant::now();
        if now >= until {
            return Ok(());
        }
        let sending = media.video.is_some() && media.rtc.is_connected();
        let mut wake = timeout.min(until).min(next_tick);
        if sending {
            wake = wake.min(next_frame);
            if media.audio.is_some() {
                wake = wake.min(next_audio);
            }
        }
        tokio::select! {
            r = media.socket.recv_from(&mut buf) => {
                let (n, source) = r?;
                let now = Instant::now();
                if let Ok(receive) = Receive::new(Protocol::Udp, source, media.local, &buf[..n]) {
                    media.rtc.handle_input(Input::Receive(now, receive))?;
                }
            }
            text = signal.next_text() => {
                signal.on_text(&text?, media).await?;
            }
            _ = tokio::time::sleep_until(wake.into()) => {
                let now = Instant::now();
                media.rtc.handle_input(Input::Timeout(now))?;
                if now >= next_tick {
                    next_tick = now + Duration::from_secs(1);
                    signal.tick().await?;
                }
                if sending && now >= next_frame {
                    media.send_video(clip, now)?;
                    next_frame = (next_frame + frame_every).max(now);
                }
                if sending && media.audio.is_some() && now >= next_audio {
                    media.send_audio(clip, now)?;
                    next_audio = (next_audio + AUDIO_PACKET).max(now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stamped_frame_says_when_it_was_sent() {
        let mut frame = vec![0x10, 0x02, 0x00];
        stamp(&mut frame, Duration::from_micros(1_234_567));
        assert_eq!(read_stamp(&frame), Some(Duration::from_micros(1_234_567)));
        assert_eq!(read_stamp(&[1, 2, 3]), None);
        assert_eq!(read_stamp(&[0; 20]), None);
    }
}
