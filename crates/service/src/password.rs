//! argon2id hashing on a fixed set of worker threads. Each worker allocates
//! its argon2 memory once and reuses it for every hash, so the memory spent
//! on passwords stays at `max_concurrent_hashes` × argon2 memory whatever the
//! login rate (a fresh 19 MiB buffer per hash, freed on whichever thread ran
//! it, is what the allocator used to keep). A bounded line waits in front of
//! the workers; past it, callers are told to come back later.

use crate::{ServiceError, Unavailable};
use argon2::password_hash::{Output, ParamsString, PasswordHash, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use tokio::sync::{oneshot, Semaphore};

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
        reply: oneshot::Sender<bool>,
    },
}

#[derive(Clone)]
pub struct Hasher {
    jobs: mpsc::Sender<(Job, tokio::sync::OwnedSemaphorePermit)>,
    line: Arc<Semaphore>,
}

impl Hasher {
    pub fn new(cfg: &PoolConfig) -> Self {
        let params = Params::new(cfg.memory_kib, cfg.iterations, cfg.parallelism, None)
            .unwrap_or_else(|e| {
                tracing::warn!(error = %e, "argon2 parameters rejected; using the defaults");
                Params::default()
            });
        let (tx, rx) = mpsc::channel();
        let rx = Arc::new(Mutex::new(rx));
        let dummy = Arc::new(OnceLock::new());
        for i in 0..cfg.workers.max(1) {
            let (rx, params, dummy) = (rx.clone(), params.clone(), dummy.clone());
            let spawned = std::thread::Builder::new()
                .name(format!("natter-hash-{i}"))
                .spawn(move || worker(&rx, &params, &dummy));
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        Hasher {
            jobs: tx,
            line: Arc::new(Semaphore::new(cfg.workers.max(1) + cfg.queue)),
        }
    }

    async fn submit<T>(
        &self,
        job: impl FnOnce(oneshot::Sender<T>) -> Job,
    ) -> Result<T, ServiceError> {
        let Ok(permit) = self.line.clone().try_acquire_owned() else {
            metrics::counter!("natter_limit_hits_total", "limit" => "hash_queue").increment(1);
            return Err(ServiceError::Unavailable(Unavailable::Busy(
                Duration::from_secs(1),
            )));
        };
        let (reply, rx) = oneshot::channel();
        self.jobs
            .send((job(reply), permit))
            .map_err(|_| ServiceError::Unavailable(Unavailable::ShuttingDown))?;
        rx.await
            .map_err(|_| ServiceError::Internal("a password hashing thread failed".into()))
    }

    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        self.submit(|reply| Job::Hash { password, reply }).await?
    }

    /// Checks `password` against `hash`, or against a dummy when `hash` is None.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ServiceError> {
        self.submit(|reply| Job::Verify {
            password,
            hash,
            reply,
        })
        .await
    }
}

type Queue = Mutex<mpsc::Receiver<(Job, tokio::sync::OwnedSemaphorePermit)>>;

fn worker(rx: &Queue, params: &Params, dummy: &OnceLock<String>) {
    let mut memory: Vec<Block> = Vec::new();
    loop {
        // Idle workers queue on the lock; the one holding it waits for a job.
        let next = rx.lock().unwrap_or_else(|p| p.into_inner()).recv();
        let Ok((job, _permit)) = next else { return };
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
                let _ = reply.send(ok && real);
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
        let phc = h.hash("hunter42 hunter42".into()).await.unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=64,t=1,p=1$"), "{phc}");
        assert!(h
            .verify("hunter42 hunter42".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!h
            .verify("hunter43".into(), Some(phc.clone()))
            .await
            .unwrap());
        assert!(!h.verify("anything".into(), None).await.unwrap());
        assert!(!h
            .verify("x".into(), Some("not a hash".into()))
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
        assert!(h.verify("pw".into(), Some(theirs)).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_line_is_refused_not_queued() {
        let h = pool(1, 0);
        let many: Vec<_> = (0..50)
            .map(|i| {
                let h = h.clone();
                #[allow(clippy::disallowed_methods)] // the test awaits each below
                let task = tokio::spawn(async move { h.hash(format!("password {i}")).await });
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
