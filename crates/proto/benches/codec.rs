//! Codec micro-benchmarks: encoding a message push and decoding a Send, the
//! two frames on every message's path.
#![allow(clippy::unwrap_used)] // a benchmark, test or example: a failure should stop it

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use natter_proto::{pb, ClientFrame, FrameDecoder, ServerFrame};
use std::hint::black_box;

fn text(n: usize) -> Option<pb::Body> {
    Some(pb::Body {
        kind: pb::BodyKind::Text as i32,
        content: "x".repeat(n),
    })
}

fn codec(c: &mut Criterion) {
    let push = ServerFrame::MessagePush(pb::MessagePush {
        message: Some(pb::Message {
            conversation_id: 12345,
            seq: 678,
            msg_id: 9_876_543,
            sender_id: 42,
            client_msg_id: "0190f3a2-7c1e-7d2b-9a4e-1f2e3d4c5b6a".into(),
            server_ts_ms: 1_700_000_000_000,
            body: text(64),
            ..Default::default()
        }),
    });
    let mut g = c.benchmark_group("codec");
    g.throughput(Throughput::Elements(1));
    g.bench_function("encode MessagePush (64 B text)", |b| {
        let mut buf = BytesMut::with_capacity(4096);
        b.iter(|| {
            buf.clear();
            black_box(&push).encode(0, &mut buf);
            black_box(buf.len())
        })
    });
    let send = ClientFrame::Send(pb::Send {
        client_msg_id: "0190f3a2-7c1e-7d2b-9a4e-1f2e3d4c5b6a".into(),
        target: Some(pb::send::Target::PeerUserId(7)),
        body: text(64),
        ..Default::default()
    })
    .to_bytes(17);
    let decoder = FrameDecoder::new(1 << 20);
    g.bench_function("decode frame + Send (64 B text)", |b| {
        b.iter(|| {
            let mut buf = BytesMut::from(&send[..]);
            let frame = decoder.decode(&mut buf).unwrap().unwrap();
            black_box(ClientFrame::decode(&frame).unwrap())
        })
    });
    // 100 frames arriving coalesced in one read.
    let mut many = BytesMut::new();
    for _ in 0..100 {
        many.extend_from_slice(&send);
    }
    g.throughput(Throughput::Elements(100));
    g.bench_function("split 100 coalesced frames", |b| {
        b.iter(|| {
            let mut buf = many.clone();
            let mut n = 0;
            while let Some(f) = decoder.decode(&mut buf).unwrap() {
                n += f.payload.len();
            }
            black_box(n)
        })
    });
    g.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
