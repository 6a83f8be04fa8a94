//! Property tests: arbitrary bytes never panic the decoder, and every frame
//! survives an encode/decode round trip however the stream is chopped up.
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use bytes::BytesMut;
use natter_proto::{pb, ClientFrame, Frame, FrameDecoder, ServerFrame};
use proptest::prelude::*;

fn drain(decoder: &FrameDecoder, buf: &mut BytesMut) -> Result<Vec<Frame>, ()> {
    let mut out = Vec::new();
    loop {
        match decoder.decode(buf) {
            Ok(Some(f)) => out.push(f),
            Ok(None) => return Ok(out),
            Err(_) => return Err(()),
        }
    }
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any::<u32>(), any::<u32>(), ".{0,20}").prop_map(|(a, b, c)| ClientFrame::Hello(
            pb::Hello {
                min_version: a,
                max_version: b,
                client_name: c
            }
        )),
        (".{0,20}", ".{0,20}", ".{0,10}").prop_map(|(u, p, d)| ClientFrame::Login(pb::Login {
            username: u,
            password: p,
            device_id: d
        })),
        (".{0,40}", any::<u64>(), ".{0,200}").prop_map(|(id, peer, text)| ClientFrame::Send(
            pb::Send {
                client_msg_id: id,
                target: Some(pb::send::Target::PeerUserId(peer)),
                body: Some(pb::Body {
                    kind: pb::BodyKind::Text as i32,
                    content: text
                }),
                ..Default::default()
            }
        )),
        any::<u64>().prop_map(|t| ClientFrame::Ping(pb::Ping { client_time_ms: t })),
        Just(ClientFrame::Logout(pb::Logout::default())),
    ]
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        let decoder = FrameDecoder::new(256);
        let mut buf = BytesMut::from(&bytes[..]);
        if let Ok(frames) = drain(&decoder, &mut buf) {
            for f in frames {
                let _ = ClientFrame::decode(&f);
                let _ = ServerFrame::decode(&f);
            }
        }
    }

    #[test]
    fn frames_round_trip_through_any_chunking(
        frames in proptest::collection::vec((client_frame(), any::<u32>()), 1..8),
        chunk in 1usize..64,
    ) {
        let mut wire = BytesMut::new();
        for (f, id) in &frames {
            f.encode(*id, &mut wire);
        }
        let decoder = FrameDecoder::new(64 * 1024);
        let mut buf = BytesMut::new();
        let mut got = Vec::new();
        for piece in wire.chunks(chunk) {
            buf.extend_from_slice(piece);
            got.extend(drain(&decoder, &mut buf).expect("valid stream"));
        }
        prop_assert!(buf.is_empty());
        prop_assert_eq!(got.len(), frames.len());
        for (raw, (f, id)) in got.iter().zip(&frames) {
            prop_assert_eq!(raw.request_id, *id);
            prop_assert_eq!(&ClientFrame::decode(raw).expect("decodes"), f);
        }
    }
}
