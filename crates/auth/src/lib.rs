//! Client access control for breakwater, the policy side only: parsing credentials, checking
//! htpasswd passwords and robot tokens, issuing and verifying registry tokens, deciding which
//! principal may pull or fill which `<upstream>/<name>`, and slowing down password guessing.
//! No HTTP and no async: the app calls this from its request handlers.

#![warn(missing_docs)]

pub mod basic;
pub mod cert;
pub mod htpasswd;
pub mod limiter;
pub mod robots;
pub mod rules;
pub mod scope;
pub mod token;

pub use basic::{parse_authorization, Credentials, HeaderError};
pub use cert::{CertError, CertIdentity, IdentitySource};
pub use htpasswd::{CacheConfig, Htpasswd, HtpasswdError, HtpasswdFile};
pub use limiter::{Allowance, FailureLimiter, LimiterConfig};
pub use robots::{Robot, RobotError, RobotTokens};
pub use rules::{
    Action, AuthMethod, Decision, Policy, Principal, Rule, RuleConfig, RuleError, Who,
};
pub use scope::{parse_scope, parse_scopes, Access, ScopeError};
pub use token::{Claims, IssuedToken, KeyError, TokenError, TokenIssuer, TokenKey};
