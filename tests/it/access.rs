//! Access control and repository scoping through the real binary: content cached for one
//! repository is never served for another on the strength of its digest alone.

use super::bw::{local_upstream, Breakwater};
use super::support::image::{Format, Image};
use super::support::registry::Registry;
use super::support::{http_client, TempDir};

const OCI_ACCEPT: &str = "application/vnd.oci.image.manifest.v1+json";

async fn get(url: &str) -> (u16, serde_json::Value) {
    let r = http_client()
        .get(url)
        .header("Accept", OCI_ACCEPT)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let body = r.bytes().await.unwrap_or_default();
    (status, serde_json::from_slice(&body).unwrap_or_default())
}

/// Waits (up to 10 s) for the blob to be committed to the store.
async fn committed(bw: &Breakwater, digest: &str) -> bool {
    super::support::wait_until(std::time::Duration::from_secs(10), || bw.has_blob(digest)).await
}

fn code(body: &serde_json::Value) -> &str {
    body["errors"][0]["code"].as_str().unwrap_or("")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_content_is_scoped_to_its_repository_and_upstream() {
    let reg = Registry::start_plain().await;
    let other = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 41);
    let digest = reg.pusher().push_image("team/app", "v1", &img).await;
    let layer = img.blobs()[0].digest.clone();
    let body = format!(
        "{}\n[upstreams.other]\nurl = \"{}\"\naliases = [\"other\"]\n",
        local_upstream(&reg.url(), "10m", ""),
        other.url()
    );
    let bw = Breakwater::start(&body).await;
    let base = bw.url();

    // Cached through its own repository.
    let (s, _) = get(&format!("{base}/v2/local/team/app/manifests/v1")).await;
    assert_eq!(s, 200);
    let (s, _) = get(&format!("{base}/v2/local/team/app/blobs/{layer}")).await;
    assert_eq!(s, 200);
    // The commit (fsync, rename) follows the last byte to the client.
    assert!(committed(&bw, &layer).await);

    // Another repository of the same upstream, which does not exist there: 404 with the right
    // code, after upstream said no (a HEAD for that repository).
    reg.reset_counts().await;
    let (s, b) = get(&format!("{base}/v2/local/team/ghost/blobs/{layer}")).await;
    assert_eq!((s, code(&b)), (404, "BLOB_UNKNOWN"), "{b}");
    let (s, b) = get(&format!("{base}/v2/local/team/ghost/manifests/{digest}")).await;
    assert_eq!((s, code(&b)), (404, "MANIFEST_UNKNOWN"), "{b}");
    let r = http_client()
        .head(format!("{base}/v2/local/team/ghost/blobs/{layer}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    reg.settle().await;
    assert!(
        reg.count("HEAD", "/v2/team/ghost/blobs/") >= 1,
        "upstream was asked"
    );
    assert_eq!(reg.blob_gets(&layer), 0);

    // Another upstream's prefix: that upstream does not hold it either.
    let (s, b) = get(&format!("{base}/v2/other/team/app/blobs/{layer}")).await;
    assert_eq!((s, code(&b)), (404, "BLOB_UNKNOWN"), "{b}");
    let (s, b) = get(&format!("{base}/v2/other/team/app/manifests/{digest}")).await;
    assert_eq!((s, code(&b)), (404, "MANIFEST_UNKNOWN"), "{b}");

    // A repository upstream really holds it in: confirmed by a HEAD, served from the store
    // (no upstream GET), and linked from then on (no second HEAD).
    reg.pusher().push_image("team/copy", "v1", &img).await;
    reg.reset_counts().await;
    for _ in 0..2 {
        let (s, _) = get(&format!("{base}/v2/local/team/copy/blobs/{layer}")).await;
        assert_eq!(s, 200);
    }
    reg.settle().await;
    assert_eq!(reg.blob_gets(&layer), 0, "served from the store");
    assert_eq!(
        reg.count("HEAD", &format!("/v2/team/copy/blobs/{layer}")),
        1
    );
}

/// An htpasswd file written by the real `htpasswd -B` (apache2-utils).
pub(super) fn htpasswd_file(dir: &std::path::Path, users: &[(&str, &str)]) -> std::path::PathBuf {
    let path = dir.join("htpasswd");
    for (i, (u, p)) in users.iter().enumerate() {
        let mut cmd = std::process::Command::new("htpasswd");
        cmd.arg("-B").arg("-b");
        if i == 0 {
            cmd.arg("-c");
        }
        let out = cmd.arg(&path).arg(u).arg(p).output().expect("run htpasswd");
        assert!(
            out.status.success(),
            "htpasswd: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    path
}

/// `skopeo copy` of `image` (host/name:tag) into a new dir with extra flags; Ok or stderr.
fn skopeo(image: &str, dir: &std::path::Path, extra: &[&str]) -> Result<(), String> {
    crate::support::skopeo_pull(image, dir, extra)
}

pub(super) const ROBOT_TOKEN: &str = "ci-robot-token-0123456789abcdef";

pub(super) fn office_config(
    public_url: &str,
    private_url: &str,
    htpasswd: &std::path::Path,
) -> String {
    format!(
        "{}\n[upstreams.priv]\nurl = \"{private_url}\"\naliases = [\"priv\"]\nprivate = true\n\n\
         [access]\nhtpasswd = \"{}\"\n\n[access.groups]\ndevs = [\"alice\"]\n\n\
         [[access.robots]]\nname = \"ci\"\ntoken_env = \"BW_TEST_ROBOT_TOKEN\"\n\n\
         [[access.rules]]\nwho = [\"everyone\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\", \"fill\"]\n\n\
         [[access.rules]]\nwho = [\"group:devs\", \"robot:ci\"]\nrepositories = [\"priv/**\"]\nactions = [\"pull\", \"fill\"]\n\n\
         [[access.rules]]\nwho = [\"user:bob\"]\nrepositories = [\"priv/**\"]\nactions = [\"pull\"]\n",
        local_upstream(public_url, "10m", ""),
        htpasswd.display()
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_pulls_on_one_prefix_logins_on_another_with_real_clients() {
    let public = Registry::start_plain().await;
    let private = Registry::start_plain().await;
    let img = Image::small(Format::Docker, 51);
    let other = Image::small(Format::Oci, 52);
    public.pusher().push_image("team/app", "v1", &img).await;
    let digest = private.pusher().push_image("team/app", "v1", &img).await;
    private
        .pusher()
        .push_image("team/other", "v1", &other)
        .await;
    let tmp = TempDir::new("access");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    std::env::set_var("BW_TEST_ROBOT_TOKEN", ROBOT_TOKEN);
    let bw = Breakwater::start(&office_config(&public.url(), &private.url(), &htpasswd)).await;
    assert!(
        bw.log_text().contains("access control on"),
        "{}",
        bw.log_text()
    );
    let host = bw.host();
    let n = std::sync::atomic::AtomicUsize::new(0);
    let dest = || {
        tmp.path().join(format!(
            "c{}",
            n.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
    };

    // /v2/ challenges anonymous clients, naming this cache's token realm.
    let r = http_client()
        .get(format!("{}/v2/", bw.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let challenge = r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        challenge.starts_with(&format!("Bearer realm=\"http://{host}/token\"")),
        "{challenge}"
    );

    // Anonymous: the public prefix pulls, the private one does not.
    skopeo(&format!("{host}/local/team/app:v1"), &dest(), &[]).expect("anonymous public pull");
    let e = skopeo(&format!("{host}/priv/team/app:v1"), &dest(), &[]).unwrap_err();
    assert!(
        e.contains("401") || e.to_lowercase().contains("unauthorized"),
        "{e}"
    );

    // alice (group devs) with --creds, and after `skopeo login`.
    skopeo(
        &format!("{host}/priv/team/app:v1"),
        &dest(),
        &["--src-creds", "alice:alice-pw"],
    )
    .expect("alice pulls the private image");
    let authfile = tmp.path().join("auth.json");
    let out = std::process::Command::new("skopeo")
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "alice-pw",
            "--authfile",
        ])
        .arg(&authfile)
        .arg(&host)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let af = authfile.display().to_string();
    skopeo(
        &format!("{host}/priv/team/other:v1"),
        &dest(),
        &["--src-authfile", &af],
    )
    .expect("alice pulls after login");

    // Wrong credentials are refused, never downgraded to anonymous (even where anonymous may).
    let e = skopeo(
        &format!("{host}/local/team/app:v1"),
        &dest(),
        &["--src-creds", "alice:wrong"],
    )
    .unwrap_err();
    assert!(
        e.contains("401") || e.to_lowercase().contains("unauthorized"),
        "{e}"
    );
    let out = std::process::Command::new("skopeo")
        .args([
            "login",
            "--tls-verify=false",
            "-u",
            "alice",
            "-p",
            "nope",
            "--authfile",
        ])
        .arg(tmp.path().join("bad.json"))
        .arg(&host)
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "login with a wrong password succeeded"
    );

    // bob may pull what is cached but not fill: the cached image pulls, an uncached one is 403.
    skopeo(
        &format!("{host}/priv/team/app:v1"),
        &dest(),
        &["--src-creds", "bob:bob-pw"],
    )
    .expect("bob pulls the cached image");
    private
        .pusher()
        .push_image("team/fresh", "v1", &other)
        .await;
    let e = skopeo(
        &format!("{host}/priv/team/fresh:v1"),
        &dest(),
        &["--src-creds", "bob:bob-pw"],
    )
    .unwrap_err();
    assert!(
        e.contains("denied") || e.contains("403") || e.contains("DENIED"),
        "{e}"
    );

    // The CI robot by static bearer token, straight at the API.
    let r = http_client()
        .get(format!("{}/v2/priv/team/app/manifests/v1", bw.url()))
        .header(
            "Accept",
            "application/vnd.docker.distribution.manifest.v2+json",
        )
        .bearer_auth(ROBOT_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );

    // A user added to the htpasswd file while breakwater runs can log in (the file is re-read).
    let token_as = |user: &'static str, pw: &'static str| {
        let url = format!("{}/token?service=breakwater", bw.url());
        async move {
            http_client()
                .get(url)
                .basic_auth(user, Some(pw))
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(token_as("carol", "carol-pw").await, 401);
    let out = std::process::Command::new("htpasswd")
        .args(["-B", "-b"])
        .arg(&htpasswd)
        .args(["carol", "carol-pw"])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert!(
        super::support::wait_until(std::time::Duration::from_secs(5), || {
            let st = tokio::task::block_in_place(|| {
                tokio::runtime::Handle::current().block_on(token_as("carol", "carol-pw"))
            });
            st == 200
        })
        .await,
        "carol could not log in after being added to the htpasswd file"
    );

    // The OAuth2 password form (containerd's way) gives a usable token.
    let r = http_client()
        .post(format!("{}/token", bw.url()))
        .form(&[
            ("grant_type", "password"),
            ("username", "alice"),
            ("password", "alice-pw"),
            ("service", "breakwater"),
            ("scope", "repository:priv/team/app:pull"),
            ("client_id", "containerd"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let tok: serde_json::Value = r.json().await.unwrap();
    let token = tok["access_token"].as_str().unwrap().to_string();
    let r = http_client()
        .get(format!("{}/v2/priv/team/app/manifests/{digest}", bw.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // The token is scoped: another repository needs its own scope.
    let r = http_client()
        .get(format!("{}/v2/priv/team/other/manifests/v1", bw.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert!(r.headers()["www-authenticate"]
        .to_str()
        .unwrap()
        .contains("insufficient_scope"));

    // Bad input: malformed headers, forged tokens, bad scopes get clear answers.
    for auth in ["Basic !!!", "Bearer", "Negotiate abc", "Bearer not.a.jwt"] {
        let r = http_client()
            .get(format!("{}/v2/local/team/app/manifests/v1", bw.url()))
            .header("Authorization", auth)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{auth}");
        let b: serde_json::Value = r.json().await.unwrap();
        assert_eq!(code(&b), "UNAUTHORIZED", "{auth}: {b}");
    }
    let mut forged = token.clone();
    forged.pop();
    forged.push(if token.ends_with('A') { 'B' } else { 'A' });
    let r = http_client()
        .get(format!("{}/v2/priv/team/app/manifests/{digest}", bw.url()))
        .bearer_auth(&forged)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = http_client()
        .get(format!(
            "{}/token?scope=repository:::&service=breakwater",
            bw.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // Denials are counted and audited; secrets never reach the log.
    assert!(bw.metric("breakwater_access_denials_total", &[]).await >= 2.0);
    assert!(
        bw.metric(
            "breakwater_auth_results_total",
            &["method=\"basic\"", "outcome=\"rejected\""]
        )
        .await
            >= 1.0
    );
    let events = bw.admin_get("/events?kind=access_denied").await;
    let text = events.to_string();
    assert!(
        text.contains("may not pull priv/team/app") && text.contains("anonymous"),
        "{text}"
    );
    assert!(
        text.contains("user:bob may not fill priv/team/fresh"),
        "{text}"
    );
    let log = bw.log_text();
    for secret in ["alice-pw", "bob-pw", ROBOT_TOKEN, token.as_str()] {
        assert!(!log.contains(secret), "a secret reached the log");
    }
}

/// A node CA, one client certificate it signed (with `subject`), and a self-signed server
/// certificate for breakwater's TLS listener, written under `dir`.
struct NodePki {
    dir: std::path::PathBuf,
    client_cert: String,
    client_key: String,
}

impl NodePki {
    fn new(dir: &std::path::Path, subject: &[(rcgen::DnType, &str)]) -> NodePki {
        use rcgen::{BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa};
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "node CA");
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let client_key = rcgen::KeyPair::generate().unwrap();
        let mut cp = CertificateParams::new(Vec::<String>::new()).unwrap();
        for (t, v) in subject {
            cp.distinguished_name.push(t.clone(), *v);
        }
        cp.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = cp.signed_by(&client_key, &ca, &ca_key).unwrap();
        let server = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).unwrap();
        std::fs::write(dir.join("ca.pem"), ca.pem()).unwrap();
        std::fs::write(dir.join("server.crt"), server.cert.pem()).unwrap();
        std::fs::write(dir.join("server.key"), server.key_pair.serialize_pem()).unwrap();
        NodePki {
            dir: dir.to_path_buf(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    /// The client certificate and key as one PEM (reqwest's identity).
    fn identity_pem(&self) -> Vec<u8> {
        format!("{}{}", self.client_cert, self.client_key).into_bytes()
    }

    /// Starts breakwater with a TLS listener checking client certificates against the CA
    /// (`cert_settings` go into `[access.client_certificates]`) and one access rule.
    async fn start(&self, upstream: &str, cert_settings: &str, rule: &str) -> (Breakwater, u16) {
        let tls_port = super::support::free_port();
        let body = format!(
            "{}\n[access]\n[access.client_certificates]\nca = \"{}\"\n{cert_settings}\n\n[[access.rules]]\n{rule}\n",
            local_upstream(upstream, "10m", ""),
            self.dir.join("ca.pem").display()
        );
        let bw = Breakwater::start_with(
            &format!(
                "tls_listen = \"127.0.0.1:{tls_port}\"\ntls_cert = \"{}\"\ntls_key = \"{}\"",
                self.dir.join("server.crt").display(),
                self.dir.join("server.key").display()
            ),
            &body,
        )
        .await;
        assert!(super::support::wait_for_port(tls_port, std::time::Duration::from_secs(10)).await);
        (bw, tls_port)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn required_client_certificates_refuse_the_handshake_without_one() {
    let reg = Registry::start_plain().await;
    let tmp = TempDir::new("mtls-required");
    let pki = NodePki::new(
        tmp.path(),
        &[
            (rcgen::DnType::OrganizationName, "nodes"),
            (rcgen::DnType::CommonName, "node-2"),
        ],
    );
    // A certificate from another CA.
    let rogue = rcgen::generate_simple_self_signed(vec!["node-2".to_string()]).unwrap();
    let (_bw, tls_port) = pki
        .start(
            &reg.url(),
            "required = true\nidentity = \"o\"",
            "who = [\"cert:nodes\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\"]",
        )
        .await;
    let url = format!("https://127.0.0.1:{tls_port}/v2/local/team/nothing/tags/list");
    let with = |pem: Option<Vec<u8>>| {
        let mut b = reqwest::Client::builder().danger_accept_invalid_certs(true);
        if let Some(pem) = pem {
            b = b.identity(reqwest::Identity::from_pem(&pem).unwrap());
        }
        b.build().unwrap()
    };
    assert!(
        with(None).get(&url).send().await.is_err(),
        "served without a certificate"
    );
    let mut rogue_pem = rogue.cert.pem().into_bytes();
    rogue_pem.extend_from_slice(rogue.key_pair.serialize_pem().as_bytes());
    assert!(
        with(Some(rogue_pem)).get(&url).send().await.is_err(),
        "a foreign CA's certificate was accepted"
    );
    // The right certificate gets through the handshake and is identified by its O ("nodes"):
    // the rule lets it pull (404: nothing cached, and pull alone may not fill).
    let r = with(Some(pki.identity_pem()))
        .get(&url)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let body = r.text().await.unwrap_or_default();
    assert!(body.contains("action fill denied"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_wrong_passwords_slow_down_then_get_429() {
    let reg = Registry::start_plain().await;
    let tmp = TempDir::new("limit");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw")]);
    let body = format!(
        "{}\n[access]\nhtpasswd = \"{}\"\n[access.failures]\nfree = 2\nmax = 4\nwindow = \"1m\"\n",
        local_upstream(&reg.url(), "10m", ""),
        htpasswd.display()
    );
    let bw = Breakwater::start(&body).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let r = http_client()
            .get(format!("{}/token?service=breakwater", bw.url()))
            .basic_auth("alice", Some("wrong"))
            .send()
            .await
            .unwrap();
        statuses.push(r.status().as_u16());
    }
    assert_eq!(&statuses[..4], &[401, 401, 401, 401], "{statuses:?}");
    assert_eq!(statuses[5], 429, "{statuses:?}");
    // Even the right password waits out the block.
    let r = http_client()
        .get(format!("{}/token?service=breakwater", bw.url()))
        .basic_auth("alice", Some("alice-pw"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_private_upstream_readable_anonymously_refuses_to_start() {
    let reg = Registry::start_plain().await;
    let tmp = TempDir::new("private");
    let cfg = tmp.path().join("bw.toml");
    std::fs::write(
        &cfg,
        format!(
            "[storage]\nroot = \"{}\"\n{}\n[upstreams.priv]\nurl = \"{}\"\nprivate = true\n\n[access]\n\
             [[access.rules]]\nwho = [\"anonymous\"]\nrepositories = [\"priv/**\"]\nactions = [\"pull\"]\n",
            tmp.path().join("store").display(),
            local_upstream(&reg.url(), "10m", ""),
            reg.url()
        ),
    )
    .unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_breakwater"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("\"priv\" is private") && err.contains("anonymous"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_certificates_identify_nodes_on_the_tls_listener() {
    let reg = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 61);
    let digest = reg.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("mtls");
    let pki = NodePki::new(tmp.path(), &[(rcgen::DnType::CommonName, "node-1")]);
    let p = |n: &str| tmp.path().join(n);
    // skopeo's certificate directory: <name>.cert + <name>.key is a client pair.
    std::fs::create_dir_all(p("certs")).unwrap();
    std::fs::write(p("certs/client.cert"), &pki.client_cert).unwrap();
    std::fs::write(p("certs/client.key"), &pki.client_key).unwrap();
    let (bw, tls_port) = pki
        .start(
            &reg.url(),
            "identity = \"cn\"",
            "who = [\"cert:node-1\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\", \"fill\"]",
        )
        .await;
    let url = format!("https://127.0.0.1:{tls_port}/v2/local/team/app/manifests/v1");

    // No certificate: an anonymous client, refused.
    let plain = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let r = plain
        .get(&url)
        .header("Accept", OCI_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);

    // The node's certificate: identified as cert:node-1 and served.
    let with_cert = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .identity(reqwest::Identity::from_pem(&pki.identity_pem()).unwrap())
        .build()
        .unwrap();
    let r = with_cert
        .get(&url)
        .header("Accept", OCI_ACCEPT)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["docker-content-digest"].to_str().unwrap(),
        digest
    );

    // A real client presenting the certificate pulls the whole image.
    let dir = p("certs").display().to_string();
    skopeo(
        &format!("127.0.0.1:{tls_port}/local/team/app:v1"),
        &p("out"),
        &["--src-cert-dir", &dir],
    )
    .expect("skopeo with a client certificate");

    // containerd, as a node configures it: hosts.toml names the client certificate.
    let host = format!("127.0.0.1:{tls_port}");
    let hosts_dir = p("certs.d");
    std::fs::create_dir_all(hosts_dir.join(&host)).unwrap();
    std::fs::write(
        hosts_dir.join(&host).join("hosts.toml"),
        format!(
            "server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n  client = [[\"{}\", \"{}\"]]\n",
            p("certs/client.cert").display(),
            p("certs/client.key").display()
        ),
    )
    .unwrap();
    std::fs::create_dir_all(p("containerd")).unwrap();
    let ctrd = super::clients::Containerd::start(&p("containerd")).await;
    let image = format!("{host}/local/team/app:v1");
    let hd = hosts_dir.display().to_string();
    let out = ctrd.ctr(&["content", "fetch", "--hosts-dir", &hd, &image]);
    assert!(
        out.status.success(),
        "ctr with a client certificate: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Without the certificate (hosts.toml without `client`), the node is anonymous and refused.
    std::fs::write(
        hosts_dir.join(&host).join("hosts.toml"),
        format!("server = \"https://{host}\"\n[host.\"https://{host}\"]\n  capabilities = [\"pull\", \"resolve\"]\n  skip_verify = true\n"),
    )
    .unwrap();
    let out = ctrd.ctr(&["content", "fetch", "--hosts-dir", &hd, &image]);
    assert!(
        !out.status.success(),
        "ctr without a certificate was served"
    );
    assert!(
        bw.metric(
            "breakwater_auth_results_total",
            &["method=\"certificate\"", "outcome=\"ok\""]
        )
        .await
            >= 1.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn private_upstream_content_never_reaches_the_wrong_client() {
    use super::support::token_server::{TokenServer, TokenServerConfig};
    // The private upstream: real token auth, nothing anonymous.
    let tokens = TokenServer::start(TokenServerConfig {
        anonymous_pull: false,
        ..TokenServerConfig::default()
    })
    .await;
    let private = Registry::start_token(&tokens).await;
    let public = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 71);
    let digest = private.pusher().push_image("secret/app", "v1", &img).await;
    let (user, pass) = tokens.credentials().unwrap();
    std::env::set_var("BW_TEST_PRIVATE_PASSWORD", &pass);
    let tmp = TempDir::new("leak");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw"), ("eve", "eve-pw")]);
    let body = format!(
        "{}\n[upstreams.priv]\nurl = \"{}\"\naliases = [\"priv\"]\nprivate = true\nusername = \"{user}\"\n\
         password_env = \"BW_TEST_PRIVATE_PASSWORD\"\n\n[access]\nhtpasswd = \"{}\"\n\n\
         [[access.rules]]\nwho = [\"everyone\"]\nrepositories = [\"local/**\"]\nactions = [\"pull\", \"fill\"]\n\n\
         [[access.rules]]\nwho = [\"user:alice\"]\nrepositories = [\"priv/secret/app\"]\nactions = [\"pull\", \"fill\"]\n\n\
         [[access.rules]]\nwho = [\"user:eve\"]\nrepositories = [\"priv/secret/other\"]\nactions = [\"pull\", \"fill\"]\n",
        local_upstream(&public.url(), "10m", ""),
        private.url(),
        htpasswd.display()
    );
    let bw = Breakwater::start(&body).await;
    let host = bw.host();
    skopeo(
        &format!("{host}/priv/secret/app:v1"),
        &tmp.path().join("a"),
        &["--src-creds", "alice:alice-pw"],
    )
    .expect("alice caches the private image");
    let layer = img.blobs()[0].digest.clone();
    // The commit (fsync, rename) follows the last byte to the client.
    assert!(committed(&bw, &layer).await);

    // A token for a principal, asked for the scope of `name`.
    let token_for = |who: Option<(&'static str, &'static str)>, name: String| {
        let url = format!(
            "{}/token?service=breakwater&scope=repository:{name}:pull",
            bw.url()
        );
        async move {
            let mut rq = http_client().get(url);
            if let Some((u, p)) = who {
                rq = rq.basic_auth(u, Some(p));
            }
            let v: serde_json::Value = rq.send().await.unwrap().json().await.unwrap();
            v["token"].as_str().unwrap().to_string()
        }
    };
    for who in [None, Some(("eve", "eve-pw"))] {
        for name in ["priv/secret/app", "priv/secret/other", "local/secret/app"] {
            let token = token_for(who, name.to_string()).await;
            for path in [
                "manifests/v1".to_string(),
                format!("manifests/{digest}"),
                format!("blobs/{layer}"),
            ] {
                let r = http_client()
                    .get(format!("{}/v2/{name}/{path}", bw.url()))
                    .header("Accept", OCI_ACCEPT)
                    .bearer_auth(&token)
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                let b: serde_json::Value = r.json().await.unwrap_or_default();
                assert!(
                    matches!(status, 401 | 403 | 404),
                    "{who:?} got {status} for {name}/{path}: {b}"
                );
                if status == 404 {
                    assert!(
                        matches!(
                            code(&b),
                            "BLOB_UNKNOWN" | "MANIFEST_UNKNOWN" | "NAME_UNKNOWN"
                        ),
                        "{b}"
                    );
                }
            }
        }
    }

    // The authorised user pulls it warm, with no upstream blob GET.
    private.reset_counts().await;
    skopeo(
        &format!("{host}/priv/secret/app:v1"),
        &tmp.path().join("b"),
        &["--src-creds", "alice:alice-pw"],
    )
    .expect("alice pulls warm");
    private.settle().await;
    for b in img.blobs() {
        assert_eq!(
            private.blob_gets(&b.digest),
            0,
            "blob {} came from upstream",
            b.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_and_containerd_log_in_through_the_token_service() {
    let public = Registry::start_plain().await;
    let private = Registry::start_plain().await;
    let img = Image::small(Format::Docker, 81);
    let digest = private.pusher().push_image("team/app", "v1", &img).await;
    let tmp = TempDir::new("clients");
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw"), ("bob", "bob-pw")]);
    std::env::set_var("BW_TEST_ROBOT_TOKEN", ROBOT_TOKEN);
    let bw = Breakwater::start(&office_config(&public.url(), &private.url(), &htpasswd)).await;
    let image = format!("{}/priv/team/app:v1", bw.host());

    // podman: anonymous refused, then `podman login` and pull.
    let podman = |args: &[&str]| {
        std::process::Command::new("podman")
            .arg("--root")
            .arg(tmp.path().join("podman-root"))
            .arg("--runroot")
            .arg(tmp.path().join("podman-run"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .env("REGISTRY_AUTH_FILE", tmp.path().join("podman-auth.json"))
            .output()
            .expect("podman is installed (.ci/run installs it)")
    };
    let out = podman(&["pull", "--tls-verify=false", &image]);
    assert!(
        !out.status.success(),
        "anonymous podman pull of a private image succeeded"
    );
    let out = podman(&[
        "login",
        "--tls-verify=false",
        "-u",
        "alice",
        "-p",
        "alice-pw",
        &bw.host(),
    ]);
    assert!(
        out.status.success(),
        "podman login: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(&["pull", "--tls-verify=false", &image]);
    assert!(
        out.status.success(),
        "podman pull: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = podman(&["image", "inspect", "--format", "{{.Digest}}", &image]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), digest);

    // containerd: ctr --user (the OAuth2 password form), and refused without it.
    let ctrd = super::clients::Containerd::start(tmp.path()).await;
    let out = ctrd.ctr(&["content", "fetch", "--plain-http", &image]);
    assert!(
        !out.status.success(),
        "anonymous ctr fetch of a private image succeeded"
    );
    let out = ctrd.ctr(&[
        "content",
        "fetch",
        "--plain-http",
        "--user",
        "alice:alice-pw",
        &image,
    ]);
    assert!(
        out.status.success(),
        "ctr --user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = String::from_utf8_lossy(&ctrd.ctr(&["content", "ls"]).stdout).to_string();
    for b in img.blobs() {
        assert!(
            listed.contains(&b.digest),
            "{} not fetched:\n{listed}",
            b.digest
        );
    }
    let log = bw.log_text();
    assert!(!log.contains("alice-pw"), "a password reached the log");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_credentials_go_upstream_and_gate_cached_content() {
    use super::support::token_server::{TokenServer, TokenServerConfig};
    let tokens = TokenServer::start(TokenServerConfig {
        anonymous_pull: false,
        ..TokenServerConfig::default()
    })
    .await;
    let private = Registry::start_token(&tokens).await;
    let public = Registry::start_plain().await;
    let img = Image::small(Format::Oci, 91);
    let digest = private.pusher().push_image("team/app", "v1", &img).await;
    let (user, pass) = tokens.credentials().unwrap();
    let tmp = TempDir::new("passthrough");
    // A local account too: its password must never be passed upstream.
    let htpasswd = htpasswd_file(tmp.path(), &[("alice", "alice-pw")]);
    let body = format!(
        "{}\n[upstreams.priv]\nurl = \"{}\"\naliases = [\"priv\"]\ncredentials = \"client\"\n\n\
         [access]\nhtpasswd = \"{}\"\n\n\
         [[access.rules]]\nwho = [\"authenticated\"]\nrepositories = [\"priv/**\", \"local/**\"]\nactions = [\"pull\", \"fill\"]\n",
        local_upstream(&public.url(), "10m", ""),
        private.url(),
        htpasswd.display()
    );
    let bw = Breakwater::start(&body).await;
    let host = bw.host();
    let image = format!("{host}/priv/team/app:v1");
    let creds = format!("{user}:{pass}");

    // The upstream's own user pulls through breakwater with its upstream credentials.
    skopeo(&image, &tmp.path().join("a"), &["--src-creds", &creds]).expect("upstream user pulls");
    assert!(tokens
        .token_log()
        .iter()
        .any(|t| t.user.as_deref() == Some(user.as_str()) && t.status == 200));
    assert!(committed(&bw, &img.blobs()[1].digest).await);

    // Cached now, but a client the upstream refuses gets nothing; nor does anonymous; nor a
    // local account (whose password is never sent upstream).
    for bad in ["mallory:guess", "alice:alice-pw"] {
        let e = skopeo(&image, &tmp.path().join("b"), &["--src-creds", bad]).unwrap_err();
        assert!(
            e.contains("denied") || e.contains("401") || e.to_lowercase().contains("unauthorized"),
            "{bad}: {e}"
        );
    }
    let e = skopeo(&image, &tmp.path().join("c"), &[]).unwrap_err();
    assert!(
        e.contains("401") || e.to_lowercase().contains("unauthorized"),
        "{e}"
    );
    assert!(
        !tokens
            .token_log()
            .iter()
            .any(|t| t.user.as_deref() == Some("alice")),
        "a local account's credentials went upstream"
    );
    // A passthrough client reaches only that upstream: its credentials mean nothing elsewhere.
    let r = http_client()
        .get(format!("{}/v2/local/team/app/manifests/v1", bw.url()))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    // The accepted user pulls warm: no upstream blob GETs, and the acceptance is remembered.
    private.reset_counts().await;
    skopeo(&image, &tmp.path().join("d"), &["--src-creds", &creds]).expect("warm pull");
    private.settle().await;
    for b in img.blobs() {
        assert_eq!(private.blob_gets(&b.digest), 0);
    }
    let r = http_client()
        .get(format!("{}/v2/priv/team/app/manifests/{digest}", bw.url()))
        .basic_auth(&user, Some(&pass))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        !bw.log_text().contains(&pass),
        "the upstream password reached the log"
    );
}
