//! Emailed codes: whether an offered code is the one waiting, and what
//! becomes of the stored one (used up, one more failed try, or dead).

use crate::{CodeVerdict, StoredCode};

/// What the store does with the pending code after a try.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeWrite {
    Nothing,
    /// Count one more failed try.
    CountAttempt,
    /// The code is used, expired or out of tries: it is gone.
    Delete,
}

/// Judges `offered` (the hash of the code a client sent) against the code
/// stored for the address. The hashes are compared in constant time; a
/// code is single use; after `max_attempts` wrong tries it is dead.
pub fn judge_code(
    stored: Option<&StoredCode>,
    offered: &[u8; 32],
    now_ms: i64,
    max_attempts: u32,
) -> (CodeVerdict, CodeWrite) {
    let Some(stored) = stored else {
        return (CodeVerdict::Missing, CodeWrite::Nothing);
    };
    if stored.expires_at_ms <= now_ms {
        return (CodeVerdict::Expired, CodeWrite::Delete);
    }
    if stored.attempts >= max_attempts {
        return (CodeVerdict::Missing, CodeWrite::Delete);
    }
    if same(&stored.code_hash, offered) {
        return (CodeVerdict::Accepted, CodeWrite::Delete);
    }
    let left = max_attempts - stored.attempts - 1;
    let write = if left == 0 {
        CodeWrite::Delete
    } else {
        CodeWrite::CountAttempt
    };
    (
        CodeVerdict::Wrong {
            attempts_left: left,
        },
        write,
    )
}

/// Equal bytes, in time that depends on the length only.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;
    use CodeVerdict::*;
    use CodeWrite::*;

    #[test]
    fn judging_a_code() {
        let right = [7u8; 32];
        let wrong = [8u8; 32];
        let code = |expires_at_ms, attempts| StoredCode {
            code_hash: right.to_vec(),
            expires_at_ms,
            attempts,
        };
        // (stored, offered, now, expected)
        type Row = (Option<StoredCode>, [u8; 32], i64, (CodeVerdict, CodeWrite));
        let table: &[Row] = &[
            (None, right, 0, (Missing, Nothing)),
            (Some(code(100, 0)), right, 99, (Accepted, Delete)),
            (Some(code(100, 4)), right, 99, (Accepted, Delete)),
            (Some(code(100, 0)), right, 100, (Expired, Delete)),
            (Some(code(100, 0)), wrong, 100, (Expired, Delete)),
            (
                Some(code(100, 0)),
                wrong,
                50,
                (Wrong { attempts_left: 4 }, CountAttempt),
            ),
            (
                Some(code(100, 3)),
                wrong,
                50,
                (Wrong { attempts_left: 1 }, CountAttempt),
            ),
            (
                Some(code(100, 4)),
                wrong,
                50,
                (Wrong { attempts_left: 0 }, Delete),
            ),
            // Out of tries: even the right code no longer counts.
            (Some(code(100, 5)), right, 50, (Missing, Delete)),
        ];
        for (stored, offered, now, want) in table {
            assert_eq!(
                judge_code(stored.as_ref(), offered, *now, 5),
                *want,
                "{stored:?} {now}"
            );
        }
        assert!(same(&right, &right) && !same(&right, &wrong) && !same(&right[..31], &right));
    }
}
