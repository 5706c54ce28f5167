//! The deployment files under `deploy/`, checked with the tools there are here: the systemd unit
//! by `systemd-analyze verify` and `security`, the Kubernetes manifests parsed (PyYAML) and held
//! against the configuration they carry (which `breakwater check-config` accepts), the DaemonSet's
//! script run to write containerd `hosts.toml` files, and the Dockerfile read statically.
//! kubeconform and a container engine are not available offline, so the manifests are not
//! validated against the Kubernetes schemas and the image is not built here.

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

pub(super) fn repo_file(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(repo_file(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Reports a test that cannot run here; a failure where CI requires the tools.
fn skip(why: &str) {
    if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
        panic!("required test tool missing: {why}");
    }
    eprintln!("SKIPPED: {why}");
}

/// `breakwater check-config --config <file>` with the admin token's variable set (or not).
fn check_config(file: &Path, token: bool) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_breakwater"));
    cmd.args(["check-config", "--config"]).arg(file);
    if token {
        cmd.env("BREAKWATER_ADMIN_TOKEN", "test-token");
    } else {
        cmd.env_remove("BREAKWATER_ADMIN_TOKEN");
    }
    let out = cmd.output().expect("run breakwater check-config");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// The container configuration and what the other files must agree with.
struct Conf {
    listen_port: u16,
    admin_port: u16,
    root: String,
    max_bytes: u64,
    token_env: String,
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':').next().unwrap().parse().expect("port")
}

/// Bytes of "90GiB", "100Gi", "1.5TiB".
fn size(s: &str) -> u64 {
    let split = s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len());
    let (n, unit) = s.split_at(split);
    let n: f64 = n.trim().parse().expect("a number");
    let mult = match unit.trim().trim_end_matches('B') {
        "" => 1u64,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        other => panic!("unit {other}"),
    };
    (n * mult as f64) as u64
}

fn container_conf() -> Conf {
    let t: toml::Value = read("deploy/breakwater.toml").parse().expect("TOML");
    Conf {
        listen_port: port_of(t["server"]["listen"].as_str().unwrap()),
        admin_port: port_of(t["server"]["admin_listen"].as_str().unwrap()),
        root: t["storage"]["root"].as_str().unwrap().to_string(),
        max_bytes: size(t["storage"]["max_bytes"].as_str().unwrap()),
        token_env: t["server"]["admin_token_env"]
            .as_str()
            .expect("an admin token: admin_listen is not loopback")
            .to_string(),
    }
}

#[test]
fn container_config_passes_check_config_and_needs_its_token() {
    let file = repo_file("deploy/breakwater.toml");
    let (ok, out) = check_config(&file, true);
    assert!(ok, "{out}");
    assert!(out.contains("default upstream: docker.io"), "{out}");
    let (ok, out) = check_config(&file, false);
    assert!(!ok && out.contains("BREAKWATER_ADMIN_TOKEN"), "{out}");
    assert_eq!(container_conf().token_env, "BREAKWATER_ADMIN_TOKEN");
}

#[test]
fn systemd_unit_verifies_and_is_sandboxed() {
    let Ok(out) = Command::new("systemd-analyze").arg("--version").output() else {
        skip("no systemd-analyze (apt-get install systemd)");
        return;
    };
    assert!(out.status.success());
    let unit = read("deploy/breakwater.service");
    let service = unit
        .split("[Service]")
        .nth(1)
        .and_then(|s| s.split("\n[").next())
        .expect("[Service] section");
    let keys: BTreeMap<&str, &str> = service
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .collect();
    assert_eq!(
        keys["ExecStart"],
        "/usr/local/bin/breakwater serve --config /etc/breakwater/breakwater.toml"
    );
    for (key, value) in [
        ("DynamicUser", "yes"),
        ("StateDirectory", "breakwater"),
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("NoNewPrivileges", "yes"),
        ("CapabilityBoundingSet", ""),
        ("RestrictAddressFamilies", "AF_INET AF_INET6 AF_UNIX"),
        ("SystemCallArchitectures", "native"),
        ("LimitNOFILE", "65536"),
    ] {
        assert_eq!(keys.get(key), Some(&value), "{key}");
    }
    assert!(service.contains("\nSystemCallFilter=@system-service\n"));

    // verify insists that ExecStart's binary exists: check a copy naming the one just built.
    let dir = super::support::TempDir::new("unit");
    let copy = dir.path().join("breakwater.service");
    let built = env!("CARGO_BIN_EXE_breakwater");
    std::fs::write(&copy, unit.replace("/usr/local/bin/breakwater", built)).unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&copy)
        .output()
        .expect("run systemd-analyze verify");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify:\n{text}");
    assert!(!text.contains("breakwater.service"), "warnings:\n{text}");
    // The sandbox's exposure score (0 = locked down, 10 = none): at most 2.0.
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=yes", "--threshold=20"])
        .arg(&copy)
        .output()
        .expect("run systemd-analyze security");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "exposure above 2.0:\n{text}");
    let overall = text.lines().find(|l| l.contains("Overall exposure"));
    println!("{}", overall.unwrap_or("(no overall exposure line)"));
}

/// Every YAML document of `deploy/kubernetes/*.yaml`, by file, as JSON (PyYAML parses them).
fn manifests() -> Option<BTreeMap<String, Vec<Value>>> {
    manifests_in("deploy/kubernetes")
}

/// Every YAML document of `<dir>/*.yaml`, by file, as JSON; `None` without PyYAML.
pub(super) fn manifests_in(dir: &str) -> Option<BTreeMap<String, Vec<Value>>> {
    let script = "import sys, json, yaml\nprint(json.dumps([d for d in yaml.safe_load_all(open(sys.argv[1])) if d is not None]))";
    let mut out = BTreeMap::new();
    let dir = repo_file(dir);
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes") {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "yaml") {
            continue;
        }
        // Debian's python3 first: `apt-get install python3-yaml` puts PyYAML there, while a
        // python3 earlier on PATH (pyenv) may lack it.
        let python = if Path::new("/usr/bin/python3").exists() {
            "/usr/bin/python3"
        } else {
            "python3"
        };
        let r = Command::new(python)
            .args(["-c", script])
            .arg(&path)
            .output()
            .ok()?;
        if !r.status.success() {
            let err = String::from_utf8_lossy(&r.stderr);
            if err.contains("No module named 'yaml'") {
                return None;
            }
            panic!("{} does not parse:\n{err}", path.display());
        }
        let docs: Vec<Value> = serde_json::from_slice(&r.stdout).expect("JSON from PyYAML");
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        out.insert(name, docs);
    }
    Some(out)
}

pub(super) fn one<'a>(m: &'a BTreeMap<String, Vec<Value>>, kind: &str) -> &'a Value {
    let all: Vec<&Value> = m.values().flatten().filter(|d| d["kind"] == kind).collect();
    assert_eq!(all.len(), 1, "one {kind}");
    all[0]
}

#[test]
fn kubernetes_manifests_parse_and_agree_with_the_config() {
    let Some(m) = manifests() else {
        skip("no python3 with PyYAML (apt-get install python3-yaml)");
        return;
    };
    let conf = container_conf();
    for (file, docs) in &m {
        assert!(!docs.is_empty(), "{file}");
        for d in docs {
            assert!(
                d["apiVersion"].is_string() && d["kind"].is_string(),
                "{file}"
            );
            if d["kind"] == "Kustomization" {
                continue;
            }
            assert!(d["metadata"]["name"].is_string(), "{file}");
            if d["kind"] != "Namespace" {
                assert_eq!(d["metadata"]["namespace"], "breakwater", "{file}");
            }
        }
    }
    // The kustomization names every file but the node-changing DaemonSet example.
    let k = one(&m, "Kustomization");
    let listed: BTreeSet<String> = k["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    let files: BTreeSet<String> = m
        .keys()
        .filter(|f| *f != "kustomization.yaml" && *f != "containerd-hosts-daemonset.yaml")
        .cloned()
        .collect();
    assert_eq!(listed, files);

    // The ConfigMap carries deploy/breakwater.toml, which check-config accepts.
    let cm = one(&m, "ConfigMap");
    assert_eq!(
        cm["data"]["breakwater.toml"].as_str(),
        Some(read("deploy/breakwater.toml").as_str()),
        "configmap.yaml and deploy/breakwater.toml differ"
    );
    let dir = super::support::TempDir::new("k8s-config");
    let toml_file = dir.path().join("breakwater.toml");
    std::fs::write(&toml_file, cm["data"]["breakwater.toml"].as_str().unwrap()).unwrap();
    let (ok, upstreams) = check_config(&toml_file, true);
    assert!(ok, "{upstreams}");

    // The StatefulSet runs it with its volume, ports, token, probes and metrics annotations.
    let sts = one(&m, "StatefulSet");
    let pod = &sts["spec"]["template"];
    let labels = &pod["metadata"]["labels"];
    assert_eq!(&sts["spec"]["selector"]["matchLabels"], labels);
    let svc = one(&m, "Service");
    assert_eq!(sts["spec"]["serviceName"], svc["metadata"]["name"]);
    let ann = &pod["metadata"]["annotations"];
    assert_eq!(ann["prometheus.io/scrape"], "true");
    assert_eq!(ann["prometheus.io/port"], conf.admin_port.to_string());
    assert_eq!(ann["prometheus.io/path"], "/metrics");
    assert_eq!(pod["spec"]["securityContext"]["runAsNonRoot"], true);
    let c = &pod["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(
        args,
        ["serve", "--config", "/etc/breakwater/breakwater.toml"]
    );
    let ports: BTreeMap<&str, u64> = c["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap(),
                p["containerPort"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(ports["registry"], u64::from(conf.listen_port));
    assert_eq!(ports["admin"], u64::from(conf.admin_port));
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        let get = &c[probe]["httpGet"];
        assert_eq!(get["path"], "/healthz", "{probe}");
        assert_eq!(get["port"], "admin", "{probe}");
    }
    let token = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["name"] == conf.token_env.as_str())
        .expect("the admin token's variable");
    assert!(token["valueFrom"]["secretKeyRef"]["name"].is_string());
    let mounts: BTreeMap<&str, &str> = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| {
            (
                v["name"].as_str().unwrap(),
                v["mountPath"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(mounts["data"], conf.root);
    assert_eq!(mounts["config"], "/etc/breakwater");
    let config_volume = pod["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "config")
        .expect("config volume");
    assert_eq!(config_volume["configMap"]["name"], cm["metadata"]["name"]);
    let claim = &sts["spec"]["volumeClaimTemplates"][0];
    assert_eq!(claim["metadata"]["name"], "data");
    let claimed = size(
        claim["spec"]["resources"]["requests"]["storage"]
            .as_str()
            .unwrap(),
    );
    assert!(claimed > conf.max_bytes, "the volume must exceed the quota");

    // The Service selects the pods and reaches both ports by name.
    assert_eq!(&svc["spec"]["selector"], labels);
    for p in svc["spec"]["ports"].as_array().unwrap() {
        let target = p["targetPort"].as_str().unwrap();
        assert_eq!(p["port"].as_u64(), Some(ports[target]), "{target}");
    }

    daemonset_writes_hosts_toml_for_every_upstream(one(&m, "DaemonSet"), &upstreams);
}

/// Runs the DaemonSet's script (once) into a temporary directory and checks one `hosts.toml` per
/// configured upstream, naming the mirror, with the upstream itself as the fallback.
fn daemonset_writes_hosts_toml_for_every_upstream(ds: &Value, check_config_out: &str) {
    let spec = &ds["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    let host_path = spec["volumes"][0]["hostPath"]["path"].as_str().unwrap();
    assert_eq!(host_path, "/etc/containerd/certs.d");
    assert_eq!(c["volumeMounts"][0]["mountPath"], host_path);
    let env: BTreeMap<&str, &str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap(), e["value"].as_str().unwrap()))
        .collect();
    assert_eq!(env["CERTS_DIR"], host_path);
    let dir = super::support::TempDir::new("certs.d");
    let mut cmd = Command::new(c["command"][0].as_str().unwrap());
    for a in c["command"].as_array().unwrap()[1..]
        .iter()
        .chain(c["args"].as_array().unwrap())
    {
        cmd.arg(a.as_str().unwrap());
    }
    let out = cmd
        .envs(&env)
        .env("CERTS_DIR", dir.path())
        .env("ONCE", "1")
        .env("BREAKWATER_SERVICE_HOST", "10.96.0.50")
        .env("BREAKWATER_SERVICE_PORT_REGISTRY", "5000")
        .output()
        .expect("run the DaemonSet's script");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // check-config prints `<name>: <url> aliases=[…] hosts=["h1", "h2"] …` per upstream.
    let configured: Vec<(String, Vec<String>)> = check_config_out
        .lines()
        .filter(|l| l.contains(" hosts=["))
        .map(|l| {
            let url = l.split_whitespace().nth(1).unwrap().to_string();
            let hosts = l
                .split("hosts=[")
                .nth(1)
                .unwrap()
                .split(']')
                .next()
                .unwrap();
            let hosts = hosts
                .split(", ")
                .map(|h| h.trim_matches('"').to_string())
                .collect();
            (url, hosts)
        })
        .collect();
    assert!(!configured.is_empty(), "{check_config_out}");
    let mut written = BTreeSet::new();
    for entry in env["UPSTREAMS"].split_whitespace() {
        let (host, url) = entry.split_once('=').expect("<host>=<url>");
        let text = std::fs::read_to_string(dir.path().join(host).join("hosts.toml"))
            .unwrap_or_else(|e| panic!("hosts.toml for {host}: {e}"));
        let t: toml::Value = text
            .parse()
            .unwrap_or_else(|e| panic!("{host}: {e}\n{text}"));
        assert_eq!(t["server"].as_str(), Some(url), "{text}");
        let caps = &t["host"]["http://10.96.0.50:5000"]["capabilities"];
        assert_eq!(
            caps.as_array().map(|a| a.len()),
            Some(2),
            "mirror entry:\n{text}"
        );
        let upstream = configured
            .iter()
            .position(|(u, hosts)| u == url && hosts.iter().any(|h| h == host))
            .unwrap_or_else(|| panic!("{host}={url} is no configured upstream"));
        written.insert(upstream);
    }
    assert_eq!(
        written.len(),
        configured.len(),
        "every upstream gets a file"
    );
}

#[test]
fn dockerfile_builds_the_binary_and_exposes_the_configured_ports() {
    // Read statically: no container engine runs where the tests run.
    let text = read("deploy/Dockerfile");
    // Instructions with continuation lines joined, comments dropped.
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    let lines: Vec<&str> = joined
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let froms: Vec<Vec<&str>> = lines
        .iter()
        .filter(|l| l.starts_with("FROM "))
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(froms.len(), 2, "a build and a runtime stage");
    assert!(froms[0][1].starts_with("rust:") && froms[0][1].contains("bookworm"));
    assert_eq!(froms[0][2].to_ascii_uppercase(), "AS");
    let stage = froms[0][3];
    assert_eq!(froms[1][1], "debian:bookworm-slim");
    let runtime_at = lines.iter().rposition(|l| l.starts_with("FROM ")).unwrap();
    let (build, runtime) = lines.split_at(runtime_at);

    // The binary built is a cargo [[bin]] target, and the one copied out of the build stage.
    let cargo: toml::Value = read("Cargo.toml").parse().unwrap();
    let bins: Vec<&str> = cargo["bin"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["name"].as_str().unwrap())
        .collect();
    let cargo_build = build
        .iter()
        .find(|l| l.contains("cargo build"))
        .expect("cargo build");
    assert!(cargo_build.contains("--release") && cargo_build.contains("--locked"));
    let bin = cargo_build
        .split("--bin ")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .expect("--bin");
    assert!(bins.contains(&bin), "{bin} is not among {bins:?}");
    assert!(build
        .iter()
        .any(|l| l.contains("install") && l.contains("cmake")));
    let installed = format!("target/release/{bin} /usr/local/bin/{bin}");
    assert!(cargo_build.contains(&installed), "{cargo_build}");
    let copy_from = runtime
        .iter()
        .find(|l| l.starts_with(&format!("COPY --from={stage} ")))
        .expect("COPY --from the build stage");
    assert_eq!(
        copy_from.split_whitespace().nth(2),
        Some(format!("/usr/local/bin/{bin}").as_str())
    );

    // The runtime: CA certificates, the container config, a non-root user, the store volume, the
    // configured ports, and health on the admin port.
    let conf = container_conf();
    let find = |p: &str| runtime.iter().find(|l| l.starts_with(p)).copied();
    assert!(runtime.iter().any(|l| l.contains("ca-certificates")));
    let copy_conf = find("COPY deploy/breakwater.toml ").expect("the config copied");
    let conf_path = copy_conf.split_whitespace().nth(2).unwrap();
    assert!(find("CMD ").unwrap().contains(conf_path));
    assert!(find("ENTRYPOINT ")
        .unwrap()
        .contains(&format!("/usr/local/bin/{bin}")));
    let user = find("USER ")
        .expect("USER")
        .split_whitespace()
        .nth(1)
        .unwrap();
    assert!(
        !user.starts_with("root") && !user.starts_with("0"),
        "{user}"
    );
    assert_eq!(find("VOLUME ").unwrap(), format!("VOLUME {}", conf.root));
    let exposed: BTreeSet<u16> = find("EXPOSE ")
        .unwrap()
        .split_whitespace()
        .skip(1)
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(exposed, BTreeSet::from([conf.listen_port, conf.admin_port]));
    let health = find("HEALTHCHECK ").expect("HEALTHCHECK");
    assert!(health.contains(&format!("/dev/tcp/127.0.0.1/{}", conf.admin_port)));
    assert!(health.contains("/healthz"));
    // The build context leaves out build output.
    assert!(read(".dockerignore").lines().any(|l| l.trim() == "target/"));
}
