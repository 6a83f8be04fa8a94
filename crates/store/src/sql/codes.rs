//! Emailed codes waiting to be used: one per purpose and address, kept as
//! a hash with its expiry and failed tries, so they outlive a restart and
//! serve every node of a cluster. Whether a try is right is the rule's
//! (`rules::judge_code`); this loads the code and writes what it says.

use super::{args, has_nul, Db};
use crate::rules::{judge_code, CodeWrite};
use crate::{CodeTry, CodeVerdict, NewEmailCode, Result, StoredCode};

/// Stores a new code for the address, replacing one that waited (its
/// tries start afresh), and forgets every code whose time ran out.
pub(crate) async fn put_email_code(db: &impl Db, code: &NewEmailCode, now_ms: i64) -> Result<()> {
    db.exec(
        "DELETE FROM email_codes WHERE expires_at_ms <= $1 OR (purpose = $2 AND address = $3)",
        args![now_ms, code.purpose as i64, code.address.as_str()],
    )
    .await?;
    // Two codes for one address at once (on a backend with more than one
    // writer): the first stays, the second is refused.
    let stored = db
        .exec(
            "INSERT INTO email_codes (purpose, address, code_hash, expires_at_ms, attempts)
         VALUES ($1, $2, $3, $4, 0) ON CONFLICT DO NOTHING",
            args![
                code.purpose as i64,
                code.address.as_str(),
                &code.code_hash[..],
                code.expires_at_ms
            ],
        )
        .await?;
    if stored == 0 {
        return Err(crate::StoreError::Conflict("email code"));
    }
    Ok(())
}

/// Tries `offered` (a code's hash) against the address's code: a right one
/// is used up, a wrong one counts, a dead one goes.
pub(crate) async fn use_email_code(db: &impl Db, t: &CodeTry) -> Result<CodeVerdict> {
    if has_nul(&t.address) {
        return Ok(CodeVerdict::Missing);
    }
    let key = args![t.purpose as i64, t.address.as_str()];
    let stored = db
        .opt(
            "SELECT code_hash, expires_at_ms, attempts FROM email_codes
             WHERE purpose = $1 AND address = $2 FOR UPDATE",
            key,
        )
        .await?
        .map(|r| -> Result<StoredCode> {
            Ok(StoredCode {
                code_hash: r.get(0)?,
                expires_at_ms: r.get(1)?,
                attempts: u32::try_from(r.get::<i64>(2)?).unwrap_or(u32::MAX),
            })
        })
        .transpose()?;
    let (verdict, write) = judge_code(stored.as_ref(), &t.code_hash, t.now_ms, t.max_attempts);
    match write {
        CodeWrite::Nothing => {}
        CodeWrite::CountAttempt => {
            db.exec(
                "UPDATE email_codes SET attempts = attempts + 1 WHERE purpose = $1 AND address = $2",
                key,
            )
            .await?;
        }
        CodeWrite::Delete => {
            db.exec(
                "DELETE FROM email_codes WHERE purpose = $1 AND address = $2",
                key,
            )
            .await?;
        }
    }
    Ok(verdict)
}
