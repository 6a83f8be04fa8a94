//! argon2id hashing on a fixed set of worker threads. Each worker allocates
//! its argon2 memory once and reuses it for every hash, so the memory spent
//! on passwords stays at `max_concurrent_hashes` × argon2 memory whatever the
//! login rate (a fresh 19 MiB buffer per hash, freed on whichever thread ran
//! it, is what the allocator used to keep). A bounded line waits in front of
//! the workers, shared fairly between the addresses asking (`line`); past
//! it, callers are told to come back later.

mod line;

pub use line::Lane;

use crate::{ServiceError, Unavailable};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use line::{Admitted, Line};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::oneshot;

/// How the pool is sized.
#[derive(Clone, Debug)]
pub struct PoolConfig {
    pub memory_kib: u32,
    pub iterations: u32,
    pub parallelism: u32,
    /// Worker threads, each holding one argon2 memory block.
    pub workers: usize,
    /// Hashes that may wait for a worker; more are refused as busy.
    pub queue: usize,
}

/// Who a hash is for: the address asking (its key, an IPv4 address or an
/// IPv6 /64; None for a request from a session) and its lane.
#[derive(Clone, Copy, Debug)]
pub struct Source {
    pub address: Option<IpAddr>,
    pub lane: Lane,
}

impl Source {
    pub fn stranger(from: Option<IpAddr>) -> Self {
        Source {
            address: from.map(natter_runtime::limits::address_key),
            lane: Lane::Others,
        }
    }
}

enum Job {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, ServiceError>>,
    },
    Verify {
        password: String,
        /// `None`: the user does not exist; check against the dummy so the
        /// answer takes as long as for a wrong password.
        hash: Option<String>,
        reply: oneshot::Sender<Result<bool, ServiceError>>,
    },
}

impl Job {
    /// Answers without hashing (the job lost its place in the line).
    fn refuse(self, e: ServiceError) {
        match self {
            Job::Hash { reply, .. } => drop(reply.send(Err(e))),
            Job::Verify { reply, .. } => drop(reply.send(Err(e))),
        }
    }

    /// Whether nobody waits for the answer any more (the caller is gone).
    fn abandoned(&self) -> bool {
        match self {
            Job::Hash { reply, .. } => reply.is_closed(),
            Job::Verify { reply, .. } => reply.is_closed(),
        }
    }
}

type Jobs = Line<Option<IpAddr>, Job>;

/// Closes the line when the last `Hasher` goes, so the workers leave.
struct Handle(Arc<Jobs>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.close();
    }
}

#[derive(Clone)]
pub struct Hasher {
    line: Arc<Handle>,
}

fn busy() -> ServiceError {
    metrics::counter!("natter_limit_hits_total", "limit" => "hash_queue").increment(1);
    ServiceError::Unavailable(Unavailable::Busy(Duration::from_secs(1)))
}

impl Hasher {
    pub fn new(cfg: &PoolConfig) -> Self {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "argon2 parameters rejected; using the defaults");
                Params::default()
            });
        let line = Arc::new(Line::new(cfg.queue));
        let dummy = Arc::new(OnceLock::new());
        for i in 0..cfg.workers.max(1) {
            let (line, params, dummy) = (line.clone(), params.clone(), dummy.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("natter-hash-{i}"))
                .spawn(move || worker(&line, &params, &dummy));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Hasher {
            line: Arc::new(Handle(line)),
        }
    }

    async fn submit<T>(
        &self,
        from: Source,
        job: impl FnOnce(oneshot::Sender<Result<T, ServiceError>>) -> Job,
    ) -> Result<T, ServiceError> {
        let (reply, rx) = oneshot::channel();
        match self.line.0.push(from.address, from.lane, job(reply)) {
            Admitted::Queued(evicted) => {
                if let Some(e) = evicted {
                    e.refuse(busy());
                }
            }
            Admitted::Refused(_) => return Err(busy()),
        }
        rx.await
            .map_err(|_| ServiceError::Internal("a password hashing thread failed".into()))?
    }

    pub async fn hash(&self, password: String, from: Source) -> Result<String, ServiceError> {
        self.submit(from, |reply| Job::Hash { password, reply })
            .await
    }

    /// Checks `password` against `hash`, or against a dummy when `hash` is None.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
        from: Source,
    ) -> Result<bool, ServiceError> {
        self.submit(from, |reply| Job::Verify {
            password,
            hash,
            reply,
        })
        .await
    }
}

fn worker(line: &Jobs, params: &Params, dummy: &OnceLock<String>) {
    let mut memory: Vec<Block> = Vec::new();
    while let Some(job) = line.next() {
        if job.abandoned() {
            continue;
        }
        let done = natter_runtime::panics::catch("password_hash", || match job {
            Job::Hash { password, reply } => {
                let _ = reply.send(hash(params, &password, &mut memory));
            }
            Job::Verify {
                password,
                hash: stored,
                reply,
            } => {
                let real = stored.is_some();
                let stored = match stored {
                    Some(h) => h,
                    None => dummy
                        .get_or_init(|| {
                            hash(params, "natter-dummy-password", &mut memory).unwrap_or_default()
                        })
                        .clone(),
                };
                let ok = verify(&password, &stored, &mut memory);
                let _ = reply.send(Ok(ok && real));
            }
        });
        if done.is_none() {
            // The job's reply was dropped with it: its caller hears an error.
            memory = Vec::new();
        }
    }
}

/// Runs argon2 in `memory`, growing it once to what `params` need.
fn compute(
    algorithm: Algorithm,
    version: Version,
    params: &Params,
    password: &[u8],
    salt: &[u8],
    out: &mut [u8],
    memory: &mut Vec<Block>,
) -> Result<(), argon2::Error> {
    let need = params.block_count();
    if memory.len() < need {
        memory.resize(need, Block::default());
    }
    Argon2::new(algorithm, version, params.clone()).hash_password_into_with_memory(
        password,
        salt,
        out,
        &mut memory[..need],
    )
}

/// Hashes a password on this thread with the configured argon2id
/// parameters, for a tool that runs no server (the command line).
pub fn hash_now(cfg: &crate::PasswordConfig, password: &str) -> Result<String, ServiceError> {
    let params = Params::new(
        cfg.argon2_memory_kib,
        cfg.argon2_iterations,
        cfg.argon2_parallelism,
        None,
    )
    .map_err(|e| ServiceError::Internal(format!("argon2 parameters: {e}")))?;
    hash(&params, password, &mut Vec::new())
}

fn hash(params: &Params, password: &str, memory: &mut Vec<Block>) -> Result<String, ServiceError> {
    let internal = |e: &dyn std::fmt::Display| ServiceError::Internal(format!("hashing: {e}"));
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| internal(&e))?;
    let mut out = vec![0u8; params.output_len().unwrap_or(Params::DEFAULT_OUTPUT_LEN)];
    let (algorithm, version) = (Algorithm::Argon2id, Version::V0x13);
    compute(
        algorithm,
        version,
        params,
        password.as_bytes(),
        &salt,
        &mut out,
        memory,
    )
    .map_err(|e| internal(&e))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| internal(&e))?;
    let phc = PasswordHash {
        algorithm: algorithm.ident(),
        version: Some(version.into()),
        params: ParamsString::try_from(params).map_err(|e| internal(&e))?,
        salt: Some(salt.as_salt()),
        hash: Some(Output::new(&out).map_err(|e| internal(&e))?),
    };
    Ok(phc.to_string())
}

/// Checks a password against a PHC string with the string's own parameters.
fn verify(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
    let Ok(phc) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (phc.salt, phc.hash) else {
        return false;
    };
    let algorithm = Algorithm::try_from(phc.algorithm);
    let version = phc.version.map(Version::try_from).transpose();
    let params = Params::try_from(&phc);
    let (Ok(algorithm), Ok(version), Ok(params)) = (algorithm, version, params) else {
        return false;
    };
    let mut raw_salt = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut raw_salt) else {
        return false;
    };
    let mut out = vec![0u8; expected.len()];
    let version = version.unwrap_or_default();
    if compute(
        algorithm,
        version,
        &params,
        password.as_bytes(),
        salt,
        &mut out,
        memory,
    )
    .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    Output::new(&out).is_ok_and(|o| o == expected)
}

#[cfg(test)]
mod tests {
    use super::*;
    use argon2::password_hash::PasswordVerifier;

    const ANY: Source = Source {
        address: None,
        lane: Lane::Others,
    };

    fn pool(workers: usize, queue: usize) -> Hasher {
        Hasher::new(&PoolConfig {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
            workers,
            queue,
        })
    }

    #[tokio::test]
    async fn hashes_verify_here_and_with_the_argon2_crate() {
        let h = pool(2, 8);
        let phc = h.hash("hunter42 hunter42".into(), ANY).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h
            .verify("hunter42 hunter42".into(), Some(phc.clone()), ANY)
            .await
            .unwrap());
        assert!(!h
            .verify("hunter43".into(), Some(phc.clone()), ANY)
            .await
            .unwrap());
        assert!(!h.verify("anything".into(), None, ANY).await.unwrap());
        assert!(!h
            .verify("x".into(), Some("not a hash".into()), ANY)
            .await
            .unwrap());
        // Interoperable both ways with the crate's own hasher.
        let parsed = PasswordHash::new(&phc).unwrap();
        assert!(Argon2::default()
            .verify_password(b"hunter42 hunter42", &parsed)
            .is_ok());
        use argon2::password_hash::PasswordHasher;
        let theirs = Argon2::new(
            Algorithm::Argon2id,
            Version::V0x13,
            Params::new(128, 2, 1, None).unwrap(),
        )
        .hash_password(b"pw", &SaltString::encode_b64(b"saltsaltsalt").unwrap())
        .unwrap()
        .to_string();
        assert!(h.verify("pw".into(), Some(theirs), ANY).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_line_is_refused_not_queued() {
        let h = pool(1, 0);
        let many: Vec<_> = (0..50)
            .map(|i| {
                let h = h.clone();
                #[allow(clippy::disallowed_methods)] // the test awaits each below
                let task = tokio::spawn(async move { h.hash(format!("password {i}"), ANY).await });
                task
            })
            .collect();
        let mut busy = 0;
        for t in many {
            if let Err(ServiceError::Unavailable(Unavailable::Busy(_))) = t.await.unwrap() {
                busy += 1;
            }
        }
        assert!(busy > 0, "one worker and no line cannot take 50 at once");
    }
}
