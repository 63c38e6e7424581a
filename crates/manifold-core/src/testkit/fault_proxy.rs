//! A TCP proxy in front of a real server that can take the server "down" and bring it back.
//!
//! Tests use it where the real server keeps its data only in memory, so restarting the process
//! would lose what was already stored and prove nothing about the destination. Going down closes
//! every open connection at once (in-flight requests see a reset, as when a server process dies)
//! and refuses new connections until [`FaultProxy::up`]; the server behind keeps its data.
//!
//! ```ignore
//! let proxy = FaultProxy::start("127.0.0.1:4566").await;
//! let dest = build_destination(&proxy.url("http"));
//! proxy.down();            // mid-batch: connections reset, new ones refused
//! proxy.up().await;        // the "restarted" server accepts again
//! ```

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Mutex, watch};
use tokio::task::JoinHandle;

/// See the module docs.
pub struct FaultProxy {
    addr: SocketAddr,
    target: String,
    /// Bumped on every `down()`; connections opened under an older generation are closed.
    generation: watch::Sender<u64>,
    accept: Mutex<Option<JoinHandle<()>>>,
    connections: Arc<AtomicU64>,
}

impl FaultProxy {
    /// Listen on a free loopback port and forward every connection to `target` (`host:port`).
    pub async fn start(target: &str) -> Arc<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("fault proxy: bind a loopback port");
        let addr = listener.local_addr().expect("fault proxy: local addr");
        let (generation, _) = watch::channel(0u64);
        let proxy = Arc::new(FaultProxy {
            addr,
            target: target.to_string(),
            generation,
            accept: Mutex::new(None),
            connections: Arc::new(AtomicU64::new(0)),
        });
        *proxy.accept.lock().await = Some(proxy.spawn_accept(listener));
        proxy
    }

    /// `host:port` clients should connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `scheme://127.0.0.1:port`.
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    /// Connections accepted so far (to assert a test really went through the proxy).
    pub fn connections(&self) -> u64 {
        self.connections.load(Ordering::Relaxed)
    }

    /// The server goes away: every open connection is closed and the port refuses connections.
    pub async fn down(&self) {
        if let Some(task) = self.accept.lock().await.take() {
            task.abort();
            let _ = task.await;
        }
        self.generation.send_modify(|g| *g += 1);
    }

    /// The server is back on the same port.
    pub async fn up(&self) {
        let mut accept = self.accept.lock().await;
        if accept.is_some() {
            return;
        }
        // The port was released when the listener dropped; take it again (retry briefly in case
        // the kernel has not let go of it yet).
        let mut tries = 0;
        let listener = loop {
            match TcpListener::bind(self.addr).await {
                Ok(l) => break l,
                Err(e) if tries < 50 => {
                    tries += 1;
                    tracing::debug!(error = %e, "fault proxy: rebinding");
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => panic!("fault proxy: cannot rebind {}: {e}", self.addr),
            }
        };
        *accept = Some(self.spawn_accept(listener));
    }

    fn spawn_accept(&self, listener: TcpListener) -> JoinHandle<()> {
        let target = self.target.clone();
        let generation = self.generation.clone();
        let connections = self.connections.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                connections.fetch_add(1, Ordering::Relaxed);
                let target = target.clone();
                let mut gen_rx = generation.subscribe();
                let born = *gen_rx.borrow();
                tokio::spawn(async move {
                    let Ok(server) = TcpStream::connect(&target).await else {
                        return; // the real server is down: the client sees the connection close
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    let (mut client, mut server) = (client, server);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = gen_rx.wait_for(|g| *g != born) => {
                            // Reset rather than a clean FIN, like a killed process.
                            let _ = client.set_zero_linger();
                        }
                    }
                });
            }
        })
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        if let Ok(mut accept) = self.accept.try_lock()
            && let Some(task) = accept.take()
        {
            task.abort();
        }
    }
}
