//! The log's format and its recovery rules: what is replayed and what is
//! not after a torn write, a damaged record, or a round cut off.

use super::*;
use std::io::Seek;

fn message(conversation: u64, seq: u64, text: &str) -> Record {
    Record::Message(StoredMessage {
        conversation_id: conversation,
        seq,
        msg_id: 100 + seq,
        sender_id: 7,
        client_msg_id: format!("c-{seq}"),
        server_ts_ms: 1_700_000_000_000 + seq as i64,
        body: Body {
            kind: BodyKind::Text,
            content: text.to_owned(),
        },
        mentions: vec![3, 4],
        mention_all: seq.is_multiple_of(2),
    })
}

fn cursor(seq: u64) -> Record {
    Record::Cursor {
        user: 9,
        conversation: 2,
        kind: CursorKind::Read,
        seq,
    }
}

fn bytes(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        r.encode(&mut out);
    }
    out
}

fn append_raw(dir: &Path, segment: u64, raw: &[u8]) {
    let mut f = OpenOptions::new()
        .append(true)
        .open(segment_path(dir, segment))
        .unwrap();
    f.write_all(raw).unwrap();
}

#[test]
fn records_come_back_as_written_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    let first = vec![message(1, 1, "hello"), cursor(1), message(1, 2, "é ✓ 😀")];
    log.append(&bytes(&first)).unwrap();
    log.rotate(WHOLE).unwrap();
    let direct = Record::Direct(NewDirect {
        id: 2,
        lo: 7,
        hi: 9,
        at_ms: 1_700_000_000_000,
    });
    let second = vec![direct, message(2, 1, ""), cursor(5)];
    log.append(&bytes(&second)).unwrap();
    let r = replay(&d).unwrap();
    assert_eq!(r.records, [first, second].concat());
    assert_eq!(r.segments, vec![1, 2]);
}

#[test]
fn a_torn_or_damaged_tail_ends_the_log_there() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    log.append(&bytes(&[message(1, 1, "a"), message(1, 2, "b")]))
        .unwrap();
    // Half a record, as a crash mid-write leaves it.
    let whole = bytes(&[message(1, 3, "c")]);
    append_raw(&d, 1, &whole[..whole.len() / 2]);
    let r = replay(&d).unwrap();
    assert_eq!(r.records, vec![message(1, 1, "a"), message(1, 2, "b")]);

    // A record whose bytes do not match its checksum ends it too.
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    let mut raw = bytes(&[message(1, 1, "a"), message(1, 2, "b")]);
    let last = raw.len() - 3;
    raw[last] ^= 0xff;
    log.append(&raw).unwrap();
    assert_eq!(replay(&d).unwrap().records, vec![message(1, 1, "a")]);
}

#[test]
fn a_failed_round_is_never_replayed() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    log.append(&bytes(&[message(1, 1, "kept")])).unwrap();
    // A round whose bytes reached the file although its write (or sync)
    // failed: well-formed records the writer did not acknowledge.
    let end = log.end;
    append_raw(&d, 1, &bytes(&[message(1, 2, "failed round")]));
    log.file.seek(io::SeekFrom::End(0)).unwrap();
    log.cut_at = Some(end);
    // The next round starts a segment that cuts the old one off.
    log.append(&bytes(&[message(1, 2, "the real seq 2")]))
        .unwrap();
    assert_eq!(log.segment(), 2);
    assert_eq!(
        replay(&d).unwrap().records,
        vec![message(1, 1, "kept"), message(1, 2, "the real seq 2")]
    );
}

#[test]
fn a_segment_whose_header_never_became_whole_is_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    log.append(&bytes(&[message(1, 1, "a")])).unwrap();
    std::fs::write(segment_path(&d, 2), &header(2, 0)[..10]).unwrap();
    assert_eq!(replay(&d).unwrap().records, vec![message(1, 1, "a")]);
    // A damaged header with segments after it is damage, not a crash.
    std::fs::write(segment_path(&d, 3), header(3, WHOLE)).unwrap();
    assert!(replay(&d).is_err());
}

#[test]
fn segments_are_deleted_and_numbering_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    log.append(&bytes(&[message(1, 1, "a")])).unwrap();
    log.rotate(WHOLE).unwrap();
    assert_eq!(log.older_than(2).unwrap(), vec![1]);
    delete(&d, &[1]).unwrap();
    let r = replay(&d).unwrap();
    assert!(r.records.is_empty());
    assert_eq!(r.segments, vec![2]);
    let next = Log::start(&d, r.segments.last().copied(), true).unwrap();
    assert_eq!(next.segment(), 3);
}

/// Waits for the spare segment to be whole (65 steps of a mebibyte).
fn spare_ready(log: &Log) {
    for _ in 0..6000 {
        if log.spares.as_ref().is_some_and(|s| s.ready()) {
            return;
        }
        #[allow(clippy::disallowed_methods)] // a test polling a thread of its own
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no spare segment after 60 s");
}

fn file_len(dir: &Path, segment: u64) -> u64 {
    std::fs::metadata(segment_path(dir, segment)).unwrap().len()
}

#[test]
fn segments_written_ahead_are_overwritten_in_place_and_replay_as_appended() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap().with_spares().unwrap();
    // A quiet log asks for none.
    let small = bytes(&[message(1, 1, "a")]);
    log.append(&small).unwrap();
    #[allow(clippy::disallowed_methods)] // a test giving a thread time to act
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(!d.join(spare::SPARE).exists());
    // Past a mebibyte it does, and the next append moves onto the spare.
    let big = bytes(&[message(1, 2, &"b".repeat(SPARE_AFTER as usize))]);
    log.append(&big).unwrap();
    spare_ready(&log);
    log.append(&bytes(&[message(1, 3, "c")])).unwrap();
    assert_eq!(log.segment(), 2);
    assert!(log.zeroed);
    assert_eq!(
        file_len(&d, 1),
        HEADER_LEN + (small.len() + big.len()) as u64
    );
    assert_eq!(file_len(&d, 2), spare::SPARE_BYTES);
    // Rounds overwrite its zeros: the file never grows.
    log.append(&bytes(&[message(1, 4, "d"), cursor(4)]))
        .unwrap();
    assert_eq!(file_len(&d, 2), spare::SPARE_BYTES);
    let so_far = vec![
        message(1, 1, "a"),
        message(1, 2, &"b".repeat(SPARE_AFTER as usize)),
        message(1, 3, "c"),
        message(1, 4, "d"),
        cursor(4),
    ];
    assert_eq!(replay(&d).unwrap().records, so_far);

    // Half a record at the records' end, as a crash mid-write leaves it in
    // a written segment, ends the log there.
    let whole = bytes(&[message(1, 5, "torn")]);
    log.file
        .write_all_at(&whole[..whole.len() / 2], log.end)
        .unwrap();
    assert_eq!(replay(&d).unwrap().records, so_far);

    // A failed round's whole records in a written segment are cut off by
    // the next segment, itself a spare once one is ready.
    log.file
        .write_all_at(&bytes(&[message(1, 5, "failed round")]), log.end)
        .unwrap();
    log.cut_at = Some(log.end);
    // Taking the last spare asked for the next.
    spare_ready(&log);
    log.append(&bytes(&[message(1, 5, "the real seq 5")]))
        .unwrap();
    assert_eq!(log.segment(), 3);
    assert_eq!(file_len(&d, 3), spare::SPARE_BYTES);
    let r = replay(&d).unwrap();
    assert_eq!(
        r.records,
        [so_far, vec![message(1, 5, "the real seq 5")]].concat()
    );
    assert_eq!(r.segments, vec![1, 2, 3]);

    // A log that stops leaves its segments and no spare.
    drop(log);
    let mut names: Vec<_> = std::fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, [1, 2, 3].map(|n| format!("{n:020}.seg")));
}

#[test]
fn a_spare_half_made_is_not_a_segment_and_a_stop_cuts_it_short() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    let mut log = Log::start(&d, None, true).unwrap();
    log.append(&bytes(&[message(1, 1, "a")])).unwrap();
    // What a crash leaves while a spare is being written.
    std::fs::write(d.join(spare::SPARE), vec![0u8; 4096]).unwrap();
    let r = replay(&d).unwrap();
    assert_eq!(r.records, vec![message(1, 1, "a")]);
    assert_eq!(r.segments, vec![1]);
    drop(log);
    // Stopped while it writes one: it stops within a step and removes it.
    let log = Log::start(&d, Some(1), true)
        .unwrap()
        .with_spares()
        .unwrap();
    log.spares.as_ref().unwrap().want();
    drop(log);
    assert!(!d.join(spare::SPARE).exists());
}

#[test]
fn a_spare_that_cannot_be_made_leaves_the_log_appending_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("log");
    std::fs::create_dir_all(d.join(spare::SPARE)).unwrap();
    // A directory where the spare goes: it can neither be removed nor
    // written.
    let mut log = Log::start(&d, None, true).unwrap().with_spares().unwrap();
    let big = bytes(&[message(1, 1, &"b".repeat(SPARE_AFTER as usize))]);
    log.append(&big).unwrap();
    #[allow(clippy::disallowed_methods)] // a test giving a thread time to fail
    std::thread::sleep(std::time::Duration::from_millis(300));
    log.append(&bytes(&[message(1, 2, "c")])).unwrap();
    assert_eq!(log.segment(), 1, "no spare to move onto");
    assert_eq!(replay(&d).unwrap().records.len(), 2);
    // The stop does not wait out the pause after the failure.
    let stopped = natter_runtime::clock::Instant::now();
    drop(log);
    assert!(stopped.elapsed() < std::time::Duration::from_secs(5));
}
