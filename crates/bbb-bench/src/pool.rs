//! The load generator: a few client threads, each with its own actix system, holding a share
//! of the sessions. Spreading sessions over threads keeps the generator from being the
//! bottleneck; each thread measures its own CPU time so the report says what it cost.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use tokio::sync::{mpsc, oneshot};

use super::conn::{self, Command};
use super::stats::Tally;
use super::sys;

/// One request of a scenario: `["ping", id]` or `[action, id, payload]`. The payload is
/// serialised once and shared, so a request costs the generator the same small `format!` as a
/// ping: what is measured is the gateway, not JSON building in the client.
#[derive(Debug, Clone)]
pub enum Op {
    Ping,
    Request {
        action: &'static str,
        /// The payload as JSON text.
        payload: Arc<str>,
        /// Open the `url` of a successful answer as a browser would (a join URL: BBB then
        /// counts the participant), after the request's latency was taken.
        follow: bool,
    },
    /// Wait this long before the next operation (pacing; nothing is sent or counted).
    Pause(Duration),
}

impl Op {
    /// A request with `payload` (serialised here, once).
    pub fn request(action: &'static str, payload: &serde_json::Value) -> Op {
        Op::Request {
            action,
            payload: payload.to_string().into(),
            follow: false,
        }
    }

    /// A request whose answer's `url` is then opened, like a user following a join URL.
    pub fn request_and_follow(action: &'static str, payload: &serde_json::Value) -> Op {
        Op::Request {
            action,
            payload: payload.to_string().into(),
            follow: true,
        }
    }

    fn frame(&self, id: u64) -> String {
        match self {
            Op::Ping | Op::Pause(_) => format!("[\"ping\",{id}]"),
            Op::Request {
                action, payload, ..
            } => format!("[\"{action}\",{id},{payload}]"),
        }
    }

    fn follows(&self) -> bool {
        matches!(self, Op::Request { follow: true, .. })
    }
}

/// The `url` of a `["success", id, {"url": …}]` answer.
fn answer_url(text: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(text).ok()?;
    v.get(2)?.get("url")?.as_str().map(str::to_string)
}

/// Opens a join URL like a browser's first request (no redirect followed): BBB counts the
/// participant when it answers. Returns an error code when it did not.
async fn follow(client: &awc::Client, url: &str) -> Result<(), String> {
    let resp = client
        .get(url)
        .send()
        .await
        .map_err(|e| format!("follow: {e}"))?;
    if resp.status().is_success() || resp.status().is_redirection() {
        Ok(())
    } else {
        Err(format!("follow: HTTP {}", resp.status().as_u16()))
    }
}

/// What session `s` sends as its `n`-th request; `None` ends that session's share.
pub type Script = Arc<dyn Fn(usize, usize) -> Option<Op> + Send + Sync>;

/// A session to open: its global index, URL, and token (none: stay unauthenticated).
#[derive(Debug, Clone)]
pub struct SessionSpec {
    pub index: usize,
    pub url: String,
    pub token: Option<String>,
}

enum Job {
    Connect {
        sessions: Vec<SessionSpec>,
        concurrency: usize,
        reply: oneshot::Sender<Tally>,
    },
    Run {
        script: Script,
        start_at: Instant,
        reply: oneshot::Sender<Tally>,
    },
    CloseAll {
        reply: oneshot::Sender<()>,
    },
}

struct Worker {
    jobs: mpsc::UnboundedSender<Job>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The client threads and the sessions they hold.
pub struct ClientPool {
    workers: Vec<Worker>,
    sessions: usize,
}

/// A connected session inside a client thread.
struct Held {
    index: usize,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

impl ClientPool {
    /// Starts `threads` client threads (at least one).
    pub fn new(threads: usize) -> std::io::Result<ClientPool> {
        let mut workers = Vec::new();
        for i in 0..threads.max(1) {
            let (tx, rx) = mpsc::unbounded_channel();
            let thread = std::thread::Builder::new()
                .name(format!("bench-client-{i}"))
                .spawn(move || {
                    let system = actix_web::rt::System::new();
                    system.block_on(worker_loop(rx));
                })?;
            workers.push(Worker {
                jobs: tx,
                thread: Some(thread),
            });
        }
        Ok(ClientPool {
            workers,
            sessions: 0,
        })
    }

    /// Sessions currently held.
    pub fn sessions(&self) -> usize {
        self.sessions
    }

    /// Opens (and authenticates) `sessions`, spread round-robin over the threads with at
    /// most `concurrency` handshakes in flight per thread. The tally's latencies are the
    /// connect+authenticate times; failed sessions are counted as errors and not held.
    pub async fn connect(&mut self, sessions: Vec<SessionSpec>, concurrency: usize) -> Tally {
        let n = self.workers.len();
        let mut shares: Vec<Vec<SessionSpec>> = vec![Vec::new(); n];
        for s in sessions {
            shares[s.index % n].push(s);
        }
        let mut waits = Vec::new();
        for (w, share) in self.workers.iter().zip(shares) {
            let (tx, rx) = oneshot::channel();
            let job = Job::Connect {
                sessions: share,
                concurrency,
                reply: tx,
            };
            if w.jobs.send(job).is_ok() {
                waits.push(rx);
            }
        }
        let tally = gather(waits).await;
        self.sessions += tally.latencies_us.len();
        tally
    }

    /// Runs `script` on every held session, all starting at the same instant, each session
    /// sending its next request when the previous one was answered (closed loop).
    pub async fn run(&self, script: Script) -> Tally {
        let start_at = Instant::now() + Duration::from_millis(20);
        let mut waits = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            let job = Job::Run {
                script: script.clone(),
                start_at,
                reply: tx,
            };
            if w.jobs.send(job).is_ok() {
                waits.push(rx);
            }
        }
        gather(waits).await
    }

    /// Closes every held session and waits until their sockets are closed.
    pub async fn close_all(&mut self) {
        let mut waits = Vec::new();
        for w in &self.workers {
            let (tx, rx) = oneshot::channel();
            if w.jobs.send(Job::CloseAll { reply: tx }).is_ok() {
                waits.push(rx);
            }
        }
        for w in waits {
            let _ = w.await;
        }
        self.sessions = 0;
    }
}

impl Drop for ClientPool {
    fn drop(&mut self) {
        for w in &mut self.workers {
            // Closing the job channel ends the thread's loop; its sessions are dropped.
            let (tx, _) = mpsc::unbounded_channel();
            drop(std::mem::replace(&mut w.jobs, tx));
            if let Some(t) = w.thread.take() {
                let _ = t.join();
            }
        }
    }
}

async fn gather(waits: Vec<oneshot::Receiver<Tally>>) -> Tally {
    let mut total = Tally::default();
    for w in waits {
        match w.await {
            Ok(t) => total.merge(t),
            Err(_) => total.error("client thread died"),
        }
    }
    total
}

async fn worker_loop(mut jobs: mpsc::UnboundedReceiver<Job>) {
    // No pool limit: every WebSocket keeps its connection for its whole life.
    let client = awc::Client::builder()
        .connector(awc::Connector::new().limit(0))
        .timeout(conn::REPLY_TIMEOUT)
        .finish();
    // For opening join URLs: one request each, redirects left alone.
    let browser = awc::Client::builder()
        .disable_redirects()
        .timeout(conn::REPLY_TIMEOUT)
        .finish();
    let mut held: Vec<Held> = Vec::new();
    while let Some(job) = jobs.recv().await {
        match job {
            Job::Connect {
                sessions,
                concurrency,
                reply,
            } => {
                let cpu = sys::thread_cpu();
                let mut tally = Tally::default();
                let opened: Vec<_> = stream::iter(sessions)
                    .map(|s| {
                        let client = &client;
                        async move {
                            let t = Instant::now();
                            let r = conn::open(client, &s.url, s.token.as_deref()).await;
                            (s.index, t.elapsed(), r)
                        }
                    })
                    .buffer_unordered(concurrency.max(1))
                    .collect()
                    .await;
                for (index, took, r) in opened {
                    match r {
                        Ok(framed) => {
                            let (tx, rx) = mpsc::unbounded_channel();
                            let task = actix_web::rt::spawn(conn::run(framed, rx));
                            held.push(Held {
                                index,
                                commands: tx,
                                task,
                            });
                            tally.ok(took);
                        }
                        Err(code) => tally.error(code),
                    }
                }
                tally.client_cpu = sys::thread_cpu().saturating_sub(cpu);
                let _ = reply.send(tally);
            }
            Job::Run {
                script,
                start_at,
                reply,
            } => {
                tokio::time::sleep_until(start_at.into()).await;
                let cpu = sys::thread_cpu();
                let runs = held.iter().map(|h| {
                    let script = script.clone();
                    let browser = &browser;
                    async move {
                        let mut tally = Tally::default();
                        let mut n = 0usize;
                        while let Some(op) = script(h.index, n) {
                            n += 1;
                            if let Op::Pause(d) = op {
                                tokio::time::sleep(d).await;
                                continue;
                            }
                            let (tx, rx) = oneshot::channel();
                            let text = op.frame(n as u64 - 1);
                            let keep_text = op.follows();
                            let cmd = Command {
                                text,
                                keep_text,
                                reply: tx,
                            };
                            if h.commands.send(cmd).is_err() {
                                tally.error("closed");
                                break;
                            }
                            match rx.await {
                                Ok(Ok((latency, answer))) => {
                                    tally.ok(latency);
                                    if let Some(url) = answer.as_deref().and_then(answer_url) {
                                        if let Err(code) = follow(browser, &url).await {
                                            tally.error(code);
                                        }
                                    }
                                }
                                Ok(Err(code)) => tally.error(code),
                                Err(_) => tally.error("closed"),
                            }
                        }
                        tally
                    }
                });
                let mut tally = Tally::default();
                for t in futures_util::future::join_all(runs).await {
                    tally.merge(t);
                }
                tally.client_cpu = sys::thread_cpu().saturating_sub(cpu);
                let _ = reply.send(tally);
            }
            Job::CloseAll { reply } => {
                let tasks: Vec<_> = held
                    .drain(..)
                    .map(|h| {
                        drop(h.commands);
                        h.task
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
                let _ = reply.send(());
            }
        }
    }
}
