//! Password hashing with Argon2id (salted, memory-hard), off the async runtime.

use anyhow::{Context, anyhow};
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};

/// Argon2id cost. The defaults are OWASP's (19 MiB, 2 passes); load tests that
/// register thousands of users may lower them, never production.
#[derive(Debug, Clone, Copy)]
pub struct HashCost {
    pub memory_kib: u32,
    pub iterations: u32,
}

impl Default for HashCost {
    fn default() -> Self {
        HashCost {
            memory_kib: Params::DEFAULT_M_COST,
            iterations: Params::DEFAULT_T_COST,
        }
    }
}

#[derive(Clone)]
pub struct PasswordHasher {
    params: Params,
}

impl PasswordHasher {
    pub fn new(cost: HashCost) -> anyhow::Result<Self> {
        let params = Params::new(cost.memory_kib, cost.iterations, 1, None)
            .map_err(|e| anyhow!("invalid Argon2 cost: {e}"))?;
        Ok(PasswordHasher { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes with a fresh random salt into a PHC string (`$argon2id$v=19$...`).
    pub async fn hash(&self, password: String) -> anyhow::Result<String> {
        let argon2 = self.argon2();
        tokio::task::spawn_blocking(move || {
            argon2
                .hash_password(password.as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| anyhow!("hashing failed: {e}"))
        })
        .await
        .context("hashing task died")?
    }

    /// Checks a password against a stored PHC string; the string carries its own cost.
    pub async fn verify(&self, password: String, phc: String) -> anyhow::Result<bool> {
        let argon2 = self.argon2();
        tokio::task::spawn_blocking(move || {
            let parsed = PasswordHash::new(&phc).map_err(|e| anyhow!("bad stored hash: {e}"))?;
            Ok(argon2.verify_password(password.as_bytes(), &parsed).is_ok())
        })
        .await
        .context("verification task died")?
    }

    /// Burns the same time as a real check, so a login for an unknown email
    /// takes as long as one with a wrong password (no account enumeration by timing).
    pub async fn verify_nothing(&self, password: String) {
        let _ = self.hash(password).await;
    }
}
