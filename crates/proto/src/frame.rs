//! Framing: `u32 length | u16 type | u32 request_id | payload`, big-endian.
//!
//! `length` counts every byte after itself, so it is at least 6. The decoder
//! checks that a whole frame is buffered before it touches the payload, so a
//! partial frame costs nothing and coalesced frames come out one by one.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// Bytes of the length prefix.
pub const LENGTH_LEN: usize = 4;
/// Bytes of the whole header: length, type and request id.
pub const HEADER_LEN: usize = LENGTH_LEN + 2 + 4;

/// The most the decoder reserves ahead of the bytes it has.
const RESERVE_AHEAD: usize = 16 * 1024;

/// One frame as it travels on the wire; `kind` stays raw so that unknown
/// types can be answered instead of killing the connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub kind: u16,
    pub request_id: u32,
    pub payload: Bytes,
}

/// Framing errors. After any of these the byte stream cannot be trusted and
/// the connection must be closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("frame length {len} exceeds the limit of {max} bytes")]
    TooLarge { len: usize, max: usize },
    #[error("frame length {len} is shorter than the 6-byte type and request id")]
    TooShort { len: usize },
}

/// Splits a byte stream into frames.
#[derive(Clone, Debug)]
pub struct FrameDecoder {
    max_frame_bytes: usize,
}

impl FrameDecoder {
    /// `max_frame_bytes` bounds the length field (bytes after the prefix).
    pub fn new(max_frame_bytes: usize) -> Self {
        FrameDecoder { max_frame_bytes }
    }

    /// Takes one whole frame off the front of `buf`, or returns `Ok(None)` and
    /// leaves `buf` untouched when more bytes are needed.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < LENGTH_LEN {
            return Ok(None);
        }
        let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
        if len > self.max_frame_bytes {
            return Err(FrameError::TooLarge {
                len,
                max: self.max_frame_bytes,
            });
        }
        if len < HEADER_LEN - LENGTH_LEN {
            return Err(FrameError::TooShort { len });
        }
        if buf.len() < LENGTH_LEN + len {
            // Room for what is likely to arrive soon, not for everything the
            // length field promises: memory follows bytes actually received.
            buf.reserve((LENGTH_LEN + len - buf.len()).min(RESERVE_AHEAD));
            return Ok(None);
        }
        let mut frame = buf.split_to(LENGTH_LEN + len);
        frame.advance(LENGTH_LEN);
        let kind = frame.get_u16();
        let request_id = frame.get_u32();
        Ok(Some(Frame {
            kind,
            request_id,
            payload: frame.freeze(),
        }))
    }
}

/// Appends one frame carrying `msg` to `dst`.
pub fn encode_frame(kind: u16, request_id: u32, msg: &impl prost::Message, dst: &mut BytesMut) {
    let body = msg.encoded_len();
    dst.reserve(HEADER_LEN + body);
    // The length field is u32; payloads are bounded by max_frame_bytes long
    // before they could overflow it.
    dst.put_u32((HEADER_LEN - LENGTH_LEN + body) as u32);
    dst.put_u16(kind);
    dst.put_u32(request_id);
    msg.encode_raw(dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(kind: u16, req: u32, payload: &[u8]) -> Vec<u8> {
        let mut v = ((6 + payload.len()) as u32).to_be_bytes().to_vec();
        v.extend_from_slice(&kind.to_be_bytes());
        v.extend_from_slice(&req.to_be_bytes());
        v.extend_from_slice(payload);
        v
    }

    #[test]
    fn partial_frame_needs_more_and_keeps_bytes() {
        let d = FrameDecoder::new(1024);
        let bytes = raw(7, 9, b"\x08\x01");
        for cut in 0..bytes.len() {
            let mut buf = BytesMut::from(&bytes[..cut]);
            assert_eq!(d.decode(&mut buf), Ok(None), "cut at {cut}");
            assert_eq!(buf.len(), cut);
        }
    }

    #[test]
    fn coalesced_frames_come_out_in_order() {
        let d = FrameDecoder::new(1024);
        let mut buf = BytesMut::new();
        buf.extend_from_slice(&raw(1, 1, b"a"));
        buf.extend_from_slice(&raw(2, 2, b""));
        buf.extend_from_slice(&raw(3, 3, b"ccc")[..5]);
        let a = d.decode(&mut buf).unwrap().unwrap();
        let b = d.decode(&mut buf).unwrap().unwrap();
        assert_eq!((a.kind, a.request_id, &a.payload[..]), (1, 1, &b"a"[..]));
        assert_eq!((b.kind, b.request_id, b.payload.len()), (2, 2, 0));
        assert_eq!(d.decode(&mut buf), Ok(None));
    }

    #[test]
    fn oversized_and_undersized_lengths_are_errors() {
        let d = FrameDecoder::new(16);
        let mut big = BytesMut::from(&17u32.to_be_bytes()[..]);
        assert_eq!(
            d.decode(&mut big),
            Err(FrameError::TooLarge { len: 17, max: 16 })
        );
        let mut small = BytesMut::from(&5u32.to_be_bytes()[..]);
        assert_eq!(d.decode(&mut small), Err(FrameError::TooShort { len: 5 }));
    }

    #[test]
    fn an_announced_length_reserves_little_ahead() {
        let d = FrameDecoder::new(1 << 20);
        let mut buf = BytesMut::from(&(1u32 << 20).to_be_bytes()[..]);
        assert_eq!(d.decode(&mut buf), Ok(None));
        assert!(buf.capacity() <= RESERVE_AHEAD + 64, "{}", buf.capacity());
    }

    #[test]
    fn encode_matches_layout() {
        let mut dst = BytesMut::new();
        encode_frame(
            7,
            0x01020304,
            &crate::pb::Ping { client_time_ms: 1 },
            &mut dst,
        );
        assert_eq!(&dst[..], &raw(7, 0x01020304, b"\x08\x01")[..]);
    }
}
