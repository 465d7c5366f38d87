//! [`StdioTransport`]: HTTP/2 (h2c, prior knowledge) over the stdin/stdout
//! of `rclone serve restic --stdio`, the transport restic's rclone backend
//! uses (`golang.org/x/net/http2` with the pipes as its only connection).
//!
//! A tokio runtime inside the transport drives the HTTP/2 connection, the
//! child and its stderr; the blocking [`Transport::send`] of many engine
//! threads each `block_on` their own request, multiplexed as streams on
//! the one connection.

use std::os::unix::process::ExitStatusExt;
use std::process::{ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use h2::client::SendRequest;
use restix_rest::{Method, Reply, Request, Transport, TransportError, CONTENT_TYPE_V2};
use tokio::io::AsyncBufReadExt;
use tokio::runtime::Runtime;
use tokio::sync::{oneshot, watch};

use crate::RcloneError;

/// How long rclone may take to exit once its stdin closed (restic's
/// `waitForExit`) before it is killed.
const WAIT_FOR_EXIT: Duration = Duration::from_secs(5);

/// Receive windows: 4 MiB per stream, 64 MiB for the connection, so
/// downloads of whole packs stream without waiting for window updates.
const STREAM_WINDOW: u32 = 4 << 20;
const CONNECTION_WINDOW: u32 = 64 << 20;

/// The HTTP/2 connection to one rclone child process.
pub struct StdioTransport {
    runtime: Runtime,
    /// Cloned per request; taken on drop to close the connection.
    sender: Mutex<Option<SendRequest<Bytes>>>,
    /// `Some(status text)` once the child has exited.
    exited: watch::Receiver<Option<String>>,
    /// Asks the task that owns the child to kill it.
    kill: Mutex<Option<oneshot::Sender<()>>>,
    program: String,
}

impl std::fmt::Debug for StdioTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StdioTransport")
            .field("program", &self.program)
            .finish_non_exhaustive()
    }
}

/// Why a request failed on the HTTP/2 connection.
enum Failure {
    H2(h2::Error),
    Closed(&'static str),
}

impl StdioTransport {
    /// Start `argv` (program, arguments, remote), open HTTP/2 on its pipes
    /// and wait until it answers a first request (a random file that does
    /// not exist, as restic does), at most `timeout`.
    pub fn start(argv: &[String], timeout: Duration) -> Result<StdioTransport, RcloneError> {
        let Some((program, args)) = argv.split_first() else {
            return Err(RcloneError::InvalidOption(
                "rclone command is empty".to_string(),
            ));
        };
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("restix-rclone")
            .enable_all()
            .build()
            .map_err(RcloneError::Runtime)?;
        let (exit_tx, exited) = watch::channel(None);
        let (kill_tx, kill_rx) = oneshot::channel();
        let sender = runtime.block_on(async {
            let mut child = tokio::process::Command::new(program)
                .args(args)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .kill_on_drop(true)
                // Its own process group: Ctrl-C reaches restix, which then
                // closes the connection and lets rclone finish.
                .process_group(0)
                .spawn()
                .map_err(|e| RcloneError::Start(format!("{program}: {e}")))?;
            let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
                return Err(RcloneError::Start(format!(
                    "{program}: no stdin/stdout pipes"
                )));
            };
            if let Some(stderr) = child.stderr.take() {
                tokio::spawn(async move {
                    let mut lines = tokio::io::BufReader::new(stderr).lines();
                    while let Ok(Some(line)) = lines.next_line().await {
                        eprintln!("rclone: {line}");
                    }
                });
            }
            tokio::spawn(async move {
                let status = tokio::select! {
                    status = child.wait() => status,
                    _ = kill_rx => {
                        let _ = child.start_kill();
                        child.wait().await
                    }
                };
                let text = match status {
                    Ok(status) => describe_exit(status),
                    Err(e) => format!("wait: {e}"),
                };
                let _ = exit_tx.send(Some(text));
            });
            let io = tokio::io::join(stdout, stdin);
            let (sender, connection) = h2::client::Builder::new()
                .initial_window_size(STREAM_WINDOW)
                .initial_connection_window_size(CONNECTION_WINDOW)
                .handshake::<_, Bytes>(io)
                .await
                .map_err(|e| RcloneError::Talk(e.to_string()))?;
            tokio::spawn(async move {
                // Ends when every sender is dropped (or the pipes break);
                // dropping the pipes closes rclone's stdin.
                let _ = connection.await;
            });
            Ok(sender)
        });
        let transport = StdioTransport {
            runtime,
            sender: Mutex::new(None),
            exited,
            kill: Mutex::new(Some(kill_tx)),
            program: program.clone(),
        };
        let sender = match sender {
            Ok(sender) => sender,
            Err(e) => return Err(transport.give_up(e)),
        };
        if let Ok(mut slot) = transport.sender.lock() {
            *slot = Some(sender);
        }
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0)
            ^ u128::from(std::process::id());
        let probe = Request {
            method: Method::Get,
            path: format!("/file-{nonce}"),
            headers: vec![("accept", CONTENT_TYPE_V2.to_string())],
            body: &[],
        };
        let answered = transport.runtime.block_on(async {
            let mut exited = transport.exited.clone();
            tokio::time::timeout(timeout, async {
                tokio::select! {
                    reply = transport.exchange(&probe) => reply.map(|_| ()),
                    status = exited.wait_for(|s| s.is_some()) => Err(match status {
                        Ok(s) => s.clone().unwrap_or_default(),
                        Err(_) => "rclone exited".to_string(),
                    }),
                }
            })
            .await
        });
        match answered {
            Ok(Ok(())) => Ok(transport),
            Ok(Err(why)) => Err(transport.give_up(RcloneError::Talk(why))),
            Err(_elapsed) => Err(transport.give_up(RcloneError::Talk(format!(
                "timeout: no answer within {timeout:?}"
            )))),
        }
    }

    /// Start failed with `error`: when rclone is exiting on its own (bad
    /// remote, bad flag), its exit status is the better message (restic
    /// does the same); otherwise kill it.
    fn give_up(&self, error: RcloneError) -> RcloneError {
        let mut exited = self.exited.clone();
        let status = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), exited.wait_for(|s| s.is_some()))
                .await
                .ok()
                .and_then(|s| s.ok().and_then(|s| s.clone()))
        });
        match (status, error) {
            (Some(status), RcloneError::Talk(_)) => RcloneError::Talk(status),
            (None, error) => {
                self.kill_and_wait();
                error
            }
            (Some(_), error) => error,
        }
    }

    /// The child's exit status text, once it has exited.
    pub fn exit_status(&self) -> Option<String> {
        self.exited.borrow().clone()
    }

    /// Kill the child and wait a moment for it.
    fn kill_and_wait(&self) {
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        if let Some(kill) = self.kill.lock().ok().and_then(|mut k| k.take()) {
            let _ = kill.send(());
        }
        let mut exited = self.exited.clone();
        let _ = self.runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(2), exited.wait_for(|s| s.is_some())).await
        });
    }

    /// One request on the connection; the error text when it failed.
    async fn exchange(&self, request: &Request<'_>) -> Result<Reply, String> {
        self.exchange_h2(request)
            .await
            .map_err(|f| self.describe(f).message)
    }

    async fn exchange_h2(&self, request: &Request<'_>) -> Result<Reply, Failure> {
        let sender = self
            .sender
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .ok_or(Failure::Closed("rclone stdio connection already closed"))?;
        let mut sender = sender.ready().await.map_err(Failure::H2)?;
        let mut builder = http::Request::builder()
            .method(request.method.as_str())
            .uri(format!("http://localhost{}", request.path));
        for (name, value) in &request.headers {
            builder = builder.header(*name, value.as_str());
        }
        if request.method == Method::Post {
            builder = builder.header("content-length", request.body.len().to_string());
        }
        let http_request = builder
            .body(())
            .map_err(|_| Failure::Closed("invalid request"))?;
        let end_of_stream = request.body.is_empty();
        let (response, mut stream) = sender
            .send_request(http_request, end_of_stream)
            .map_err(Failure::H2)?;
        if !end_of_stream {
            send_body(&mut stream, Bytes::copy_from_slice(request.body)).await?;
        }
        let response = response.await.map_err(Failure::H2)?;
        let status = response.status().as_u16();
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_ascii_lowercase(),
                    String::from_utf8_lossy(value.as_bytes()).into_owned(),
                )
            })
            .collect();
        let mut body_stream = response.into_body();
        let mut body = Vec::new();
        // Read to the end of the stream even when the caller needs less:
        // closing early resets the stream and rclone logs an error.
        while let Some(chunk) = body_stream.data().await {
            let chunk = chunk.map_err(Failure::H2)?;
            let _ = body_stream.flow_control().release_capacity(chunk.len());
            body.extend_from_slice(&chunk);
        }
        Ok(Reply {
            status,
            headers,
            body,
        })
    }

    /// A failure as a transport error: a reset stream may work again, a
    /// dead connection or child never does.
    fn describe(&self, failure: Failure) -> TransportError {
        let exit = self.exit_status();
        match failure {
            Failure::H2(e) if e.is_reset() && !e.is_go_away() && exit.is_none() => {
                TransportError::transient(format!("rclone: {e}"))
            }
            Failure::H2(e) => TransportError::permanent(match exit {
                Some(status) => format!("rclone stdio connection closed ({e}); rclone: {status}"),
                None => format!("rclone stdio connection: {e}"),
            }),
            Failure::Closed(why) => TransportError::permanent(match exit {
                Some(status) => format!("{why}; rclone: {status}"),
                None => why.to_string(),
            }),
        }
    }
}

/// Send `data` as the request body, as the server's flow-control window
/// allows.
async fn send_body(stream: &mut h2::SendStream<Bytes>, mut data: Bytes) -> Result<(), Failure> {
    while !data.is_empty() {
        stream.reserve_capacity(data.len());
        let granted = match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
            Some(granted) => granted.map_err(Failure::H2)?,
            None => return Err(Failure::Closed("rclone closed the request stream")),
        };
        if granted == 0 {
            continue;
        }
        let chunk = data.split_to(granted.min(data.len()));
        stream
            .send_data(chunk, data.is_empty())
            .map_err(Failure::H2)?;
    }
    Ok(())
}

/// Go's `ExitError` text: `exit status 1`, `signal: killed`.
fn describe_exit(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    match status.signal() {
        Some(9) => "signal: killed".to_string(),
        Some(15) => "signal: terminated".to_string(),
        Some(2) => "signal: interrupt".to_string(),
        Some(n) => format!("signal: {n}"),
        None => status.to_string(),
    }
}

impl Transport for StdioTransport {
    fn send(&self, request: &Request<'_>) -> Result<Reply, TransportError> {
        self.runtime
            .block_on(self.exchange_h2(request))
            .map_err(|f| self.describe(f))
    }
}

impl Drop for StdioTransport {
    fn drop(&mut self) {
        // Dropping the last sender ends the HTTP/2 connection, which closes
        // rclone's stdin; rclone then exits on its own.
        if let Ok(mut sender) = self.sender.lock() {
            sender.take();
        }
        let mut exited = self.exited.clone();
        let gone = self.runtime.block_on(async {
            tokio::time::timeout(WAIT_FOR_EXIT, exited.wait_for(|s| s.is_some()))
                .await
                .is_ok()
        });
        if !gone {
            self.kill_and_wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_texts() {
        assert_eq!(describe_exit(ExitStatus::from_raw(1 << 8)), "exit status 1");
        assert_eq!(describe_exit(ExitStatus::from_raw(9)), "signal: killed");
    }

    #[test]
    fn a_missing_program_fails_to_start() {
        let argv = vec!["/nonexistent/rclone-restix-test".to_string()];
        let e = StdioTransport::start(&argv, Duration::from_secs(5)).unwrap_err();
        assert!(
            e.to_string().contains("/nonexistent/rclone-restix-test"),
            "{e}"
        );
    }

    #[test]
    fn a_program_that_exits_reports_its_status() {
        let argv = ["sh", "-c", "echo nope >&2; exit 3"].map(String::from);
        let e = StdioTransport::start(&argv, Duration::from_secs(20)).unwrap_err();
        assert_eq!(e.to_string(), "error talking HTTP to rclone: exit status 3");
    }
}
