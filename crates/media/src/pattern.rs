//! A synthetic camera: a moving test pattern whose pixels carry its frame number and
//! capture time, so that a receiver can count frames, spot gaps and measure
//! glass-to-glass latency after the picture went through an encoder, the network, a
//! simulcast downscale and a decoder.
//!
//! The top half of the frame is a 16 x 6 grid of cells, each one bit: white (luma 235)
//! for 1, black (luma 16) for 0. The 96 bits are the frame number (32), the capture time
//! in milliseconds (its low 48 bits) and a CRC-16 over those 80 bits, most significant
//! bit first, row by row. Cells are defined relative to the frame size, so the code
//! survives any downscale that keeps cells a few pixels wide (down to 160 x 90), and a
//! reader samples only the middle of each cell, away from the blur at cell edges. The
//! bottom half holds diagonal stripes that move every frame, so that encoders have real
//! motion to code.

use crc::{Crc, CRC_16_IBM_3740};

use crate::frame::I420Frame;

const COLS: usize = 16;
const ROWS: usize = 6;
const BITS: usize = COLS * ROWS;
const WHITE: u8 = 235;
const BLACK: u8 = 16;
const CRC16: Crc<u16> = Crc::<u16>::new(&CRC_16_IBM_3740);

/// What a pattern frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    pub frame_number: u32,
    /// Capture time, milliseconds since the Unix epoch (kept modulo 2^48).
    pub capture_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("a pattern frame must be even-sized and at least 32x24, not {width}x{height}")]
    BadSize { width: usize, height: usize },
}

/// Produces pattern frames of a fixed size; the caller supplies capture times.
#[derive(Debug)]
pub struct PatternSource {
    width: usize,
    height: usize,
    next_number: u32,
}

impl PatternSource {
    /// `width` and `height` must be even (4:2:0) and at least 32 x 24.
    pub fn new(width: usize, height: usize) -> Result<Self, PatternError> {
        if width < 32 || height < 24 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return Err(PatternError::BadSize { width, height });
        }
        Ok(Self { width, height, next_number: 0 })
    }

    /// Numbers frames from `first` on (sources told apart by their numbers).
    pub fn starting_at(mut self, first: u32) -> Self {
        self.next_number = first;
        self
    }

    /// The next frame, stamped with `capture_ms`.
    pub fn next_frame(&mut self, capture_ms: u64) -> (I420Frame, Stamp) {
        let stamp = Stamp { frame_number: self.next_number, capture_ms: capture_ms & ((1 << 48) - 1) };
        self.next_number = self.next_number.wrapping_add(1);
        let mut frame = I420Frame::new(self.width, self.height);
        draw(&mut frame, stamp);
        (frame, stamp)
    }
}

fn payload_bits(stamp: Stamp) -> [bool; BITS] {
    let mut bytes = [0u8; 12];
    bytes[..4].copy_from_slice(&stamp.frame_number.to_be_bytes());
    bytes[4..10].copy_from_slice(&stamp.capture_ms.to_be_bytes()[2..]);
    let crc = CRC16.checksum(&bytes[..10]);
    bytes[10..].copy_from_slice(&crc.to_be_bytes());
    std::array::from_fn(|i| bytes[i / 8] & (0x80 >> (i % 8)) != 0)
}

/// The pixel bounds of cell `(col, row)` in a frame of this size.
fn cell(width: usize, height: usize, col: usize, row: usize) -> (usize, usize, usize, usize) {
    let band = height / 2;
    (col * width / COLS, (col + 1) * width / COLS, row * band / ROWS, (row + 1) * band / ROWS)
}

/// Draws the pattern for `stamp` into `frame`.
pub fn draw(frame: &mut I420Frame, stamp: Stamp) {
    let (w, h) = (frame.width, frame.height);
    let bits = payload_bits(stamp);
    for row in 0..ROWS {
        for col in 0..COLS {
            let (x0, x1, y0, y1) = cell(w, h, col, row);
            let value = if bits[row * COLS + col] { WHITE } else { BLACK };
            for y in y0..y1 {
                frame.y[y * w + x0..y * w + x1].fill(value);
            }
        }
    }
    // Moving stripes below the code, with colour that varies across the frame.
    let phase = (stamp.frame_number as usize * 4) % 64;
    for y in h / 2..h {
        for x in 0..w {
            frame.y[y * w + x] = 40 + (((x + y + phase) % 64) * 3) as u8;
        }
    }
    let (cw, ch) = I420Frame::chroma_size(w, h);
    for cy in ch / 2..ch {
        for cx in 0..cw {
            frame.u[cy * cw + cx] = (64 + cx * 128 / cw) as u8;
            frame.v[cy * cw + cx] = (64 + cy * 128 / ch) as u8;
        }
    }
}

/// Reads the stamp back, or `None` if the code does not check out (not a pattern frame,
/// or damaged beyond reading).
pub fn read_stamp(frame: &I420Frame) -> Option<Stamp> {
    let (w, h) = (frame.width, frame.height);
    if w < COLS * 2 || h < ROWS * 4 {
        return None;
    }
    let mut bytes = [0u8; 12];
    for row in 0..ROWS {
        for col in 0..COLS {
            let (x0, x1, y0, y1) = cell(w, h, col, row);
            // The middle half of the cell in each direction.
            let (qx, qy) = ((x1 - x0) / 4, (y1 - y0) / 4);
            let (mut sum, mut n) = (0u32, 0u32);
            for y in y0 + qy..(y1 - qy).max(y0 + qy + 1) {
                for x in x0 + qx..(x1 - qx).max(x0 + qx + 1) {
                    sum += frame.luma(x, y) as u32;
                    n += 1;
                }
            }
            if sum / n > (WHITE as u32 + BLACK as u32) / 2 {
                let i = row * COLS + col;
                bytes[i / 8] |= 0x80 >> (i % 8);
            }
        }
    }
    let crc = u16::from_be_bytes([bytes[10], bytes[11]]);
    if CRC16.checksum(&bytes[..10]) != crc {
        return None;
    }
    let frame_number = u32::from_be_bytes(bytes[..4].try_into().ok()?);
    let mut ms = [0u8; 8];
    ms[2..].copy_from_slice(&bytes[4..10]);
    Some(Stamp { frame_number, capture_ms: u64::from_be_bytes(ms) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic noise in -amp..=amp, standing in for coding artefacts.
    fn add_noise(frame: &mut I420Frame, amp: i32, seed: u32) {
        let mut state = seed.wrapping_mul(2654435761).max(1);
        for p in frame.y.iter_mut() {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = (state % (2 * amp as u32 + 1)) as i32 - amp;
            *p = (*p as i32 + noise).clamp(0, 255) as u8;
        }
    }

    #[test]
    fn stamps_round_trip() {
        let mut source = PatternSource::new(640, 360).unwrap();
        for i in 0..5u64 {
            let (frame, stamp) = source.next_frame(1_795_346_619_000 + i * 33);
            assert_eq!(stamp.frame_number, i as u32);
            assert_eq!(read_stamp(&frame), Some(stamp));
        }
    }

    #[test]
    fn stamps_survive_noise_and_simulcast_downscales() {
        let mut source = PatternSource::new(1280, 720).unwrap();
        let (frame, stamp) = source.next_frame(123_456_789);
        for factor in [1, 2, 4, 8] {
            let mut small = frame.downscale(factor);
            add_noise(&mut small, 60, factor as u32);
            assert_eq!(read_stamp(&small), Some(stamp), "downscaled by {factor}");
        }
    }

    #[test]
    fn damage_is_detected_not_misread() {
        let mut source = PatternSource::new(640, 360).unwrap();
        let (mut frame, _) = source.next_frame(42);
        // Invert one cell.
        let (x0, x1, y0, y1) = cell(640, 360, 3, 2);
        for y in y0..y1 {
            for x in x0..x1 {
                frame.y[y * 640 + x] = 255 - frame.y[y * 640 + x];
            }
        }
        assert_eq!(read_stamp(&frame), None);
        assert_eq!(read_stamp(&I420Frame::new(640, 360)), None);
    }

    #[test]
    fn odd_or_tiny_sizes_are_refused() {
        assert!(PatternSource::new(641, 360).is_err());
        assert!(PatternSource::new(16, 16).is_err());
    }

    #[test]
    fn stripes_move() {
        let mut source = PatternSource::new(64, 48).unwrap();
        let (a, _) = source.next_frame(0);
        let (b, _) = source.next_frame(33);
        assert_ne!(a.y[40 * 64..], b.y[40 * 64..]);
    }
}
