//! Opus for speech and music at 48 kHz mono in 20 ms frames, set up for calls: in-band
//! forward error correction, discontinuous transmission in silence, and loss
//! concealment on the receiving side.

/// Samples per channel in one 20 ms frame at 48 kHz.
pub const FRAME_SAMPLES: usize = 960;
pub const SAMPLE_RATE: u32 = 48_000;
/// Largest packet we produce; Opus recommends 4000 bytes as a safe upper bound.
const MAX_PACKET: usize = 4000;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpusError {
    #[error("opus: {0}")]
    Codec(String),
    #[error("a frame is {FRAME_SAMPLES} samples, not {0}")]
    FrameSize(usize),
}

impl From<opus::Error> for OpusError {
    fn from(e: opus::Error) -> Self {
        OpusError::Codec(e.to_string())
    }
}

/// Settings of an Opus encoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpusConfig {
    pub bitrate_bps: i32,
    /// Expected packet loss in percent; tunes how much FEC the encoder adds.
    pub expected_loss_pct: i32,
    /// Music mode: full-band audio coding instead of voice tuning, no DTX.
    pub music: bool,
}

impl Default for OpusConfig {
    fn default() -> Self {
        Self { bitrate_bps: 32_000, expected_loss_pct: 10, music: false }
    }
}

pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl OpusEncoder {
    pub fn new(config: OpusConfig) -> Result<Self, OpusError> {
        let app = if config.music { opus::Application::Audio } else { opus::Application::Voip };
        let mut inner = opus::Encoder::new(SAMPLE_RATE, opus::Channels::Mono, app)?;
        inner.set_bitrate(opus::Bitrate::Bits(config.bitrate_bps))?;
        inner.set_inband_fec(true)?;
        inner.set_packet_loss_perc(config.expected_loss_pct.clamp(0, 100))?;
        inner.set_dtx(!config.music)?;
        Ok(Self { inner })
    }

    pub fn set_bitrate(&mut self, bps: i32) -> Result<(), OpusError> {
        Ok(self.inner.set_bitrate(opus::Bitrate::Bits(bps))?)
    }

    /// Encodes one 20 ms frame. In DTX, silence yields packets of a byte or two.
    pub fn encode(&mut self, frame: &[i16]) -> Result<Vec<u8>, OpusError> {
        if frame.len() != FRAME_SAMPLES {
            return Err(OpusError::FrameSize(frame.len()));
        }
        Ok(self.inner.encode_vec(frame, MAX_PACKET)?)
    }
}

pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl OpusDecoder {
    pub fn new() -> Result<Self, OpusError> {
        Ok(Self { inner: opus::Decoder::new(SAMPLE_RATE, opus::Channels::Mono)? })
    }

    /// Decodes one packet into 20 ms of samples.
    pub fn decode(&mut self, packet: &[u8]) -> Result<Vec<i16>, OpusError> {
        if packet.is_empty() {
            return self.conceal();
        }
        // Room for the longest Opus packet (120 ms).
        self.run(packet, false, FRAME_SAMPLES * 6)
    }

    /// Stands in for a lost packet: recovers it from the FEC data in `next` (the packet
    /// after the lost one) when there is one, else extrapolates (packet loss concealment).
    pub fn recover(&mut self, next: Option<&[u8]>) -> Result<Vec<i16>, OpusError> {
        match next {
            Some(next) if !next.is_empty() => self.run(next, true, FRAME_SAMPLES),
            _ => self.conceal(),
        }
    }

    fn conceal(&mut self) -> Result<Vec<i16>, OpusError> {
        self.run(&[], false, FRAME_SAMPLES)
    }

    /// For FEC and concealment, `max` is exactly how much audio to make up.
    fn run(&mut self, packet: &[u8], fec: bool, max: usize) -> Result<Vec<i16>, OpusError> {
        let mut out = vec![0i16; max];
        let n = self.inner.decode(packet, &mut out, fec)?;
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tone::{dominant_frequency, level_dbfs, ToneSource};

    #[test]
    fn a_tone_survives_opus_and_loss() {
        let mut tone = ToneSource::new(550.0, SAMPLE_RATE);
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let packets: Vec<Vec<u8>> = (0..50).map(|_| enc.encode(&tone.next_block(FRAME_SAMPLES)).unwrap()).collect();
        let mut out = Vec::new();
        for (i, p) in packets.iter().enumerate() {
            // Every tenth packet is lost: FEC from the next one, or concealment.
            let block = if i % 10 == 5 {
                dec.recover(packets.get(i + 1).map(Vec::as_slice)).unwrap()
            } else {
                dec.decode(p).unwrap()
            };
            assert_eq!(block.len(), FRAME_SAMPLES);
            out.extend(block);
        }
        // Skip the codec's start-up; the rest is the tone.
        let found = dominant_frequency(&out[9600..], SAMPLE_RATE).unwrap();
        assert!((found - 550.0).abs() < 3.0, "heard {found} Hz");
        assert!(level_dbfs(&out[9600..]) > -15.0);
    }

    #[test]
    fn silence_is_cheap_with_dtx() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        let sizes: Vec<usize> = (0..30).map(|_| enc.encode(&[0; FRAME_SAMPLES]).unwrap().len()).collect();
        assert!(sizes[10..].iter().all(|&s| s <= 3), "{sizes:?}");
    }

    #[test]
    fn bad_input_is_an_error() {
        let mut enc = OpusEncoder::new(OpusConfig::default()).unwrap();
        assert_eq!(enc.encode(&[0; 100]), Err(OpusError::FrameSize(100)));
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[0xff, 0xff, 0xff, 0xff, 0xff]).is_err());
    }
}
