//! The device policy: which sessions a new login revokes.

use super::Refusal;
use crate::{DevicePolicy, Result, SessionId};

/// The live sessions (oldest first, the same device's old one already
/// gone) that a new login revokes to stay within `max`, or a refusal.
pub fn sessions_to_revoke(
    live: &[SessionId],
    policy: DevicePolicy,
    max: usize,
) -> Result<Vec<SessionId>> {
    let max = max.max(1);
    if live.len() < max {
        return Ok(Vec::new());
    }
    match policy {
        DevicePolicy::Reject => Err(Refusal::TooManySessions.into()),
        DevicePolicy::ReplaceOldest => Ok(live[..=live.len() - max].to_vec()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_device_policy() {
        use DevicePolicy::*;
        // (live, policy, max, expected)
        type Row<'a> = (
            &'a [SessionId],
            DevicePolicy,
            usize,
            Option<&'a [SessionId]>,
        );
        let table: &[Row] = &[
            (&[], Reject, 2, Some(&[])),
            (&[1], Reject, 2, Some(&[])),
            (&[1, 2], Reject, 2, None),
            (&[1, 2], ReplaceOldest, 2, Some(&[1])),
            (&[1, 2, 3, 4], ReplaceOldest, 2, Some(&[1, 2, 3])),
            (&[1], ReplaceOldest, 0, Some(&[1])),
        ];
        for (live, policy, max, want) in table {
            let got = sessions_to_revoke(live, *policy, *max).ok();
            assert_eq!(got.as_deref(), *want, "{live:?} {policy:?} {max}");
        }
    }
}
