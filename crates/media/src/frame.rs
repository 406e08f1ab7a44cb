//! Raw video frames.

/// An 8-bit planar YUV 4:2:0 frame with tightly packed planes (stride = width, and
/// `(width + 1) / 2` for chroma), the format encoders take and decoders give.
#[derive(Clone, PartialEq, Eq)]
pub struct I420Frame {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

impl std::fmt::Debug for I420Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "I420Frame({}x{})", self.width, self.height)
    }
}

impl I420Frame {
    /// A black frame.
    pub fn new(width: usize, height: usize) -> Self {
        let (cw, ch) = Self::chroma_size(width, height);
        Self { width, height, y: vec![16; width * height], u: vec![128; cw * ch], v: vec![128; cw * ch] }
    }

    pub fn chroma_size(width: usize, height: usize) -> (usize, usize) {
        (width.div_ceil(2), height.div_ceil(2))
    }

    pub fn luma(&self, x: usize, y: usize) -> u8 {
        self.y[y * self.width + x]
    }

    /// A box-filtered downscale by an integer factor (what a simulcast layer sees).
    pub fn downscale(&self, factor: usize) -> I420Frame {
        let (w, h) = (self.width / factor, self.height / factor);
        let mut out = I420Frame::new(w, h);
        let plane = |src: &[u8], sw: usize, dst: &mut [u8], dw: usize, dh: usize| {
            for dy in 0..dh {
                for dx in 0..dw {
                    let mut sum = 0u32;
                    for yy in 0..factor {
                        for xx in 0..factor {
                            sum += src[(dy * factor + yy) * sw + dx * factor + xx] as u32;
                        }
                    }
                    dst[dy * dw + dx] = (sum / (factor * factor) as u32) as u8;
                }
            }
        };
        plane(&self.y, self.width, &mut out.y, w, h);
        let (scw, _) = Self::chroma_size(self.width, self.height);
        let (dcw, dch) = Self::chroma_size(w, h);
        plane(&self.u, scw, &mut out.u, dcw, dch.min(self.height / 2 / factor));
        plane(&self.v, scw, &mut out.v, dcw, dch.min(self.height / 2 / factor));
        out
    }
}
