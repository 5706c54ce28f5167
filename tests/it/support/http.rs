//! A tiny HTTP/1.1 server for tests (token server, fake upstreams). Requests are parsed by hand so a
//! raw handler can take over the socket after the head and misbehave (truncate, stall, reset).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::{JoinHandle, JoinSet};

/// Largest request head accepted; anything bigger is a bug in the client under test.
const MAX_HEAD: usize = 64 * 1024;

/// One parsed HTTP request (Content-Length body already read).
#[derive(Debug, Clone)]
pub struct Request {
    /// Method as sent, e.g. `GET`.
    pub method: String,
    /// Request target as sent: path plus optional `?query`.
    pub target: String,
    /// Header name/value pairs in order; names keep their case, look-ups ignore it.
    pub headers: Vec<(String, String)>,
    /// Body bytes (empty without Content-Length).
    pub body: Bytes,
    /// The client's address.
    pub peer: SocketAddr,
}

impl Request {
    /// The target without its query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    /// First header value named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First percent-decoded query parameter named `name`.
    pub fn query(&self, name: &str) -> Option<String> {
        self.query_all(name).into_iter().next()
    }

    /// All percent-decoded values of query parameter `name`, in order.
    pub fn query_all(&self, name: &str) -> Vec<String> {
        let query = self.target.split_once('?').map(|(_, q)| q).unwrap_or("");
        form_values(query, name)
    }

    /// Whether this is a HEAD request (the server then sends headers only).
    pub fn is_head(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }

    /// False when the client asked to close the connection after this request (`Connection:
    /// close`, or HTTP/1.0 without keep-alive: the parser normalises both to the header).
    pub fn keep_alive(&self) -> bool {
        !self
            .header("connection")
            .is_some_and(|c| c.eq_ignore_ascii_case("close"))
    }
}

/// Values of `name` in an `application/x-www-form-urlencoded` string (query strings, POST forms).
pub fn form_values(form: &str, name: &str) -> Vec<String> {
    form.split('&')
        .filter_map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode_component(k) == name).then(|| decode_component(v))
        })
        .collect()
}

fn decode_component(s: &str) -> String {
    let plus_as_space = s.replace('+', " ");
    percent_encoding::percent_decode_str(&plus_as_space)
        .decode_utf8_lossy()
        .into_owned()
}

/// A response for [`TestServer`]; `Content-Length` is added from the body unless set explicitly.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers in order.
    pub headers: Vec<(String, String)>,
    /// Body (not sent for HEAD requests, but still sized in Content-Length).
    pub body: Bytes,
}

impl Response {
    /// An empty response with `status`.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Bytes::new(),
        }
    }

    /// A JSON response.
    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response::new(status)
            .header("Content-Type", "application/json")
            .body(value.to_string())
    }

    /// A plain-text response.
    pub fn text(status: u16, text: &str) -> Response {
        Response::new(status)
            .header("Content-Type", "text/plain")
            .body(text.to_owned())
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Sets the body.
    pub fn body(mut self, body: impl Into<Bytes>) -> Response {
        self.body = body.into();
        self
    }

    /// Status line and headers, ending with the blank line (what a raw handler writes before a
    /// deliberately broken body).
    pub fn head_bytes(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        let has_length = self
            .headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-length"));
        // 1xx/204/304 must not carry a body length.
        if !has_length && !matches!(self.status, 100..=199 | 204 | 304) {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// Writes the whole response (body skipped when `head_only`).
    pub async fn write_to(&self, stream: &mut TcpStream, head_only: bool) -> std::io::Result<()> {
        stream.write_all(&self.head_bytes()).await?;
        if !head_only {
            stream.write_all(&self.body).await?;
        }
        stream.flush().await
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        206 => "Partial Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        307 => "Temporary Redirect",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        416 => "Range Not Satisfiable",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;
/// A raw handler owns the socket for one request and hands it back to keep the connection alive.
type RawHandler = Arc<dyn Fn(Request, TcpStream) -> BoxFuture<Option<TcpStream>> + Send + Sync>;

/// A running test server on 127.0.0.1; stops (and drops open connections) on drop.
pub struct TestServer {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<(String, String)>>>,
    accept_task: JoinHandle<()>,
}

impl TestServer {
    /// Serves each request with a synchronous handler.
    pub async fn start<F>(handler: F) -> TestServer
    where
        F: Fn(Request) -> Response + Send + Sync + 'static,
    {
        let handler = Arc::new(handler);
        TestServer::start_async(move |req| {
            let handler = handler.clone();
            async move { handler(req) }
        })
        .await
    }

    /// Serves each request with an async handler (e.g. to delay answers).
    pub async fn start_async<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Response> + Send + 'static,
    {
        let handler = Arc::new(handler);
        TestServer::start_raw(move |req, mut stream| {
            let handler = handler.clone();
            async move {
                let head_only = req.is_head();
                let close = !req.keep_alive();
                let mut resp = handler(req).await;
                if close {
                    resp = resp.header("Connection", "close");
                }
                resp.write_to(&mut stream, head_only).await.ok()?;
                (!close).then_some(stream)
            }
        })
        .await
    }

    /// Gives the handler the socket right after the request (head + Content-Length body) was read.
    /// Return `Some(stream)` to keep serving the connection, `None` to close (or after a reset).
    pub async fn start_raw<F, Fut>(handler: F) -> TestServer
    where
        F: Fn(Request, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Option<TcpStream>> + Send + 'static,
    {
        let handler: RawHandler = Arc::new(move |req, stream| Box::pin(handler(req, stream)));
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind test server");
        let addr = listener.local_addr().expect("test server local_addr");
        let seen = Arc::new(Mutex::new(Vec::new()));
        let seen_in_task = seen.clone();
        let accept_task = tokio::spawn(async move {
            // Owning the connections here means aborting this task also drops every socket.
            let mut connections = JoinSet::new();
            loop {
                tokio::select! {
                    accepted = listener.accept() => {
                        let Ok((stream, peer)) = accepted else { continue };
                        connections.spawn(serve_connection(stream, peer, handler.clone(), seen_in_task.clone()));
                    }
                    Some(_) = connections.join_next(), if !connections.is_empty() => {}
                }
            }
        });
        TestServer {
            addr,
            seen,
            accept_task,
        }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// (method, target) of every request received so far, in arrival order.
    pub fn requests(&self) -> Vec<(String, String)> {
        self.seen.lock().expect("request log lock").clone()
    }

    /// How many requests with `method` had a target containing `needle`.
    pub fn count(&self, method: &str, needle: &str) -> usize {
        self.seen
            .lock()
            .expect("request log lock")
            .iter()
            .filter(|(m, t)| m.eq_ignore_ascii_case(method) && t.contains(needle))
            .count()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.accept_task.abort();
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    peer: SocketAddr,
    handler: RawHandler,
    seen: Arc<Mutex<Vec<(String, String)>>>,
) {
    // Bytes read past the current request (a pipelined next request) carry over.
    let mut buf = Vec::new();
    loop {
        let req = match read_request(&mut stream, &mut buf, peer).await {
            Ok(Some(req)) => req,
            Ok(None) => return,
            Err(status) => {
                let resp = Response::text(status, "bad request for test server")
                    .header("Connection", "close");
                let _ = resp.write_to(&mut stream, false).await;
                return;
            }
        };
        seen.lock()
            .expect("request log lock")
            .push((req.method.clone(), req.target.clone()));
        match handler(req, stream).await {
            Some(s) => stream = s,
            None => return,
        }
    }
}

/// Reads one request; `Ok(None)` on a clean close between requests, `Err(status)` on garbage.
async fn read_request(
    stream: &mut TcpStream,
    buf: &mut Vec<u8>,
    peer: SocketAddr,
) -> Result<Option<Request>, u16> {
    let head_end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        if buf.len() > MAX_HEAD {
            return Err(431);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) if buf.is_empty() => return Ok(None),
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
    buf.drain(..head_end + 4);

    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(400);
    };
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line.split_once(':').ok_or(400u16)?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    let mut req = Request {
        method: method.to_owned(),
        target: target.to_owned(),
        headers,
        body: Bytes::new(),
        peer,
    };
    if req.header("transfer-encoding").is_some() {
        // Chunked request bodies are not needed by any test client; refuse loudly rather than misparse.
        return Err(501);
    }
    let len: usize = match req.header("content-length") {
        Some(v) => v.parse().map_err(|_| 400u16)?,
        None => 0,
    };
    if len > 0
        && req
            .header("expect")
            .is_some_and(|e| e.eq_ignore_ascii_case("100-continue"))
    {
        stream
            .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
            .await
            .map_err(|_| 400u16)?;
    }
    while buf.len() < len {
        let mut chunk = vec![0u8; (len - buf.len()).min(1 << 20)];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return Err(400),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    req.body = Bytes::from(buf.drain(..len).collect::<Vec<u8>>());
    let connection = req.header("connection").map(str::to_ascii_lowercase);
    let close = match connection.as_deref() {
        Some("close") => true,
        Some("keep-alive") => false,
        _ => version == "HTTP/1.0",
    };
    if close {
        // Normalise so handlers see one signal regardless of HTTP version.
        req.headers
            .retain(|(k, _)| !k.eq_ignore_ascii_case("connection"));
        req.headers
            .push(("Connection".to_owned(), "close".to_owned()));
    }
    Ok(Some(req))
}
