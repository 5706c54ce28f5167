//! Uploads test images over the registry API the way `docker push` does (HEAD, POST + monolithic
//! PUT, manifests last) and reads them back, doing the Bearer token dance itself.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use reqwest::{header, Method, StatusCode, Url};
use serde_json::Value;

use super::image::{Blob, Image, Index, Manifest, Schema1};
use super::{b64std, http_client};

/// A fetched manifest or blob.
#[derive(Debug)]
pub struct Fetched {
    /// Status code.
    pub status: u16,
    /// Content-Type header.
    pub content_type: Option<String>,
    /// Docker-Content-Digest header.
    pub digest: Option<String>,
    /// All response headers.
    pub headers: header::HeaderMap,
    /// The body.
    pub body: Bytes,
}

/// Pushes (and reads back) images over the registry API, doing the Bearer token dance itself.
pub struct Pusher {
    client: reqwest::Client,
    base: Url,
    credentials: Option<(String, String)>,
    /// Bearer token per repository, reused until the registry refuses it.
    tokens: Mutex<HashMap<String, String>>,
}

impl Pusher {
    /// An anonymous pusher for the registry at `base_url` (`http://host:port`).
    pub fn new(base_url: &str) -> Pusher {
        Pusher {
            client: http_client(),
            base: Url::parse(base_url).expect("registry base URL"),
            credentials: None,
            tokens: Mutex::new(HashMap::new()),
        }
    }

    /// Sends these credentials to the token server (push scope) or as Basic auth.
    pub fn with_credentials(mut self, user: &str, password: &str) -> Pusher {
        self.credentials = Some((user.to_owned(), password.to_owned()));
        self
    }

    /// Uploads `blob` to `repo` (POST + monolithic PUT) unless the registry already has it.
    pub async fn push_blob(&self, repo: &str, blob: &Blob) {
        let blob_url = self.url(&format!("/v2/{repo}/blobs/{}", blob.digest));
        if self
            .send(repo, Method::HEAD, blob_url, |r| r)
            .await
            .status()
            == StatusCode::OK
        {
            return;
        }
        let start = self
            .send(
                repo,
                Method::POST,
                self.url(&format!("/v2/{repo}/blobs/uploads/")),
                |r| r,
            )
            .await;
        assert_eq!(
            start.status(),
            StatusCode::ACCEPTED,
            "starting upload of {} to {repo}",
            blob.digest
        );
        let location = start
            .headers()
            .get(header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .expect("upload Location");
        // Location may be relative; it usually already carries a query (`_state=…`).
        let mut put_url = self.base.join(location).expect("resolve upload Location");
        put_url
            .query_pairs_mut()
            .append_pair("digest", &blob.digest);
        let data = blob.data.clone();
        let done = self
            .send(repo, Method::PUT, put_url, move |r| {
                r.header(header::CONTENT_TYPE, "application/octet-stream")
                    .body(data.clone())
            })
            .await;
        let status = done.status();
        assert_eq!(
            status,
            StatusCode::CREATED,
            "finishing upload of {} to {repo}: {}",
            blob.digest,
            text(done).await
        );
    }

    /// PUTs `manifest` as `repo:reference` (a tag or its digest); returns Docker-Content-Digest.
    pub async fn push_manifest(&self, repo: &str, reference: &str, manifest: &Manifest) -> String {
        let bytes = manifest.bytes.clone();
        let media_type = manifest.media_type.clone();
        let resp = self
            .send(
                repo,
                Method::PUT,
                self.url(&format!("/v2/{repo}/manifests/{reference}")),
                move |r| {
                    r.header(header::CONTENT_TYPE, media_type.as_str())
                        .body(bytes.clone())
                },
            )
            .await;
        let status = resp.status();
        let digest = resp
            .headers()
            .get("docker-content-digest")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        assert_eq!(
            status,
            StatusCode::CREATED,
            "pushing manifest {repo}:{reference}: {}",
            text(resp).await
        );
        digest.expect("Docker-Content-Digest on manifest PUT")
    }

    /// Pushes all blobs of `image`, then its manifest as `repo:tag`; returns the manifest digest.
    pub async fn push_image(&self, repo: &str, tag: &str, image: &Image) -> String {
        for blob in image.blobs() {
            self.push_blob(repo, blob).await;
        }
        self.push_manifest(repo, tag, &image.manifest).await
    }

    /// Pushes every platform image by digest, then the index as `repo:tag`.
    pub async fn push_index(&self, repo: &str, tag: &str, index: &Index) -> String {
        for image in &index.images {
            self.push_image(repo, &image.manifest.digest, image).await;
        }
        self.push_manifest(repo, tag, &index.manifest).await
    }

    /// Pushes the layers and the signed manifest of a schema1 image as `repo:tag`.
    pub async fn push_schema1(&self, repo: &str, tag: &str, image: &Schema1) -> String {
        for blob in &image.layers {
            self.push_blob(repo, blob).await;
        }
        self.push_manifest(repo, tag, &image.manifest).await
    }

    /// GETs manifest `repo:reference` with the given Accept header.
    pub async fn get_manifest(&self, repo: &str, reference: &str, accept: &str) -> Fetched {
        let accept = accept.to_owned();
        let url = self.url(&format!("/v2/{repo}/manifests/{reference}"));
        fetched(
            self.send(repo, Method::GET, url, move |r| {
                r.header(header::ACCEPT, accept.as_str())
            })
            .await,
        )
        .await
    }

    /// GETs blob `digest` from `repo`.
    pub async fn get_blob(&self, repo: &str, digest: &str) -> Fetched {
        fetched(
            self.send(
                repo,
                Method::GET,
                self.url(&format!("/v2/{repo}/blobs/{digest}")),
                |r| r,
            )
            .await,
        )
        .await
    }

    fn url(&self, path: &str) -> Url {
        self.base.join(path).expect("registry URL")
    }

    /// Sends a request, answering a 401 challenge once (Bearer via the token server, or Basic).
    async fn send(
        &self,
        repo: &str,
        method: Method,
        url: Url,
        build: impl Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    ) -> reqwest::Response {
        let cached = self
            .tokens
            .lock()
            .expect("token cache lock")
            .get(repo)
            .cloned();
        let request = |auth: Option<String>| {
            let mut r = build(self.client.request(method.clone(), url.clone()));
            if let Some(auth) = auth {
                r = r.header(header::AUTHORIZATION, auth);
            }
            r
        };
        let resp = request(cached.map(|t| format!("Bearer {t}")))
            .send()
            .await
            .expect("registry request");
        if resp.status() != StatusCode::UNAUTHORIZED {
            return resp;
        }
        let challenge = resp
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        let auth = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let token = self.fetch_token(repo, challenge).await;
            self.tokens
                .lock()
                .expect("token cache lock")
                .insert(repo.to_owned(), token.clone());
            format!("Bearer {token}")
        } else {
            let (user, pass) = self
                .credentials
                .clone()
                .expect("registry wants Basic auth but Pusher has no credentials");
            format!("Basic {}", b64std(format!("{user}:{pass}").as_bytes()))
        };
        request(Some(auth))
            .send()
            .await
            .expect("registry request (authenticated)")
    }

    async fn fetch_token(&self, repo: &str, challenge: &str) -> String {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").expect("Bearer challenge without realm");
        let actions = if self.credentials.is_some() {
            "pull,push"
        } else {
            "pull"
        };
        let mut url = Url::parse(realm).expect("token realm URL");
        if let Some(service) = params.get("service") {
            url.query_pairs_mut().append_pair("service", service);
        }
        url.query_pairs_mut()
            .append_pair("scope", &format!("repository:{repo}:{actions}"));
        let mut req = self.client.get(url);
        if let Some((user, pass)) = &self.credentials {
            req = req.basic_auth(user, Some(pass));
        }
        let resp = req.send().await.expect("token request");
        let status = resp.status();
        let body = resp.bytes().await.expect("token response body");
        assert!(
            status.is_success(),
            "token server answered {status}: {}",
            String::from_utf8_lossy(&body)
        );
        let json: Value = serde_json::from_slice(&body).expect("token response is JSON");
        json.get("token")
            .or_else(|| json.get("access_token"))
            .and_then(Value::as_str)
            .expect("token in response")
            .to_owned()
    }
}

/// Parses `Bearer realm="…",service="…",scope="…"` (quoted values may contain commas).
pub fn parse_challenge(challenge: &str) -> HashMap<String, String> {
    let params = challenge.split_once(' ').map(|(_, p)| p).unwrap_or("");
    let mut out = HashMap::new();
    let mut rest = params.trim();
    while let Some((key, after)) = rest.split_once('=') {
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            quoted.split_once('"').unwrap_or((quoted, ""))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        out.insert(key, value.to_owned());
        rest = next.trim_start_matches(',').trim();
    }
    out
}

async fn fetched(resp: reqwest::Response) -> Fetched {
    let header_str = |name: &str| {
        resp.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (status, content_type, digest) = (
        resp.status().as_u16(),
        header_str("content-type"),
        header_str("docker-content-digest"),
    );
    let headers = resp.headers().clone();
    let body = resp.bytes().await.expect("read response body");
    Fetched {
        status,
        content_type,
        digest,
        headers,
        body,
    }
}

async fn text(resp: reqwest::Response) -> String {
    resp.text()
        .await
        .unwrap_or_else(|e| format!("<unreadable body: {e}>"))
}
