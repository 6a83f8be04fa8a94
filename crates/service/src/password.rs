//! argon2id hashing off the async runtime, with a bound on how many run at once.

use crate::{PasswordConfig, ServiceError};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use std::sync::Arc;
use tokio::sync::Semaphore;

#[derive(Clone)]
pub struct Hasher {
    argon: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Verified against when the user does not exist, so a wrong username
    /// costs the same time as a wrong password.
    dummy: Arc<str>,
}

impl Hasher {
    pub fn new(cfg: &PasswordConfig) -> Self {
        let params = Params::new(
            cfg.argon2_memory_kib,
            cfg.argon2_iterations,
            cfg.argon2_parallelism,
            None,
        )
        .unwrap_or_else(|e| {
            tracing::warn!(error = %e, "argon2 parameters rejected; using the defaults");
            Params::default()
        });
        let argon = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let dummy = hash_with(&argon, "natter-dummy-password").unwrap_or_default();
        Hasher {
            argon,
            permits: Arc::new(Semaphore::new(cfg.max_concurrent_hashes.max(1))),
            dummy: dummy.into(),
        }
    }

    pub async fn hash(&self, password: String) -> Result<String, ServiceError> {
        let argon = self.argon.clone();
        self.blocking(move || hash_with(&argon, &password)).await?
    }

    /// Checks `password` against `hash`, or against a dummy when `hash` is None.
    pub async fn verify(
        &self,
        password: String,
        hash: Option<String>,
    ) -> Result<bool, ServiceError> {
        let argon = self.argon.clone();
        let real = hash.is_some();
        let hash = hash.unwrap_or_else(|| self.dummy.to_string());
        let ok = self
            .blocking(move || {
                PasswordHash::new(&hash)
                    .map(|h| argon.verify_password(password.as_bytes(), &h).is_ok())
                    .unwrap_or(false)
            })
            .await?;
        Ok(ok && real)
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| ServiceError::Unavailable)?;
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| ServiceError::Internal(format!("hashing task failed: {e}")))
    }
}

fn hash_with(argon: &Argon2<'_>, password: &str) -> Result<String, ServiceError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| ServiceError::Internal(format!("no randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| ServiceError::Internal(e.to_string()))?;
    argon
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("hashing failed: {e}")))
}
