//! Feeds arbitrary bytes, in arbitrary chunks, to the frame decoder and the
//! payload decoders. Nothing may panic, and every decoded frame must encode
//! back to the bytes it came from.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use natter_proto::{ClientFrame, FrameDecoder, ServerFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else {
        return;
    };
    let chunk = (chunk as usize).max(1);
    let decoder = FrameDecoder::new(64 * 1024);
    let mut buf = BytesMut::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(frame)) => {
                    if let Ok(f) = ClientFrame::decode(&frame) {
                        let again = ClientFrame::decode(&natter_proto::Frame {
                            payload: f.to_bytes(frame.request_id).slice(natter_proto::HEADER_LEN..),
                            ..frame.clone()
                        });
                        assert_eq!(again.as_ref().ok(), Some(&f));
                    }
                    let _ = ServerFrame::decode(&frame);
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
