//! htpasswd files with bcrypt (`htpasswd -B`) or argon2 PHC hashes, a cache of recently
//! verified passwords (bcrypt costs tens of milliseconds, and Basic auth repeats the password on
//! every request), and a file handle that picks up edits without a restart.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Argon2, Params};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant, SystemTime};

/// Highest bcrypt cost accepted (what `htpasswd -C` allows); more would take seconds per check.
pub const MAX_BCRYPT_COST: u32 = 17;

/// Highest argon2 memory cost accepted, in KiB (256 MiB), so one request cannot exhaust memory.
pub const MAX_ARGON2_MEMORY_KIB: u32 = 256 * 1024;

/// Highest argon2 time cost accepted.
pub const MAX_ARGON2_ITERATIONS: u32 = 32;

/// How often [`HtpasswdFile`] looks at the file at most.
pub const RELOAD_CHECK_INTERVAL: Duration = Duration::from_secs(1);

const ACCEPTED: &str =
    "use bcrypt (htpasswd -B: $2y$, $2b$, $2a$) or argon2 ($argon2id$, $argon2i$, $argon2d$)";

/// Why an htpasswd file was refused. Never contains a hash or a password.
#[derive(Debug, thiserror::Error)]
pub enum HtpasswdError {
    /// A hash scheme other than bcrypt or argon2.
    #[error("htpasswd line {line} (user {user:?}): {scheme} hashes are not accepted; {ACCEPTED}")]
    UnsupportedScheme {
        /// 1-based line number.
        line: usize,
        /// The user on that line.
        user: String,
        /// Which scheme it looks like.
        scheme: &'static str,
    },
    /// A line that is not `user:hash`, or a bcrypt/argon2 hash that does not parse.
    #[error("htpasswd line {line}{}: {reason}", user.as_ref().map(|u| format!(" (user {u:?})")).unwrap_or_default())]
    Malformed {
        /// 1-based line number.
        line: usize,
        /// The user, when the line got that far.
        user: Option<String>,
        /// What is wrong.
        reason: String,
    },
    /// The same user twice: which password applies would be a guess.
    #[error("htpasswd line {line}: user {user:?} already appears on line {first}")]
    DuplicateUser {
        /// 1-based line number of the repetition.
        line: usize,
        /// Line of the first occurrence.
        first: usize,
        /// The user.
        user: String,
    },
    /// The file could not be read.
    #[error("htpasswd file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

/// Settings of the verified-credentials cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheConfig {
    /// How long a successful check is remembered.
    pub ttl: Duration,
    /// Most remembered (user, password) pairs.
    pub max_entries: usize,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            ttl: Duration::from_secs(300),
            max_entries: 4096,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scheme {
    Bcrypt,
    Argon2,
}

#[derive(Debug)]
struct Entry {
    scheme: Scheme,
    hash: String,
    line: usize,
}

/// Remembers successful checks by a salted SHA-256 of (user, password), never the password.
#[derive(Debug)]
struct VerifiedCache {
    config: CacheConfig,
    salt: [u8; 32],
    expiry: Mutex<HashMap<[u8; 32], Instant>>,
}

impl VerifiedCache {
    fn new(config: CacheConfig) -> Self {
        let mut salt = [0u8; 32];
        rand::rngs::OsRng.fill_bytes(&mut salt);
        VerifiedCache {
            config,
            salt,
            expiry: Mutex::new(HashMap::new()),
        }
    }

    fn key(&self, user: &str, password: &str) -> [u8; 32] {
        let mut h = Sha256::new();
        h.update(self.salt);
        // Length-prefix the user so ("a", "b:c") and ("a:b", "c") cannot collide.
        h.update((user.len() as u64).to_le_bytes());
        h.update(user.as_bytes());
        h.update(password.as_bytes());
        h.finalize().into()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<[u8; 32], Instant>> {
        self.expiry.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn hit(&self, key: &[u8; 32], now: Instant) -> bool {
        self.lock().get(key).is_some_and(|&until| now < until)
    }

    fn remember(&self, key: [u8; 32], now: Instant) {
        if self.config.max_entries == 0 || self.config.ttl.is_zero() {
            return;
        }
        let mut map = self.lock();
        if map.len() >= self.config.max_entries && !map.contains_key(&key) {
            map.retain(|_, &mut until| now < until);
            // Still full of live entries: drop the one expiring soonest.
            if map.len() >= self.config.max_entries {
                if let Some(k) = map.iter().min_by_key(|(_, &u)| u).map(|(k, _)| *k) {
                    map.remove(&k);
                }
            }
        }
        map.insert(key, now + self.config.ttl);
    }
}

/// A parsed htpasswd file.
#[derive(Debug)]
pub struct Htpasswd {
    users: HashMap<String, Entry>,
    /// Hash checked for unknown users so they take as long as known ones; made on first need.
    dummy: OnceLock<(Scheme, String)>,
    cache: VerifiedCache,
}

impl Htpasswd {
    /// Parses htpasswd text with the default cache settings.
    pub fn parse(text: &str) -> Result<Htpasswd, HtpasswdError> {
        Self::parse_with_cache(text, CacheConfig::default())
    }

    /// Parses htpasswd text with the given cache settings.
    pub fn parse_with_cache(text: &str, cache: CacheConfig) -> Result<Htpasswd, HtpasswdError> {
        let mut users: HashMap<String, Entry> = HashMap::new();
        for (i, raw) in text.lines().enumerate() {
            let line = i + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let malformed = |user: Option<&str>, reason: &str| HtpasswdError::Malformed {
                line,
                user: user.map(str::to_owned),
                reason: reason.to_owned(),
            };
            let (user, hash) = trimmed
                .split_once(':')
                .ok_or_else(|| malformed(None, "expected user:hash"))?;
            if user.is_empty() {
                return Err(malformed(None, "empty user name"));
            }
            if user.chars().any(char::is_control) {
                return Err(malformed(None, "user name contains control characters"));
            }
            let scheme = classify(hash).map_err(|scheme| HtpasswdError::UnsupportedScheme {
                line,
                user: user.to_owned(),
                scheme,
            })?;
            check_hash(scheme, hash).map_err(|reason| malformed(Some(user), &reason))?;
            if let Some(first) = users.get(user) {
                return Err(HtpasswdError::DuplicateUser {
                    line,
                    first: first.line,
                    user: user.to_owned(),
                });
            }
            users.insert(
                user.to_owned(),
                Entry {
                    scheme,
                    hash: hash.to_owned(),
                    line,
                },
            );
        }
        Ok(Htpasswd {
            users,
            dummy: OnceLock::new(),
            cache: VerifiedCache::new(cache),
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True when the file has no users (nobody can log in).
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Whether `user` has an entry (a local account, whose password never goes upstream).
    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// True when `password` is `user`'s password. Unknown users cost the same as known ones.
    pub fn verify(&self, user: &str, password: &str) -> bool {
        self.verify_at(user, password, Instant::now())
    }

    /// [`Htpasswd::verify`] with the cache judged at `now`.
    pub fn verify_at(&self, user: &str, password: &str, now: Instant) -> bool {
        let key = self.cache.key(user, password);
        if self.cache.hit(&key, now) {
            return true;
        }
        let ok = match self.users.get(user) {
            Some(entry) => check_password(entry.scheme, &entry.hash, password),
            None => {
                let (scheme, hash) = self.dummy.get_or_init(|| self.make_dummy());
                // The result is ignored: the point is spending the same time as a real check.
                let _ = check_password(*scheme, hash, password);
                false
            }
        };
        if ok {
            self.cache.remember(key, now);
        }
        ok
    }

    /// A hash of a random password with the same scheme and cost as the file's first entry
    /// (so unknown users take as long as typical known ones); bcrypt cost 10 for an empty file.
    fn make_dummy(&self) -> (Scheme, String) {
        let mut secret = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut secret);
        let template = self.users.values().min_by_key(|e| e.line);
        if let Some(Entry {
            scheme: Scheme::Argon2,
            hash,
            ..
        }) = template
        {
            if let Some(dummy) = argon2_like(hash, &secret) {
                return (Scheme::Argon2, dummy);
            }
        }
        let cost = template
            .filter(|e| e.scheme == Scheme::Bcrypt)
            .and_then(|e| e.hash.parse::<bcrypt::HashParts>().ok())
            .map_or(10, |p| p.get_cost());
        let dummy = bcrypt::hash_with_salt(secret, cost, [0x5a; 16])
            .map(|p| p.to_string())
            // Costs were validated at parse time; 4 is the floor bcrypt always accepts.
            .unwrap_or_else(|_| {
                bcrypt::hash_with_salt(secret, 4, [0x5a; 16])
                    .unwrap()
                    .to_string()
            });
        (Scheme::Bcrypt, dummy)
    }
}

/// An argon2 hash of `secret` with the algorithm, version and parameters of `template`.
fn argon2_like(template: &str, secret: &[u8]) -> Option<String> {
    let parsed = PasswordHash::new(template).ok()?;
    let params = Params::try_from(&parsed).ok()?;
    let salt = SaltString::encode_b64(&[0x5a; 16]).ok()?;
    Argon2::default()
        .hash_password_customized(
            secret,
            Some(parsed.algorithm),
            parsed.version,
            params,
            &salt,
        )
        .ok()
        .map(|h| h.to_string())
}

/// The scheme of a hash, or the name of the unsupported scheme it looks like.
fn classify(hash: &str) -> Result<Scheme, &'static str> {
    const BCRYPT: [&str; 3] = ["$2y$", "$2b$", "$2a$"];
    const ARGON2: [&str; 3] = ["$argon2id$", "$argon2i$", "$argon2d$"];
    if BCRYPT.iter().any(|p| hash.starts_with(p)) {
        return Ok(Scheme::Bcrypt);
    }
    if ARGON2.iter().any(|p| hash.starts_with(p)) {
        return Ok(Scheme::Argon2);
    }
    Err(if hash.starts_with("$apr1$") {
        "MD5 ($apr1$)"
    } else if hash.starts_with("{SHA}") {
        "SHA-1 ({SHA})"
    } else if hash.starts_with("$1$") {
        "MD5-crypt ($1$)"
    } else if hash.starts_with("$5$") || hash.starts_with("$6$") {
        "SHA-crypt ($5$/$6$)"
    } else if hash.starts_with("$2x$") {
        "bcrypt $2x$ (buggy variant)"
    } else if hash.starts_with('$') {
        "unknown $...$"
    } else if hash.is_empty() {
        "empty"
    } else {
        "crypt or plain-text"
    })
}

/// Validates a hash's encoding and cost, so a bad file fails at load time, not at login.
fn check_hash(scheme: Scheme, hash: &str) -> Result<(), String> {
    match scheme {
        Scheme::Bcrypt => {
            let parts: bcrypt::HashParts = hash
                .parse()
                .map_err(|_| "bcrypt hash is not well formed".to_owned())?;
            if parts.get_cost() > MAX_BCRYPT_COST {
                return Err(format!(
                    "bcrypt cost {} is above {MAX_BCRYPT_COST}",
                    parts.get_cost()
                ));
            }
            Ok(())
        }
        Scheme::Argon2 => {
            let parsed = PasswordHash::new(hash)
                .map_err(|_| "argon2 hash is not a valid PHC string".to_owned())?;
            let params = Params::try_from(&parsed)
                .map_err(|_| "argon2 hash has invalid parameters".to_owned())?;
            if parsed.hash.is_none() {
                return Err("argon2 hash has no output".into());
            }
            if params.m_cost() > MAX_ARGON2_MEMORY_KIB || params.t_cost() > MAX_ARGON2_ITERATIONS {
                return Err(format!(
                    "argon2 cost m={} t={} is above m={MAX_ARGON2_MEMORY_KIB} t={MAX_ARGON2_ITERATIONS}",
                    params.m_cost(),
                    params.t_cost()
                ));
            }
            Ok(())
        }
    }
}

fn check_password(scheme: Scheme, hash: &str, password: &str) -> bool {
    match scheme {
        Scheme::Bcrypt => bcrypt::verify(password, hash).unwrap_or(false),
        Scheme::Argon2 => PasswordHash::new(hash).is_ok_and(|h| {
            Argon2::default()
                .verify_password(password.as_bytes(), &h)
                .is_ok()
        }),
    }
}

/// What identifies one version of the file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Ok(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

#[derive(Debug)]
struct FileState {
    current: Arc<Htpasswd>,
    /// The version last looked at (good or bad); `None` when the file was missing.
    seen: Option<Stamp>,
    last_check: Instant,
}

/// An htpasswd file that is re-read when it changes (edits, or an atomic replace), keeping the
/// last good version when a new one does not parse.
#[derive(Debug)]
pub struct HtpasswdFile {
    path: PathBuf,
    cache: CacheConfig,
    state: Mutex<FileState>,
}

impl HtpasswdFile {
    /// Reads and parses `path`; fails if it cannot (there is no good version to fall back on).
    pub fn open(path: impl Into<PathBuf>) -> Result<Self, HtpasswdError> {
        Self::open_with_cache(path, CacheConfig::default())
    }

    /// [`HtpasswdFile::open`] with the given cache settings.
    pub fn open_with_cache(
        path: impl Into<PathBuf>,
        cache: CacheConfig,
    ) -> Result<Self, HtpasswdError> {
        let path = path.into();
        let (seen, parsed) = load(&path, cache)?;
        Ok(HtpasswdFile {
            path,
            cache,
            state: Mutex::new(FileState {
                current: Arc::new(parsed),
                seen: Some(seen),
                last_check: Instant::now(),
            }),
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The current version, reloaded first if the file changed (checked at most once a second).
    /// A new version that fails to load is reported here once, for the caller to log, and the
    /// previous version stays in use.
    pub fn snapshot(&self) -> (Arc<Htpasswd>, Option<HtpasswdError>) {
        self.snapshot_at(Instant::now())
    }

    /// [`HtpasswdFile::snapshot`] with the caller's clock.
    pub fn snapshot_at(&self, now: Instant) -> (Arc<Htpasswd>, Option<HtpasswdError>) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if now.saturating_duration_since(state.last_check) < RELOAD_CHECK_INTERVAL {
            return (state.current.clone(), None);
        }
        state.last_check = now;
        let current_stamp = match stamp(&self.path) {
            Ok(s) => Some(s),
            Err(_) if state.seen.is_none() => return (state.current.clone(), None),
            Err(source) => {
                // Missing (perhaps mid-edit): say so once, keep serving the old version.
                state.seen = None;
                let err = HtpasswdError::Io {
                    path: self.path.clone(),
                    source,
                };
                return (state.current.clone(), Some(err));
            }
        };
        if current_stamp == state.seen {
            return (state.current.clone(), None);
        }
        match load(&self.path, self.cache) {
            Ok((seen, parsed)) => {
                // A new Htpasswd comes with an empty cache: removed users and changed
                // passwords stop working at once.
                state.current = Arc::new(parsed);
                state.seen = Some(seen);
                (state.current.clone(), None)
            }
            Err(err) => {
                // Remember the bad version so the error is reported once, not every second.
                state.seen = current_stamp;
                (state.current.clone(), Some(err))
            }
        }
    }
}

/// Stamps, then reads and parses; the stamp is taken first so a change during the read is
/// seen again at the next check.
fn load(path: &Path, cache: CacheConfig) -> Result<(Stamp, Htpasswd), HtpasswdError> {
    let io = |source| HtpasswdError::Io {
        path: path.to_owned(),
        source,
    };
    let seen = stamp(path).map_err(io)?;
    let text = std::fs::read_to_string(path).map_err(io)?;
    Ok((seen, Htpasswd::parse_with_cache(&text, cache)?))
}

#[cfg(test)]
mod tests;
