//! `Htpasswd::parse` on arbitrary UTF-8: never panics, and an accepted file has exactly the
//! users its lines name. `verify` runs only where the hash is cheap (bcrypt cost 4, small argon2
//! parameters); a cost-17 bcrypt hash, which parse accepts, takes seconds per check.
#![no_main]

use argon2::password_hash::PasswordHash;
use argon2::Params;
use breakwater_auth::Htpasswd;
use libfuzzer_sys::fuzz_target;
use std::collections::HashMap;

/// bcrypt costs up to this are verified (4 is bcrypt's minimum: ~1 ms).
const MAX_FUZZ_BCRYPT_COST: u32 = 4;
/// argon2 memory (KiB) and passes up to these are verified.
const MAX_FUZZ_ARGON2_M: u32 = 64;
const MAX_FUZZ_ARGON2_T: u32 = 2;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = Htpasswd::parse(text) else {
        return;
    };
    // The users as the lines name them (same rules as the parser: trimmed lines, `#` comments).
    let mut users: HashMap<&str, &str> = HashMap::new();
    let mut order = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (user, hash) = line.split_once(':').expect("accepted line without ':'");
        assert!(!user.is_empty() && !user.chars().any(char::is_control));
        assert!(
            users.insert(user, hash).is_none(),
            "duplicate user {user:?} accepted"
        );
        order.push(user);
    }
    assert_eq!(file.len(), users.len());
    assert_eq!(file.is_empty(), users.is_empty());
    for user in users.keys() {
        assert!(file.has_user(user));
    }
    // Known users with cheap hashes: a wrong password is refused.
    for (user, hash) in &users {
        if cheap(hash) {
            assert!(!file.verify(user, "\u{0}not the password"));
        }
    }
    // Unknown users check a dummy hash modelled on the first entry (bcrypt cost 10 when the
    // file is empty or the model cannot be copied), so only when every entry is cheap.
    if !order.is_empty() && users.values().all(|h| cheap(h)) {
        let unknown = format!("{}-unknown", order.join(""));
        if !file.has_user(&unknown) {
            assert!(!file.verify(&unknown, "password"));
        }
    }
});

fn cheap(hash: &str) -> bool {
    if let Ok(parts) = hash.parse::<bcrypt::HashParts>() {
        return parts.get_cost() <= MAX_FUZZ_BCRYPT_COST;
    }
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    Params::try_from(&parsed)
        .is_ok_and(|p| p.m_cost() <= MAX_FUZZ_ARGON2_M && p.t_cost() <= MAX_FUZZ_ARGON2_T)
}
