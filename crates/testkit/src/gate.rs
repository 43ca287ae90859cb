//! [`TcpGate`]: a TCP forwarder to a real server whose client-to-server direction can be held —
//! what a client sends waits in the gate until it is released. A server that stalls for one
//! client only, so a test can hold one step of an interleaving (a publish, a reply) while the
//! rest goes on, and see what waits for it.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A forwarder from a local port to `upstream`; dropped, it stops accepting and forwarding.
pub struct TcpGate {
    /// Where clients connect.
    pub addr: SocketAddr,
    held: watch::Sender<bool>,
    accept: JoinHandle<()>,
}

impl TcpGate {
    /// A gate to `upstream` (`host:port`), open.
    ///
    /// # Panics
    /// When no local port can be bound.
    pub async fn to(upstream: &str) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind a local port");
        let addr = listener.local_addr().expect("the gate's address");
        let (held, _) = watch::channel(false);
        let (upstream, gate) = (upstream.to_owned(), held.subscribe());
        let accept = tokio::spawn(async move {
            let mut links = tokio::task::JoinSet::new();
            loop {
                // A failed accept (out of descriptors, say) refuses that client, not the others.
                if let Ok((client, _)) = listener.accept().await {
                    links.spawn(link(client, upstream.clone(), gate.clone()));
                }
                while links.try_join_next().is_some() {}
            }
        });
        Self { addr, held, accept }
    }

    /// A gate to the server of `url` (`scheme://[user@]host:port[/path]`), and `url` through the
    /// gate (scheme, user and path kept).
    ///
    /// # Panics
    /// When `url` has no `scheme://host:port`.
    pub async fn for_url(url: &str) -> (Self, String) {
        let (scheme, rest) = url.split_once("://").expect("a URL with a scheme");
        let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let (user, host) = authority.rsplit_once('@').map_or(("", authority), |(u, h)| (u, h));
        let gate = Self::to(host).await;
        let at = if user.is_empty() { String::new() } else { format!("{user}@") };
        let through = format!("{scheme}://{at}{}{path}", gate.addr);
        (gate, through)
    }

    /// Holds (`true`) or releases what clients send. Bytes already on their way to the server
    /// when the gate is held still arrive.
    pub fn hold(&self, held: bool) {
        self.held.send_replace(held);
    }
}

impl Drop for TcpGate {
    fn drop(&mut self) {
        // The accept task owns the links: aborting it drops them and closes their sockets.
        self.accept.abort();
    }
}

/// Forwards one connection both ways; what the client sends waits while the gate is held.
async fn link(client: TcpStream, upstream: String, mut held: watch::Receiver<bool>) {
    let Ok(server) = TcpStream::connect(&upstream).await else { return };
    let _ = (client.set_nodelay(true), server.set_nodelay(true));
    let (mut from_client, mut to_client) = client.into_split();
    let (mut from_server, mut to_server) = server.into_split();
    let up = async move {
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            let n = match from_client.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            if held.wait_for(|held| !*held).await.is_err() || to_server.write_all(&buf[..n]).await.is_err() {
                break;
            }
        }
    };
    let down = async move {
        let _ = tokio::io::copy(&mut from_server, &mut to_client).await;
    };
    tokio::join!(up, down);
}
