//! Bounded capture of process output.

/// Keeps the last `cap` bytes written to it and counts what it dropped, so a chatty
/// process cannot exhaust memory while the end of its output (where errors are) survives.
#[derive(Debug, Clone)]
pub struct BoundedBuf {
    cap: usize,
    buf: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl BoundedBuf {
    /// A buffer that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        BoundedBuf {
            cap,
            buf: std::collections::VecDeque::with_capacity(cap.min(64 * 1024)),
            dropped: 0,
        }
    }

    /// Appends bytes, dropping the oldest ones beyond the capacity.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.len() >= self.cap {
            self.dropped += (self.buf.len() + bytes.len() - self.cap) as u64;
            self.buf.clear();
            self.buf.extend(&bytes[bytes.len() - self.cap..]);
            return;
        }
        let overflow = (self.buf.len() + bytes.len()).saturating_sub(self.cap);
        if overflow > 0 {
            self.buf.drain(..overflow);
            self.dropped += overflow as u64;
        }
        self.buf.extend(bytes);
    }

    /// Bytes dropped from the front so far.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The kept bytes as (lossy) UTF-8, prefixed by a marker when something was dropped.
    pub fn to_string_lossy(&self) -> String {
        let (a, b) = self.buf.as_slices();
        let mut bytes = Vec::with_capacity(a.len() + b.len());
        bytes.extend_from_slice(a);
        bytes.extend_from_slice(b);
        let text = String::from_utf8_lossy(&bytes).into_owned();
        if self.dropped > 0 {
            format!("[... {} bytes dropped ...]\n{text}", self.dropped)
        } else {
            text
        }
    }
}

#[cfg(test)]
mod tests {
    use super::BoundedBuf;

    #[test]
    fn keeps_the_tail_and_counts_the_rest() {
        let mut b = BoundedBuf::new(5);
        b.push(b"abc");
        b.push(b"defg");
        assert_eq!(b.dropped(), 2);
        assert_eq!(b.to_string_lossy(), "[... 2 bytes dropped ...]\ncdefg");
        b.push(b"0123456789");
        assert_eq!(b.dropped(), 12);
        assert!(b.to_string_lossy().ends_with("56789"));
    }

    #[test]
    fn small_output_is_kept_whole() {
        let mut b = BoundedBuf::new(1024);
        b.push(b"hello\n");
        assert_eq!(b.to_string_lossy(), "hello\n");
        assert_eq!(b.dropped(), 0);
    }
}
