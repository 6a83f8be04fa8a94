//! Verified email addresses and the codes emailed to prove them: the
//! records the store keeps, and what a try of a code turned out to be
//! (judged by `rules::judge_code`).

/// An account made with a verified address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewVerifiedUser {
    pub username: String,
    pub password_hash: String,
    /// Normalized by the service.
    pub email: String,
    pub now_ms: i64,
}

/// What an emailed code is for; a code for one never serves the other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodePurpose {
    Register = 1,
    Reset = 2,
}

/// A code waiting to be used, as stored: only its hash is kept.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEmailCode {
    pub purpose: CodePurpose,
    /// The address, normalized by the service.
    pub address: String,
    pub code_hash: [u8; 32],
    pub expires_at_ms: i64,
}

/// A pending code as the store loaded it, for `rules::judge_code`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredCode {
    pub code_hash: Vec<u8>,
    pub expires_at_ms: i64,
    pub attempts: u32,
}

/// A code offered for an address: its hash, when, and the tries allowed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CodeTry {
    pub purpose: CodePurpose,
    pub address: String,
    pub code_hash: [u8; 32],
    pub now_ms: i64,
    pub max_attempts: u32,
}

/// What a code offered for an address turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeVerdict {
    /// Right and in time: it is used up.
    Accepted,
    /// Wrong; this many more tries remain (0: the code is dead).
    Wrong { attempts_left: u32 },
    /// Its time ran out.
    Expired,
    /// No code waits for this address (never sent, used or dead).
    Missing,
}
