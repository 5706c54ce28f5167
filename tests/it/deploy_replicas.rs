//! The Kubernetes example for several replicas (`deploy/kubernetes/replicas`), checked twice:
//! its manifests agree with the configuration they carry, and that configuration runs — three
//! replicas with its text (only listen addresses, the bucket's endpoint and the routing pointed
//! at loopback test servers) and the Deployment's environment, on a real Garage and PostgreSQL,
//! in front of the real registry.

use crate::bw::{local_upstream, Breakwater};
use crate::deploy::{manifests_in, one, repo_file};
use crate::support::garage::{Garage, BUCKET, REGION};
use crate::support::image::{Format, Image};
use crate::support::registry::Registry;
use crate::support::{free_port, get_all_at_once, http_client, sha256_digest, TempDir};
use breakwater_store::pg::testing::PgCluster;
use object_store::ObjectStore;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

const DIR: &str = "deploy/kubernetes/replicas";
const ADMIN_TOKEN: &str = "replicas-admin-token";

type Manifests = BTreeMap<String, Vec<Value>>;

/// The manifests, or `None` (reported) without PyYAML.
fn manifests() -> Option<Manifests> {
    let m = manifests_in(DIR);
    if m.is_none() {
        let why = "no python3 with PyYAML (apt-get install python3-yaml)";
        if std::env::var_os("BREAKWATER_REQUIRE_TEST_TOOLS").is_some() {
            panic!("required test tool missing: {why}");
        }
        eprintln!("SKIPPED: {why}");
    }
    m
}

/// The ConfigMap's `breakwater.toml`.
fn config_text(m: &Manifests) -> String {
    one(m, "ConfigMap")["data"]["breakwater.toml"]
        .as_str()
        .expect("the ConfigMap carries breakwater.toml")
        .to_string()
}

fn container(m: &Manifests) -> &Value {
    &one(m, "Deployment")["spec"]["template"]["spec"]["containers"][0]
}

fn port_of(addr: &str) -> u64 {
    addr.rsplit(':').next().unwrap().parse().expect("a port")
}

/// `text` with the one line that starts with `key = ` replaced by `key = "value"`.
fn set_line(text: &str, key: &str, value: &str) -> String {
    let prefix = format!("{key} = ");
    let hits = text.lines().filter(|l| l.starts_with(&prefix)).count();
    assert_eq!(hits, 1, "one `{key}` line in the example config");
    text.lines()
        .map(|l| {
            if l.starts_with(&prefix) {
                format!("{key} = \"{value}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn replica_manifests_agree_with_their_config() {
    let Some(m) = manifests() else {
        return;
    };
    // The kustomization lists every manifest here, and the shared ones it borrows exist.
    let kust = &m["kustomization.yaml"][0];
    let listed: BTreeSet<&str> = kust["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap())
        .collect();
    for file in m.keys().filter(|f| *f != "kustomization.yaml") {
        assert!(listed.contains(file.as_str()), "{file} is not in resources");
    }
    for r in &listed {
        assert!(repo_file(&format!("{DIR}/{r}")).is_file(), "{r} exists");
    }

    let conf: toml::Value = config_text(&m).parse().expect("the config is TOML");
    let deployment = one(&m, "Deployment");
    assert_eq!(deployment["spec"]["replicas"], 3);
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    assert_eq!(&deployment["spec"]["selector"]["matchLabels"], labels);
    let service = manifests_in("deploy/kubernetes").expect("PyYAML");
    assert_eq!(
        &one(&service, "Service")["spec"]["selector"],
        labels,
        "the shared Service selects the replicas"
    );
    let pdb = one(&m, "PodDisruptionBudget");
    assert_eq!(&pdb["spec"]["selector"]["matchLabels"], labels);
    assert!(pdb["spec"]["minAvailable"].as_u64().unwrap() < 3);

    // Ports: the container's named ports are the config's listeners.
    let c = container(&m);
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
    let listen = |table: &str, key: &str| port_of(conf[table][key].as_str().unwrap());
    assert_eq!(ports["registry"], listen("server", "listen"));
    assert_eq!(ports["admin"], listen("server", "admin_listen"));
    assert_eq!(ports["peer"], listen("cluster", "peer_listen"));

    // The peer URL comes from the pod's IP, defined before it refers to it.
    let env = c["env"].as_array().unwrap();
    let at = |name: &str| env.iter().position(|e| e["name"] == name);
    let (ip, url) = (at("POD_IP").unwrap(), at("BREAKWATER_PEER_URL").unwrap());
    assert!(ip < url, "POD_IP comes before the variable that uses it");
    assert_eq!(
        env[ip]["valueFrom"]["fieldRef"]["fieldPath"],
        "status.podIP"
    );
    assert_eq!(
        env[url]["value"],
        format!("http://$(POD_IP):{}", ports["peer"])
    );
    // Every variable the config reads is set by the Deployment.
    let read: Vec<&str> = [
        ("server", "admin_token_env"),
        ("cluster", "peer_url_env"),
        ("cluster", "secret_env"),
    ]
    .iter()
    .map(|(t, k)| conf[t][k].as_str().unwrap())
    .chain(
        [
            ("postgres", "url_env"),
            ("s3", "access_key_id_env"),
            ("s3", "secret_access_key_env"),
        ]
        .iter()
        .map(|(t, k)| conf["storage"][t][k].as_str().unwrap()),
    )
    .collect();
    for var in read {
        assert!(at(var).is_some(), "the Deployment sets ${var}");
    }
    assert_eq!(conf["storage"]["backend"].as_str(), Some("s3"));
    assert_eq!(conf["storage"]["index"].as_str(), Some("postgres"));

    // The scratch volume is the storage root, and the config mount is what the args read.
    let mounts = c["volumeMounts"].as_array().unwrap();
    let mount = |name: &str| {
        mounts.iter().find(|v| v["name"] == name).unwrap()["mountPath"]
            .as_str()
            .unwrap()
    };
    assert_eq!(mount("scratch"), conf["storage"]["root"].as_str().unwrap());
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args[2], format!("{}/breakwater.toml", mount("config")));
    let volumes = deployment["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap();
    let cm = volumes.iter().find(|v| v["name"] == "config").unwrap();
    assert_eq!(
        cm["configMap"]["name"],
        one(&m, "ConfigMap")["metadata"]["name"]
    );
}

/// The Deployment's environment for a replica on loopback: pod IP 127.0.0.1, the peer port the
/// test chose, and the secrets' test values (every secret it reads must be known here).
fn replica_env(
    m: &Manifests,
    peer: u16,
    secrets: &BTreeMap<(&str, &str), String>,
) -> Vec<(String, String)> {
    let container_peer = container(m)["ports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "peer")
        .expect("a peer port")["containerPort"]
        .clone();
    let mut out = Vec::new();
    for e in container(m)["env"].as_array().unwrap() {
        let name = e["name"].as_str().unwrap().to_string();
        let value = if let Some(v) = e["value"].as_str() {
            v.replace("$(POD_IP)", "127.0.0.1")
                .replace(&format!(":{container_peer}"), &format!(":{peer}"))
        } else if e["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP" {
            "127.0.0.1".to_string()
        } else {
            let r = &e["valueFrom"]["secretKeyRef"];
            let key = (r["name"].as_str().unwrap(), r["key"].as_str().unwrap());
            secrets
                .get(&key)
                .unwrap_or_else(|| panic!("the test has no value for secret {key:?}"))
                .clone()
        };
        out.push((name, value));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_run_the_example_config_on_garage_and_postgres() {
    let Some(m) = manifests() else {
        return;
    };
    let Some(g) = Garage::start().await else {
        return;
    };
    let Some(pg) = PgCluster::shared() else {
        return;
    };
    let reg = Registry::start_plain().await;
    let img = Image::with_layer_sizes(Format::Oci, 5150, &[4096, 12 << 20]);
    reg.pusher().push_image("team/replicated", "v1", &img).await;
    let big = img.layers.last().unwrap().clone();

    let secrets: BTreeMap<(&str, &str), String> = [
        (("breakwater-admin", "token"), ADMIN_TOKEN.to_string()),
        (
            ("breakwater-cluster", "secret"),
            "replicas-cluster-secret".into(),
        ),
        (("breakwater-postgres", "url"), pg.database()),
        (("breakwater-s3", "access-key-id"), g.key_id.clone()),
        (("breakwater-s3", "secret-access-key"), g.secret.clone()),
    ]
    .into_iter()
    .collect();
    let example = config_text(&m);
    let (head, _) = example
        .split_once("\n[routing]")
        .expect("[routing] is the example's last section");
    let tmp = TempDir::new("replicas-example");
    let mut replicas = Vec::new();
    for i in 0..3 {
        let ports: Vec<u16> = std::iter::repeat_with(free_port)
            .scan(BTreeSet::new(), |seen, p| Some(seen.insert(p).then_some(p)))
            .flatten()
            .take(3)
            .collect();
        let root = tmp.path().join(format!("pod{i}"));
        let mut text = set_line(head, "listen", &format!("127.0.0.1:{}", ports[0]));
        text = set_line(&text, "admin_listen", &format!("127.0.0.1:{}", ports[1]));
        text = set_line(&text, "peer_listen", &format!("127.0.0.1:{}", ports[2]));
        text = set_line(&text, "root", &root.display().to_string());
        text = set_line(&text, "endpoint", &g.endpoint());
        text = set_line(&text, "region", REGION);
        text = set_line(&text, "bucket", BUCKET);
        text = format!("{text}\n\n{}", local_upstream(&reg.url(), "1h", ""));
        let env = replica_env(&m, ports[2], &secrets);
        replicas.push(Breakwater::start_exact(&root, (ports[0], ports[1]), &text, &env).await);
    }

    // Nine clients over the three pods, one cold blob: one upstream GET, right bytes everywhere.
    let urls = (0..9)
        .map(|i| {
            let base = replicas[i % 3].url();
            format!("{base}/v2/local/team/replicated/blobs/{}", big.digest)
        })
        .collect();
    for (status, digest) in get_all_at_once(urls).await {
        assert_eq!((status, digest.as_str()), (200, big.digest.as_str()));
    }
    reg.settle().await;
    assert_eq!(
        reg.blob_gets(&big.digest),
        1,
        "one upstream GET for the cluster"
    );

    // The verified blob is in the bucket, under the example's prefix.
    let conf: toml::Value = example.parse().unwrap();
    let prefix = conf["storage"]["s3"]["prefix"]
        .as_str()
        .unwrap()
        .to_string();
    let key = object_store::path::Path::from(format!(
        "{prefix}/blobs/sha256/{}",
        big.digest.trim_start_matches("sha256:")
    ));
    let bucket = g.client();
    // The upload runs after the clients got their bytes.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while bucket.head(&key).await.is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the blob never reached the bucket"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = bucket.get(&key).await.unwrap().bytes().await.unwrap();
    assert_eq!(sha256_digest(&stored), big.digest);

    // skopeo through every pod.
    for (i, bw) in replicas.iter().enumerate() {
        let dest = tmp.path().join(format!("pull{i}"));
        crate::support::skopeo_pull(
            &format!("{}/local/team/replicated:v1", bw.host()),
            &dest,
            &[],
        )
        .expect("skopeo through a replica");
        let manifest = std::fs::read(dest.join("manifest.json")).unwrap();
        assert_eq!(sha256_digest(&manifest), img.manifest.digest);
    }
    reg.settle().await;
    assert_eq!(reg.blob_gets(&big.digest), 1, "still one upstream GET");
    // The manifest is in the shared bucket too: the pods after the first take the shared tag
    // record and the bucket's copy, so the registry (Docker Hub counts these) served one GET.
    let manifest_gets = reg.count("GET", "/manifests/v1")
        + reg.count("GET", &format!("/manifests/{}", img.manifest.digest));
    assert_eq!(manifest_gets, 1, "one upstream manifest GET for three pods");

    // Each pod sees the three members, with the admin token from the Secret.
    let status: Value = http_client()
        .get(format!("{}/api/v1/cluster/status", replicas[0].admin_url()))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .expect("cluster status")
        .json()
        .await
        .expect("status JSON");
    let alive = status["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter(|m| m["alive"] == true)
        .count();
    assert_eq!(alive, 3, "{status}");
}
