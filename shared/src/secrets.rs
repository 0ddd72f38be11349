//! Secrets at rest: AES-256-GCM with a master key from the configuration
//! (`CODEX32_SECRETS_KEY`), a fresh random nonce per value, and the secret's scope and name as
//! associated data — a ciphertext copied onto another secret's row does not decrypt. Each
//! ciphertext names the key that made it (`v1:<key id>:<nonce>:<sealed>`), so during a key
//! rotation the old key (`CODEX32_SECRETS_OLD_KEY`) still opens what it sealed until
//! `codex32 rotate-secrets-key` has re-sealed everything with the new one.

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// Shortest master key accepted, in characters.
pub const MIN_KEY_CHARS: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("the secrets key must be at least {MIN_KEY_CHARS} characters")]
    WeakKey,
    #[error(
        "this secret was sealed with key {0}, which is not configured (CODEX32_SECRETS_KEY or CODEX32_SECRETS_OLD_KEY)"
    )]
    UnknownKey(String),
    #[error("a stored secret is damaged or was moved to another name: it does not decrypt")]
    Corrupt,
}

struct MasterKey {
    id: String,
    key: LessSafeKey,
}

impl MasterKey {
    /// The AES key is the SHA-256 of the configured text, so any long random string works.
    fn new(text: &str) -> Result<Self, SecretError> {
        if text.chars().count() < MIN_KEY_CHARS {
            return Err(SecretError::WeakKey);
        }
        let digest = Sha256::digest(text.as_bytes());
        let id = hex::encode(&Sha256::digest(digest)[..4]);
        let unbound = UnboundKey::new(&AES_256_GCM, &digest).map_err(|_| SecretError::WeakKey)?;
        Ok(Self {
            id,
            key: LessSafeKey::new(unbound),
        })
    }
}

/// The current key, and the previous one while a rotation is under way.
pub struct Keyring {
    current: MasterKey,
    old: Option<MasterKey>,
}

impl Keyring {
    pub fn new(current: &str, old: Option<&str>) -> Result<Self, SecretError> {
        Ok(Self {
            current: MasterKey::new(current)?,
            old: old.map(MasterKey::new).transpose()?,
        })
    }

    /// The id of the current key (shown by the rotation command).
    pub fn key_id(&self) -> &str {
        &self.current.id
    }

    /// Seals `plain`, bound to `context` (the secret's scope and name).
    pub fn seal(&self, plain: &str, context: &str) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = plain.as_bytes().to_vec();
        self.current
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .expect("AES-GCM sealing of an in-memory buffer cannot fail");
        format!(
            "v1:{}:{}:{}",
            self.current.id,
            hex::encode(nonce),
            hex::encode(data)
        )
    }

    /// Opens what [`Keyring::seal`] made for the same `context`.
    pub fn open(&self, sealed: &str, context: &str) -> Result<String, SecretError> {
        let mut parts = sealed.splitn(4, ':');
        let (Some("v1"), Some(id), Some(nonce), Some(data)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(SecretError::Corrupt);
        };
        let key = [Some(&self.current), self.old.as_ref()]
            .into_iter()
            .flatten()
            .find(|k| k.id == id)
            .ok_or_else(|| SecretError::UnknownKey(id.to_owned()))?;
        let nonce: [u8; NONCE_LEN] = hex::decode(nonce)
            .ok()
            .and_then(|n| n.try_into().ok())
            .ok_or(SecretError::Corrupt)?;
        let mut data = hex::decode(data).map_err(|_| SecretError::Corrupt)?;
        let plain = key
            .key
            .open_in_place(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(context.as_bytes()),
                &mut data,
            )
            .map_err(|_| SecretError::Corrupt)?;
        String::from_utf8(plain.to_vec()).map_err(|_| SecretError::Corrupt)
    }

    /// Whether `sealed` was made with the current key (else a rotation has it left to do).
    pub fn is_current(&self, sealed: &str) -> bool {
        sealed.split(':').nth(1) == Some(self.current.id.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "0123456789abcdef0123456789abcdef";
    const NEW: &str = "fedcba9876543210fedcba9876543210";

    #[test]
    fn a_sealed_value_opens_only_in_its_own_context_with_a_known_key() {
        let ring = Keyring::new(KEY, None).unwrap();
        let sealed = ring.seal("hunter2", "bot:1/TOKEN");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, ring.seal("hunter2", "bot:1/TOKEN"), "fresh nonce");
        assert_eq!(ring.open(&sealed, "bot:1/TOKEN").unwrap(), "hunter2");
        assert!(matches!(
            ring.open(&sealed, "bot:2/TOKEN"),
            Err(SecretError::Corrupt)
        ));
        let other = Keyring::new(NEW, None).unwrap();
        assert!(matches!(
            other.open(&sealed, "bot:1/TOKEN"),
            Err(SecretError::UnknownKey(_))
        ));
        let rotating = Keyring::new(NEW, Some(KEY)).unwrap();
        assert_eq!(rotating.open(&sealed, "bot:1/TOKEN").unwrap(), "hunter2");
        assert!(!rotating.is_current(&sealed));
        assert!(rotating.is_current(&rotating.seal("x", "c")));
        let mut tampered = sealed.clone();
        let last = tampered.pop();
        tampered.push(if last == Some('0') { '1' } else { '0' });
        assert!(ring.open(&tampered, "bot:1/TOKEN").is_err());
        assert!(matches!(
            Keyring::new("short", None),
            Err(SecretError::WeakKey)
        ));
    }
}

/// Where secrets live: one bot's, or one user's (for all their bots).
pub fn bot_scope(bot_id: uuid::Uuid) -> String {
    format!("bot:{bot_id}")
}

pub fn user_scope(user_id: uuid::Uuid) -> String {
    format!("user:{user_id}")
}

/// What a sealed value is bound to.
pub fn context(scope: &str, name: &str) -> String {
    format!("{scope}/{name}")
}

/// Values this short are not redacted from logs (they would blank out ordinary text).
pub const MIN_REDACTED_CHARS: usize = 4;

/// Variables a secret may not replace: the ones codex32 sets for every bot.
const RESERVED: &[&str] = &["PATH", "HOME", "LANG", "PYTHONUNBUFFERED"];

/// A secret's name is the environment variable it arrives in.
pub fn check_name(name: &str) -> Result<(), crate::domain::Invalid> {
    let invalid = |m: &str| Err(crate::domain::Invalid::new("name", m));
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_uppercase() || c == '_');
    if !first_ok || !chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
        return invalid(
            "must be an environment variable name: A-Z, 0-9 and _, not starting with a digit",
        );
    }
    if name.len() > 64 {
        return invalid("must be at most 64 characters");
    }
    if name.starts_with("CODEX32_") || RESERVED.contains(&name) {
        return invalid("is reserved by codex32 (CODEX32_*, PATH, HOME, LANG, PYTHONUNBUFFERED)");
    }
    Ok(())
}

/// A secret's value: not empty, at most 64 KiB.
pub fn check_value(value: &str) -> Result<(), crate::domain::Invalid> {
    if value.is_empty() || value.len() > 64 * 1024 {
        return Err(crate::domain::Invalid::new(
            "value",
            "must be 1 byte to 64 KiB",
        ));
    }
    Ok(())
}

/// The scopes whose secrets an execution gets, weakest first: its owner's, then its bot's.
pub fn scopes_of(bot_id: uuid::Uuid, owner_id: uuid::Uuid) -> [String; 2] {
    [user_scope(owner_id), bot_scope(bot_id)]
}

/// Opens the `entries` of `scopes` (others are ignored) into an execution's environment; a
/// later scope's name wins over an earlier one's (the bot's over its owner's).
pub fn open_env(
    keyring: Option<&Keyring>,
    scopes: &[String],
    entries: &[crate::store::SecretEntry],
) -> Result<Vec<(String, String)>, String> {
    if !entries.iter().any(|e| scopes.contains(&e.scope)) {
        return Ok(vec![]);
    }
    let keyring = keyring.ok_or(
        "the bot has secrets but this worker has no CODEX32_SECRETS_KEY to open them; give it the API's key",
    )?;
    let mut env = std::collections::BTreeMap::new();
    for scope in scopes {
        for e in entries.iter().filter(|e| &e.scope == scope) {
            let value = keyring
                .open(&e.sealed, &context(&e.scope, &e.name))
                .map_err(|err| format!("secret {}: {err}", e.name))?;
            env.insert(e.name.clone(), value);
        }
    }
    Ok(env.into_iter().collect())
}

#[derive(Debug, thiserror::Error)]
pub enum RotateError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("secret {name} of {scope}: {source}")]
    Open {
        name: String,
        scope: String,
        source: SecretError,
    },
}

/// Re-seals every secret not sealed with the current key; returns how many it re-sealed.
pub async fn rotate(
    store: &dyn crate::store::Store,
    keyring: &Keyring,
) -> Result<usize, RotateError> {
    let mut after = None;
    let mut resealed = 0;
    loop {
        let page = store.all_secrets(after, 500).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.id);
        for e in page.iter().filter(|e| !keyring.is_current(&e.sealed)) {
            let context = context(&e.scope, &e.name);
            let plain = keyring
                .open(&e.sealed, &context)
                .map_err(|source| RotateError::Open {
                    name: e.name.clone(),
                    scope: e.scope.clone(),
                    source,
                })?;
            let new = keyring.seal(&plain, &context);
            resealed += usize::from(store.reseal_secret(e.id, &e.sealed, &new).await?);
        }
    }
    Ok(resealed)
}
