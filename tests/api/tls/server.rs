//! A TLS ATRIP of our own: certificates from throwaway CAs made with the `openssl` command,
//! and a tokio-rustls server on 127.0.0.1:0 that completes or breaks the exchange where a test
//! says, directly or as an inspecting proxy (it answers `CONNECT` and then terminates TLS
//! itself, as a company's egress proxy does).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::TlsAcceptor;

/// The names every server certificate is for.
pub const SERVER_NAMES: &str = "DNS:atrip.test,DNS:localhost,IP:127.0.0.1";

/// Two CAs in a temporary directory, removed when dropped: `company` (the one a test puts in
/// `atrip.ca_file`) and `stranger` (one nobody trusts), each with a server certificate for
/// [`SERVER_NAMES`].
pub struct Pki {
    dir: PathBuf,
}

impl Pki {
    pub fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!(
            "tt-tls-{}-{:016x}",
            std::process::id(),
            rand::random::<u64>()
        ));
        std::fs::create_dir(&dir).unwrap();
        let pki = Pki { dir };
        for ca in ["company", "stranger"] {
            pki.make_ca_and_server(ca);
        }
        pki
    }

    /// The CA's certificate (PEM), for `atrip.ca_file`.
    pub fn ca_file(&self, ca: &str) -> String {
        self.path(&format!("{ca}-ca.pem")).display().to_string()
    }

    /// The server certificate `ca` signed, and its key.
    pub fn server(&self, ca: &str) -> (PathBuf, PathBuf) {
        (
            self.path(&format!("{ca}-server.pem")),
            self.path(&format!("{ca}-server.key")),
        )
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn make_ca_and_server(&self, ca: &str) {
        let p = |suffix: &str| self.path(&format!("{ca}-{suffix}")).display().to_string();
        let ext = p("server.ext");
        std::fs::write(
            &ext,
            format!(
                "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\nsubjectAltName={SERVER_NAMES}\n"
            ),
        )
        .unwrap();
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"];
        openssl(
            &[
                &["req", "-x509", "-nodes", "-days", "2"][..],
                &ec,
                &["-keyout", &p("ca.key"), "-out", &p("ca.pem")],
                &["-subj", &format!("/O=Test/CN=Test {ca} CA")],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req", "-nodes"][..],
                &ec,
                &["-keyout", &p("server.key"), "-out", &p("server.csr")],
                &["-subj", "/O=Test/CN=atrip.test"],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            &p("server.csr"),
            "-CA",
            &p("ca.pem"),
            "-CAkey",
            &p("ca.key"),
            "-set_serial",
            &rand::random::<u32>().to_string(),
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &p("server.pem"),
        ]);
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn openssl(args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("the openssl command runs");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What the server does with each connection.
#[derive(Clone, Debug)]
pub enum Behaviour {
    /// Completes the handshake and answers every request with 200 and this JSON body.
    Answer(String),
    /// Reads the client's hello and closes the connection: the handshake never completes.
    AbortHandshake,
    /// Completes the handshake and closes at once, reading nothing: with TLS's close_notify
    /// first, or with the TCP connection alone.
    CloseAfterHandshake { notify: bool },
    /// Reads the request, sends these bytes (part of an answer) and closes.
    Half(&'static str),
}

/// What the server saw.
#[derive(Default)]
pub struct Seen {
    pub connections: AtomicUsize,
    /// Handshakes the server completed.
    pub handshakes: AtomicUsize,
    /// Requests read whole (head and body).
    pub requests: AtomicUsize,
}

impl Seen {
    pub fn handshakes(&self) -> usize {
        self.handshakes.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

pub struct TlsAtrip {
    pub addr: SocketAddr,
    pub seen: Arc<Seen>,
}

impl TlsAtrip {
    /// A server presenting `cert` (with `key`).
    pub async fn start(cert: &Path, key: &Path, behaviour: Behaviour) -> TlsAtrip {
        Self::listen(cert, key, behaviour, false).await
    }

    /// The same as an inspecting proxy: each connection starts with `CONNECT host:port`,
    /// answered 200, then TLS with `cert` as if it were the host.
    pub async fn inspecting_proxy(cert: &Path, key: &Path, behaviour: Behaviour) -> TlsAtrip {
        Self::listen(cert, key, behaviour, true).await
    }

    async fn listen(cert: &Path, key: &Path, behaviour: Behaviour, proxy: bool) -> TlsAtrip {
        let acceptor = acceptor(cert, key);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Seen::default());
        let state = Arc::clone(&seen);
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                state.connections.fetch_add(1, Ordering::SeqCst);
                let (acceptor, behaviour, state) =
                    (acceptor.clone(), behaviour.clone(), Arc::clone(&state));
                tokio::spawn(async move {
                    serve(socket, acceptor, behaviour, proxy, &state).await;
                });
            }
        });
        TlsAtrip { addr, seen }
    }

    /// `https://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    /// `http://127.0.0.1:PORT`, for `atrip.proxy`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

fn acceptor(cert: &Path, key: &Path) -> TlsAcceptor {
    let chain = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(key).unwrap();
    let provider = Arc::new(tokio_rustls::rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    TlsAcceptor::from(Arc::new(config))
}

async fn serve(
    mut socket: TcpStream,
    acceptor: TlsAcceptor,
    behaviour: Behaviour,
    proxy: bool,
    seen: &Seen,
) {
    let mut buffered = Vec::new();
    if proxy {
        let Some(connect) = read_head(&mut socket, &mut buffered).await else {
            return;
        };
        assert!(connect.starts_with(b"CONNECT "), "a proxy is asked CONNECT");
        if socket
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
    }
    if let Behaviour::AbortHandshake = behaviour {
        let _ = socket.read(&mut [0u8; 4096]).await;
        return;
    }
    let Ok(mut tls) = acceptor.accept(socket).await else {
        return;
    };
    seen.handshakes.fetch_add(1, Ordering::SeqCst);
    let mut buffered = Vec::new();
    match behaviour {
        Behaviour::AbortHandshake => unreachable!("handled before the handshake"),
        Behaviour::CloseAfterHandshake { notify } => {
            if notify {
                let _ = tls.shutdown().await;
            }
        }
        Behaviour::Half(bytes) => {
            if read_request(&mut tls, &mut buffered).await.is_some() {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                let _ = tls.write_all(bytes.as_bytes()).await;
                let _ = tls.flush().await;
            }
        }
        Behaviour::Answer(body) => {
            while read_request(&mut tls, &mut buffered).await.is_some() {
                seen.requests.fetch_add(1, Ordering::SeqCst);
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                    body.len()
                );
                if tls.write_all(answer.as_bytes()).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Reads up to the end of a head (`\r\n\r\n`); the head, without what follows it (which stays
/// in `data`). `None` when the peer closed first.
async fn read_head(socket: &mut (impl AsyncRead + Unpin), data: &mut Vec<u8>) -> Option<Vec<u8>> {
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let rest = data.split_off(end + 4);
            return Some(std::mem::replace(data, rest));
        }
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
}

/// Reads one request, head and `Content-Length` body.
async fn read_request(socket: &mut (impl AsyncRead + Unpin), data: &mut Vec<u8>) -> Option<()> {
    let head = read_head(socket, data).await?;
    let length = String::from_utf8_lossy(&head)
        .to_lowercase()
        .lines()
        .find_map(|l| {
            l.strip_prefix("content-length:")
                .map(|v| v.trim().to_owned())
        })
        .map_or(0, |v| v.parse::<usize>().unwrap_or(0));
    let mut chunk = [0u8; 4096];
    while data.len() < length {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        data.extend_from_slice(&chunk[..n]);
    }
    data.drain(..length);
    Some(())
}
