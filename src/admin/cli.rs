//! The admin commands (`breakwater images|repositories|lifecycle|gc|pin|events`): clients of a
//! running breakwater's admin API, printing tables (or, with `--json`, the API's JSON).

use super::client::{Body, Client};
use super::table;
use crate::cache::Event;
use crate::lifecycle::views::{ImageView, LifecycleReport, PinView, PolicyView, RepositoryView};
use clap::{Args, Subcommand};
use reqwest::Method;
use serde::de::DeserializeOwned;
use serde_json::{json, Value};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

/// Where the admin API is and how to print.
#[derive(Args, Debug, Clone)]
pub struct Conn {
    /// Admin API address, e.g. http://127.0.0.1:5001 (default: admin_listen of --config, or of
    /// the embedded default).
    #[arg(long)]
    pub admin: Option<String>,
    /// Config file whose server.admin_listen to use.
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Print the API's JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Admin commands.
#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// List cached images: digest, tags, size, first cached, last pulled, pulls, storage class;
    /// `images delete <image>` removes one.
    #[command(args_conflicts_with_subcommands = true)]
    Images {
        #[command(flatten)]
        conn: Conn,
        /// Only repositories matching this name or pattern (e.g. docker.io/library/*).
        #[arg(long)]
        repository: Option<String>,
        #[command(subcommand)]
        command: Option<ImagesCommand>,
    },
    /// List cached repositories with their image counts and lifecycle policy.
    Repositories {
        #[command(flatten)]
        conn: Conn,
    },
    /// Lifecycle policies: preview, apply, get, put, delete.
    Lifecycle {
        #[command(subcommand)]
        command: LifecycleCommand,
    },
    /// Enforce the storage quota and delete blobs no retained image references, now.
    Gc {
        #[command(flatten)]
        conn: Conn,
        /// Only report what would be evicted and deleted.
        #[arg(long)]
        dry_run: bool,
    },
    /// Pin an image (<upstream>/<repository>@<digest> or <upstream>/<repository>:<tag>) or a
    /// repository pattern (docker.io/library/*), so policies and the quota never remove it.
    /// Without a target: list pins.
    Pin {
        #[command(flatten)]
        conn: Conn,
        /// What to pin (or, with --remove, the pin's target as listed).
        target: Option<String>,
        /// Remove the pin instead.
        #[arg(long)]
        remove: bool,
        /// Why (kept with the pin).
        #[arg(long)]
        note: Option<String>,
    },
    /// The audit trail (expire, transition, evict, gc_delete, pin, ...), newest first.
    Events {
        #[command(flatten)]
        conn: Conn,
        /// Only this kind.
        #[arg(long)]
        kind: Option<String>,
        /// Only this repository (<upstream>/<name>).
        #[arg(long)]
        repository: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
}

/// `breakwater images ...`.
#[derive(Subcommand, Debug)]
pub enum ImagesCommand {
    /// Remove an image from the cache now (GC reclaims its bytes); pinned images must be
    /// unpinned first.
    Delete {
        #[command(flatten)]
        conn: Conn,
        /// `<upstream>/<repository>:<tag>` or `<upstream>/<repository>@<digest>`.
        image: String,
    },
}

/// `breakwater lifecycle ...`.
#[derive(Subcommand, Debug)]
pub enum LifecycleCommand {
    /// What the policies would expire or archive now, and the bytes GC would reclaim.
    Preview {
        #[command(flatten)]
        conn: Conn,
        /// Only repositories matching this name or pattern.
        #[arg(long)]
        repository: Option<String>,
        /// Evaluate this policy file ("-": stdin) instead of the stored policies.
        #[arg(long)]
        policy: Option<PathBuf>,
        /// Evaluate at this time instead of now: RFC 3339 (2025-07-01T00:00:00Z) or unix ms.
        #[arg(long, value_parser = parse_at)]
        at: Option<i64>,
    },
    /// Apply the policies now.
    Apply {
        #[command(flatten)]
        conn: Conn,
        /// Only repositories matching this name or pattern.
        #[arg(long)]
        repository: Option<String>,
    },
    /// The policy of a scope, or the one that applies to a repository; without either, all.
    Get {
        #[command(flatten)]
        conn: Conn,
        /// `default` or a repository pattern.
        #[arg(long)]
        scope: Option<String>,
        /// A repository (<upstream>/<name>).
        #[arg(long, conflicts_with = "scope")]
        repository: Option<String>,
    },
    /// Set the policy of a scope from an ECR lifecycle policy JSON file ("-": stdin).
    Put {
        #[command(flatten)]
        conn: Conn,
        /// `default` or a repository pattern such as docker.io/library/*.
        #[arg(long, default_value = "default")]
        scope: String,
        /// The policy file.
        file: PathBuf,
    },
    /// Remove the policy set through the API for a scope.
    Delete {
        #[command(flatten)]
        conn: Conn,
        /// `default` or a repository pattern.
        #[arg(long)]
        scope: String,
    },
}

/// `--at`: unix milliseconds, or an RFC 3339 time.
fn parse_at(s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    let t = humantime::parse_rfc3339_weak(s)
        .map_err(|e| format!("{s:?} is neither unix milliseconds nor an RFC 3339 time ({e})"))?;
    t.duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .map_err(|_| format!("{s:?} is before 1970"))
}

fn read_file(path: &PathBuf) -> Result<String, String> {
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)
            .map_err(|e| format!("cannot read stdin: {e}"))?;
        return Ok(s);
    }
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

pub(super) fn connect(conn: &Conn) -> Result<Client, String> {
    // The token: BREAKWATER_ADMIN_TOKEN, else the one the config file names.
    let env_token = std::env::var("BREAKWATER_ADMIN_TOKEN")
        .ok()
        .and_then(|t| crate::config::AdminToken::new(&t));
    let mut token = env_token.map(|t| t.secret().to_string());
    if token.is_none() && conn.config.is_some() {
        let settings = crate::config::Settings::load_or_default(conn.config.as_deref())?;
        token = settings.server.admin_token.map(|t| t.secret().to_string());
    }
    let base = match &conn.admin {
        Some(a) => a.clone(),
        None => {
            let settings = crate::config::Settings::load_or_default(conn.config.as_deref())?;
            let mut addr = settings.server.admin_listen;
            // A wildcard listen address is reached on loopback.
            match addr.ip() {
                IpAddr::V4(ip) if ip.is_unspecified() => addr.set_ip(Ipv4Addr::LOCALHOST.into()),
                IpAddr::V6(ip) if ip.is_unspecified() => addr.set_ip(Ipv6Addr::LOCALHOST.into()),
                _ => {}
            }
            format!("http://{addr}")
        }
    };
    Client::new(&base, token)
}

fn parse<T: DeserializeOwned>(v: &Value) -> Result<T, String> {
    serde_json::from_value(v.clone()).map_err(|e| format!("unexpected answer from the API: {e}"))
}

/// Prints `v` as JSON or through `render`.
fn show<T: DeserializeOwned>(
    conn: &Conn,
    v: &Value,
    field: Option<&str>,
    render: impl Fn(&T) -> String,
) -> Result<(), String> {
    if conn.json {
        println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
        return Ok(());
    }
    let inner = field.map_or(v, |f| &v[f]);
    print!("{}", render(&parse::<T>(inner)?));
    Ok(())
}

/// Runs an admin command.
pub fn run(cmd: AdminCommand) -> Result<(), String> {
    match cmd {
        AdminCommand::Images {
            command: Some(ImagesCommand::Delete { conn, image }),
            ..
        } => {
            let path = format!("/images/{}", encode(&image));
            let v = connect(&conn)?.call(Method::DELETE, &path, &[], None)?;
            show(&conn, &v, Some("deleted"), |i: &ImageView| {
                format!(
                    "deleted {}@{} {}; GC reclaims its bytes\n",
                    i.repository,
                    i.digest,
                    table::tags(&i.tags)
                )
            })
        }
        AdminCommand::Images {
            conn, repository, ..
        } => {
            let q: Vec<(&str, String)> =
                repository.map(|r| ("repository", r)).into_iter().collect();
            let v = connect(&conn)?.call(Method::GET, "/images", &q, None)?;
            show(&conn, &v, Some("images"), |i: &Vec<ImageView>| {
                table::images(i)
            })
        }
        AdminCommand::Repositories { conn } => {
            let v = connect(&conn)?.call(Method::GET, "/repositories", &[], None)?;
            show(
                &conn,
                &v,
                Some("repositories"),
                |r: &Vec<RepositoryView>| table::repositories(r),
            )
        }
        AdminCommand::Lifecycle { command } => lifecycle(command),
        AdminCommand::Gc { conn, dry_run } => {
            let body = Body::Json(json!({ "dry_run": dry_run }));
            let v = connect(&conn)?.call(Method::POST, "/gc", &[], Some(body))?;
            show(&conn, &v, None, table::gc)
        }
        AdminCommand::Pin {
            conn,
            target,
            remove,
            note,
        } => {
            let c = connect(&conn)?;
            match (target, remove) {
                (None, true) => Err("--remove needs the pin's target".into()),
                (None, false) => {
                    let v = c.call(Method::GET, "/pins", &[], None)?;
                    show(&conn, &v, Some("pins"), |p: &Vec<PinView>| table::pins(p))
                }
                (Some(t), true) => {
                    let path = format!("/pins/{}", encode(&t));
                    let v = c.call(Method::DELETE, &path, &[], None)?;
                    show(&conn, &v, None, |_: &Value| format!("unpinned {t}\n"))
                }
                (Some(t), false) => {
                    let body = Body::Json(json!({ "target": t, "note": note }));
                    let v = c.call(Method::POST, "/pins", &[], Some(body))?;
                    if let Some(w) = v["warning"].as_str() {
                        eprintln!("warning: {w}");
                    }
                    show(&conn, &v, None, |p: &PinView| {
                        format!("pinned {}\n", p.target)
                    })
                }
            }
        }
        AdminCommand::Events {
            conn,
            kind,
            repository,
            limit,
        } => {
            let mut q = vec![("limit", limit.to_string())];
            q.extend(kind.map(|k| ("kind", k)));
            q.extend(repository.map(|r| ("repository", r)));
            let v = connect(&conn)?.call(Method::GET, "/events", &q, None)?;
            show(&conn, &v, Some("events"), |e: &Vec<Event>| table::events(e))
        }
    }
}

/// Percent-encodes a path segment that may hold `/`, `@`, `:` and `*`.
pub(super) fn encode(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

fn lifecycle(cmd: LifecycleCommand) -> Result<(), String> {
    match cmd {
        LifecycleCommand::Preview {
            conn,
            repository,
            policy,
            at,
        } => {
            let policy: Option<Value> = match policy {
                Some(p) => Some(
                    serde_json::from_str(&read_file(&p)?)
                        .map_err(|e| format!("{} is not JSON: {e}", p.display()))?,
                ),
                None => None,
            };
            let body =
                Body::Json(json!({ "repository": repository, "policy": policy, "at_ms": at }));
            let v = connect(&conn)?.call(Method::POST, "/lifecycle/preview", &[], Some(body))?;
            show(&conn, &v, None, table::lifecycle)
        }
        LifecycleCommand::Apply { conn, repository } => {
            let body = Body::Json(json!({ "repository": repository }));
            let v = connect(&conn)?.call(Method::POST, "/lifecycle/apply", &[], Some(body))?;
            show(&conn, &v, None, |r: &LifecycleReport| table::lifecycle(r))
        }
        LifecycleCommand::Get {
            conn,
            scope,
            repository,
        } => {
            let c = connect(&conn)?;
            let q: Vec<(&str, String)> = match (scope, repository) {
                (Some(s), _) => vec![("scope", s)],
                (None, Some(r)) => vec![("repository", r)],
                (None, None) => {
                    let v = c.call(Method::GET, "/lifecycle/policies", &[], None)?;
                    return show(&conn, &v, Some("policies"), |p: &Vec<PolicyView>| {
                        table::policies(p)
                    });
                }
            };
            let v = c.call(Method::GET, "/lifecycle/policy", &q, None)?;
            // The policy document itself is the useful "table": print it as ECR would.
            show(&conn, &v, None, |v: &Value| {
                format!(
                    "scope: {} ({})\n{}\n",
                    v["scope"].as_str().unwrap_or("?"),
                    v["source"].as_str().unwrap_or("?"),
                    serde_json::to_string_pretty(&v["policy"]).unwrap_or_default()
                )
            })
        }
        LifecycleCommand::Put { conn, scope, file } => {
            let text = read_file(&file)?;
            let q = [("scope", scope.clone())];
            let v = connect(&conn)?.call(
                Method::PUT,
                "/lifecycle/policy",
                &q,
                Some(Body::Text(text)),
            )?;
            show(&conn, &v, None, |p: &PolicyView| {
                let n = p.policy["rules"].as_array().map_or(0, Vec::len);
                format!("lifecycle policy for {} set ({n} rules)\n", p.scope)
            })
        }
        LifecycleCommand::Delete { conn, scope } => {
            let q = [("scope", scope.clone())];
            let v = connect(&conn)?.call(Method::DELETE, "/lifecycle/policy", &q, None)?;
            show(&conn, &v, None, |_: &Value| {
                format!("lifecycle policy for {scope} removed\n")
            })
        }
    }
}
