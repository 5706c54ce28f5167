//! `breakwater client-config`: the client set-up snippets for every configured upstream, pointed
//! at one breakwater URL. containerd (and k3s, which drives containerd) sends `?ns=<registry>`,
//! so its mirror entry needs no path prefix; podman/CRI-O mirrors use the upstream's first alias
//! as path prefix; dockerd's `registry-mirrors` applies to Docker Hub only.

use crate::config::{Settings, UpstreamSettings};
use std::fmt::Write as _;
use std::path::PathBuf;

/// The clients a snippet can be generated for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Client {
    /// `certs.d/<host>/hosts.toml` per registry host.
    Containerd,
    /// dockerd's `daemon.json` (Docker Hub only).
    Docker,
    /// `registries.conf` (v2) for podman, buildah and skopeo.
    Podman,
    /// k3s / RKE2 `registries.yaml`.
    K3s,
    /// `registries.conf` (v2) for CRI-O.
    Crio,
}

/// The generated files (path relative to the output directory, contents) and notes for the
/// operator that belong in no file.
#[derive(Debug, Default)]
pub struct Generated {
    /// Relative path and contents of each file.
    pub files: Vec<(PathBuf, String)>,
    /// Remarks printed to stdout (JSON has no comments).
    pub notes: Vec<String>,
}

/// The mirror URL: `http(s)://host[:port]`, no path, no trailing slash.
struct Mirror {
    url: String,
    host: String,
    insecure: bool,
}

fn parse_url(url: &str) -> Result<Mirror, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("--url {url:?}: {e}"))?;
    let host = parsed
        .host_str()
        .filter(|_| matches!(parsed.scheme(), "http" | "https"))
        .ok_or_else(|| format!("--url {url:?} must be http(s)://host[:port]"))?;
    if !matches!(parsed.path(), "" | "/") {
        return Err(format!(
            "--url {url:?}: breakwater serves at the root, drop the path"
        ));
    }
    let host = match parsed.port() {
        Some(p) => format!("{host}:{p}"),
        None => host.to_string(),
    };
    Ok(Mirror {
        url: format!("{}://{host}", parsed.scheme()),
        host,
        insecure: parsed.scheme() == "http",
    })
}

/// Registry host names of an upstream: its `hosts`, else the host of its URL.
fn hosts_of(u: &UpstreamSettings) -> Vec<String> {
    if !u.hosts.is_empty() {
        return u.hosts.clone();
    }
    reqwest::Url::parse(&u.url)
        .ok()
        .and_then(|p| {
            p.host_str().map(|h| match p.port() {
                Some(port) => format!("{h}:{port}"),
                None => h.to_string(),
            })
        })
        .into_iter()
        .collect()
}

fn is_docker_hub(u: &UpstreamSettings) -> bool {
    hosts_of(u).iter().any(|h| {
        matches!(
            h.as_str(),
            "docker.io" | "index.docker.io" | "registry-1.docker.io"
        )
    })
}

/// TOML/YAML basic string (both accept JSON string escapes for these characters).
fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The snippets for `client` covering every upstream of `settings`, mirrored at `url`.
pub fn generate(settings: &Settings, client: Client, url: &str) -> Result<Generated, String> {
    let m = parse_url(url)?;
    let mut g = Generated::default();
    match client {
        Client::Containerd => containerd(settings, &m, &mut g),
        Client::Docker => docker(settings, &m, &mut g),
        Client::Podman | Client::Crio => registries_conf(settings, client, &m, &mut g),
        Client::K3s => k3s(settings, &m, &mut g),
    }
    Ok(g)
}

/// Prints the snippets (a header naming each file) or, with `out`, writes them under it and
/// lists them; notes go to stdout as `#` lines either way.
pub fn run(
    settings: &Settings,
    client: Client,
    url: &str,
    out: Option<&std::path::Path>,
) -> Result<(), String> {
    let g = generate(settings, client, url)?;
    for n in &g.notes {
        println!("# {n}");
    }
    for (rel, text) in &g.files {
        match out {
            None => print!("\n# ==> {} <==\n{text}", rel.display()),
            Some(dir) => {
                let path = dir.join(rel);
                if let Some(parent) = path.parent() {
                    std::fs::create_dir_all(parent)
                        .map_err(|e| format!("create {}: {e}", parent.display()))?;
                }
                std::fs::write(&path, text)
                    .map_err(|e| format!("write {}: {e}", path.display()))?;
                println!("wrote {}", path.display());
            }
        }
    }
    Ok(())
}

fn containerd(settings: &Settings, m: &Mirror, g: &mut Generated) {
    for (name, u) in &settings.upstreams {
        for host in hosts_of(u) {
            let mut s = String::new();
            let _ = writeln!(
                s,
                "# containerd: /etc/containerd/certs.d/{host}/hosts.toml (breakwater upstream {name:?})"
            );
            let _ = writeln!(
                s,
                "# containerd sends ?ns={host}, which breakwater routes to that upstream; if breakwater\n\
                 # answers an error or is unreachable, containerd falls back to `server`."
            );
            let _ = writeln!(s, "server = {}\n", quoted(&u.url));
            let _ = writeln!(s, "[host.{}]", quoted(&m.url));
            let _ = writeln!(s, "  capabilities = [\"pull\", \"resolve\"]");
            g.files
                .push((PathBuf::from(format!("certs.d/{host}/hosts.toml")), s));
        }
    }
    g.notes.push(
        "containerd reads these with config_path = \"/etc/containerd/certs.d\" in its CRI registry \
         config (ctr: --hosts-dir)"
            .into(),
    );
}

fn docker(settings: &Settings, m: &Mirror, g: &mut Generated) {
    let hub = settings.upstreams.values().any(is_docker_hub);
    let json = serde_json::json!({ "registry-mirrors": [m.url] });
    g.files.push((
        PathBuf::from("daemon.json"),
        format!(
            "{}\n",
            serde_json::to_string_pretty(&json).unwrap_or_default()
        ),
    ));
    g.notes.push(
        "dockerd: /etc/docker/daemon.json; `registry-mirrors` applies to Docker Hub images only \
         — other registries' images are pulled directly (use containerd's image store with \
         hosts.toml, or the path-prefix name <mirror>/<alias>/<repo>)"
            .into(),
    );
    if m.insecure {
        g.notes.push(format!(
            "dockerd: the mirror is plain HTTP; also add \"insecure-registries\": [\"{}\"]",
            m.host
        ));
    }
    if !hub {
        g.notes.push(
            "dockerd: no configured upstream serves docker.io, so this mirror has nothing to serve \
             dockerd"
                .into(),
        );
    }
    for (name, u) in settings.upstreams.iter().filter(|(_, u)| !is_docker_hub(u)) {
        if let Some(alias) = u.aliases.first() {
            g.notes.push(format!(
                "dockerd: upstream {name:?} is reachable as {}/{alias}/<repo>",
                m.host
            ));
        }
    }
}

fn registries_conf(settings: &Settings, client: Client, m: &Mirror, g: &mut Generated) {
    let mut s = String::new();
    let who = if client == Client::Crio {
        "CRI-O"
    } else {
        "podman, buildah and skopeo"
    };
    let _ = writeln!(
        s,
        "# {who}: /etc/containers/registries.conf.d/breakwater.conf\n\
         # Each registry gets breakwater as a mirror under the upstream's first alias as path\n\
         # prefix; mirrors are tried in order, then the registry itself."
    );
    if m.insecure {
        let _ = writeln!(s, "# `insecure = true` because {} is plain HTTP.", m.url);
    }
    for (name, u) in &settings.upstreams {
        let Some(alias) = u.aliases.first() else {
            g.notes.push(format!(
                "upstream {name:?} has no alias, so no path-prefix mirror can reach it: skipped"
            ));
            continue;
        };
        for host in hosts_of(u) {
            let _ = writeln!(s, "\n# breakwater upstream {name:?} ({})", u.url);
            let _ = writeln!(s, "[[registry]]");
            let _ = writeln!(s, "prefix = {}", quoted(&host));
            let _ = writeln!(s, "location = {}", quoted(&host));
            let _ = writeln!(s, "\n[[registry.mirror]]");
            let _ = writeln!(s, "location = {}", quoted(&format!("{}/{alias}", m.host)));
            if m.insecure {
                let _ = writeln!(s, "insecure = true");
            }
        }
    }
    g.files.push((PathBuf::from("registries.conf"), s));
}

fn k3s(settings: &Settings, m: &Mirror, g: &mut Generated) {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# k3s / RKE2: /etc/rancher/k3s/registries.yaml (restart k3s to apply)\n\
         # k3s configures its containerd, which sends ?ns=<registry> to the endpoint, so breakwater\n\
         # routes each registry to its upstream without a path prefix or rewrite."
    );
    let _ = writeln!(s, "mirrors:");
    for (name, u) in &settings.upstreams {
        for host in hosts_of(u) {
            let _ = writeln!(s, "  # breakwater upstream {name:?}");
            let _ = writeln!(s, "  {}:", quoted(&host));
            let _ = writeln!(s, "    endpoint:");
            let _ = writeln!(s, "      - {}", quoted(&m.url));
        }
    }
    g.files.push((PathBuf::from("registries.yaml"), s));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(client: Client, url: &str) -> Generated {
        generate(&Settings::embedded_default(), client, url).unwrap()
    }

    #[test]
    fn containerd_writes_one_hosts_toml_per_registry_host() {
        let g = files(Client::Containerd, "http://bw.internal:5000/");
        let paths: Vec<_> = g
            .files
            .iter()
            .map(|(p, _)| p.display().to_string())
            .collect();
        for h in [
            "docker.io",
            "registry-1.docker.io",
            "quay.io",
            "ghcr.io",
            "public.ecr.aws",
        ] {
            assert!(
                paths.contains(&format!("certs.d/{h}/hosts.toml")),
                "{paths:?}"
            );
        }
        let (_, text) = g
            .files
            .iter()
            .find(|(p, _)| p.ends_with("quay.io/hosts.toml"))
            .unwrap();
        let v: toml::Value = toml::from_str(text).unwrap();
        assert_eq!(v["server"].as_str(), Some("https://quay.io"));
        let caps = &v["host"]["http://bw.internal:5000"]["capabilities"];
        assert_eq!(
            caps.as_array().unwrap(),
            &vec![toml::Value::from("pull"), toml::Value::from("resolve")]
        );
    }

    #[test]
    fn docker_daemon_json_parses_and_says_it_is_docker_hub_only() {
        let g = files(Client::Docker, "https://bw.internal");
        assert_eq!(g.files.len(), 1);
        let v: serde_json::Value = serde_json::from_str(&g.files[0].1).unwrap();
        assert_eq!(v["registry-mirrors"][0], "https://bw.internal");
        assert!(g.notes.iter().any(|n| n.contains("Docker Hub images only")));
        assert!(!g.notes.iter().any(|n| n.contains("insecure-registries")));
    }

    #[test]
    fn registries_conf_is_v2_toml_with_alias_mirrors() {
        for client in [Client::Podman, Client::Crio] {
            let g = files(client, "http://bw.internal:5000");
            let v: toml::Value = toml::from_str(&g.files[0].1).unwrap();
            let regs = v["registry"].as_array().unwrap();
            let ghcr = regs
                .iter()
                .find(|r| r["prefix"].as_str() == Some("ghcr.io"))
                .unwrap();
            assert_eq!(ghcr["location"].as_str(), Some("ghcr.io"));
            let mirror = &ghcr["mirror"].as_array().unwrap()[0];
            assert_eq!(
                mirror["location"].as_str(),
                Some("bw.internal:5000/ghcr.io")
            );
            assert_eq!(mirror["insecure"].as_bool(), Some(true));
            assert!(regs
                .iter()
                .any(|r| r["prefix"].as_str() == Some("index.docker.io")
                    && r["mirror"][0]["location"].as_str() == Some("bw.internal:5000/docker.io")));
        }
        let g = files(Client::Podman, "https://bw.internal");
        assert!(!g.files[0].1.contains("insecure"));
    }

    #[test]
    fn k3s_yaml_lists_every_registry_host_with_the_endpoint() {
        let g = files(Client::K3s, "http://bw.internal:5000");
        let text = &g.files[0].1;
        assert!(text.lines().any(|l| l == "mirrors:"));
        for h in ["docker.io", "quay.io", "ghcr.io", "public.ecr.aws"] {
            let block = format!("  \"{h}\":\n    endpoint:\n      - \"http://bw.internal:5000\"\n");
            assert!(text.contains(&block), "{h} missing:\n{text}");
        }
        // Every non-comment line is a YAML mapping key, or a list item under `endpoint:`.
        for l in text.lines().filter(|l| !l.trim_start().starts_with('#')) {
            assert!(l.ends_with(':') || l.trim_start().starts_with("- "), "{l}");
        }
    }

    #[test]
    fn bad_urls_are_refused() {
        let s = Settings::embedded_default();
        for u in ["bw.internal:5000", "ftp://bw", "http://bw/path"] {
            assert!(generate(&s, Client::Docker, u).is_err(), "{u}");
        }
    }
}
