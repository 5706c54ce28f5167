//! Static bearer tokens for CI robots. Only a SHA-256 of each secret is kept, and a presented
//! token is compared against every one in constant time, so timing reveals neither which robot
//! matched nor how much of a secret was right.

use crate::rules::{AuthMethod, Principal};
use sha2::{Digest, Sha256};
use std::fmt;
use std::net::IpAddr;
use subtle::{ConditionallySelectable, ConstantTimeEq};

/// Shortest robot secret accepted: anything shorter is guessable online.
pub const MIN_SECRET_LEN: usize = 16;

/// A configured robot. `Debug` shows its name and groups, never its secret.
#[derive(Clone)]
pub struct Robot {
    name: String,
    groups: Vec<String>,
    secret_hash: [u8; 32],
}

impl Robot {
    /// The robot's name (as used in `robot:NAME` rules).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The robot's groups (as used in `group:NAME` rules).
    pub fn groups(&self) -> &[String] {
        &self.groups
    }

    /// The principal for a request authenticated with this robot's token from `addr`.
    pub fn principal(&self, addr: IpAddr) -> Principal {
        Principal {
            name: Some(self.name.clone()),
            groups: self.groups.clone(),
            method: AuthMethod::Robot,
            cert_identity: None,
            addr,
        }
    }
}

impl fmt::Debug for Robot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Robot")
            .field("name", &self.name)
            .field("groups", &self.groups)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// Why the robot configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RobotError {
    /// A robot without a name.
    #[error("robot #{0} has an empty name")]
    EmptyName(usize),
    /// Two robots with one name.
    #[error("robot name {0:?} is used twice")]
    DuplicateName(String),
    /// A secret shorter than [`MIN_SECRET_LEN`].
    #[error("robot {0:?}: token is shorter than {MIN_SECRET_LEN} characters")]
    ShortSecret(String),
    /// Two robots sharing a secret: a match could not say which one it was.
    #[error("robots {0:?} and {1:?} have the same token")]
    DuplicateSecret(String, String),
}

/// All configured robot tokens.
#[derive(Debug, Clone, Default)]
pub struct RobotTokens {
    robots: Vec<Robot>,
}

impl RobotTokens {
    /// Validates `(name, groups, secret)` triples.
    pub fn new(robots: Vec<(String, Vec<String>, String)>) -> Result<Self, RobotError> {
        let mut out: Vec<Robot> = Vec::with_capacity(robots.len());
        for (i, (name, groups, secret)) in robots.into_iter().enumerate() {
            if name.is_empty() {
                return Err(RobotError::EmptyName(i));
            }
            if out.iter().any(|r| r.name == name) {
                return Err(RobotError::DuplicateName(name));
            }
            if secret.chars().count() < MIN_SECRET_LEN {
                return Err(RobotError::ShortSecret(name));
            }
            let secret_hash: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
            if let Some(twin) = out.iter().find(|r| r.secret_hash == secret_hash) {
                return Err(RobotError::DuplicateSecret(twin.name.clone(), name));
            }
            out.push(Robot {
                name,
                groups,
                secret_hash,
            });
        }
        Ok(RobotTokens { robots: out })
    }

    /// True when no robots are configured.
    pub fn is_empty(&self) -> bool {
        self.robots.is_empty()
    }

    /// The groups of the robot named `name` (a token subject), if it is configured.
    pub fn groups_of(&self, name: &str) -> Option<&[String]> {
        self.robots
            .iter()
            .find(|r| r.name == name)
            .map(|r| r.groups.as_slice())
    }

    /// The robot whose token was presented, if any.
    pub fn check(&self, presented: &str) -> Option<&Robot> {
        // Hashing first gives every comparison the same length whatever was presented.
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = 0u32; // 1-based index of the match, 0 for none
        for (i, robot) in self.robots.iter().enumerate() {
            let hit = robot.secret_hash.ct_eq(&presented);
            // No early exit and no branch on the result: every robot is compared every time.
            found.conditional_assign(&(i as u32 + 1), hit);
        }
        (found as usize).checked_sub(1).map(|i| &self.robots[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn robots() -> RobotTokens {
        RobotTokens::new(vec![
            (
                "ci".into(),
                vec!["builders".into()],
                "ci-secret-0123456789".into(),
            ),
            ("nightly".into(), vec![], "nightly-secret-abcdefgh".into()),
        ])
        .unwrap()
    }

    #[test]
    fn finds_the_right_robot() {
        let r = robots();
        assert_eq!(r.check("ci-secret-0123456789").map(Robot::name), Some("ci"));
        assert_eq!(
            r.check("nightly-secret-abcdefgh").map(Robot::name),
            Some("nightly")
        );
        assert!(r.check("ci-secret-012345678").is_none());
        assert!(r.check("").is_none());
        assert!(RobotTokens::default().check("anything").is_none());
        let p = r
            .check("ci-secret-0123456789")
            .unwrap()
            .principal("10.0.0.1".parse().unwrap());
        assert_eq!(p.method, AuthMethod::Robot);
        assert_eq!(p.groups, vec!["builders"]);
    }

    #[test]
    fn debug_redacts_secrets() {
        let shown = format!("{:?}", robots());
        assert!(shown.contains("ci") && shown.contains("<redacted>"));
        assert!(
            !shown.contains("ci-secret") && !shown.contains("nightly-secret"),
            "{shown}"
        );
    }

    #[test]
    fn bad_configuration_is_refused() {
        let one = |name: &str, secret: &str| (name.to_owned(), vec![], secret.to_owned());
        assert_eq!(
            RobotTokens::new(vec![one("", "0123456789abcdef")]).unwrap_err(),
            RobotError::EmptyName(0)
        );
        assert_eq!(
            RobotTokens::new(vec![one("a", "short")]).unwrap_err(),
            RobotError::ShortSecret("a".into())
        );
        assert!(matches!(
            RobotTokens::new(vec![
                one("a", "0123456789abcdef"),
                one("a", "fedcba9876543210")
            ]),
            Err(RobotError::DuplicateName(_))
        ));
        assert!(matches!(
            RobotTokens::new(vec![
                one("a", "0123456789abcdef"),
                one("b", "0123456789abcdef")
            ]),
            Err(RobotError::DuplicateSecret(..))
        ));
        let err = RobotTokens::new(vec![one("a", "short")])
            .unwrap_err()
            .to_string();
        assert!(!err.contains("short\""), "{err}");
    }
}
