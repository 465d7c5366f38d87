//! One SFTP session: either over an in-process SSH connection (russh) or
//! over the stdin/stdout of a subprocess (`sftp.command` / `sftp.args`,
//! spec: cli §5.2).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::{BoxFuture, FutureExt, Shared};
use restix_backend::shell_split::split_shell_strings;
use russh::client::{self, AuthResult};
use russh::keys::agent::client::AgentClient;
use russh::keys::agent::AgentIdentity;
use russh::keys::{HashAlg, PrivateKeyWithHashAlg, PublicKeyOrCertificate};
use russh_sftp::client::rawsession::Limits;
use russh_sftp::client::RawSftpSession;
use tokio::io::AsyncBufReadExt;

use crate::error::SftpError;
use crate::known_hosts::{check_host_key, known_hosts_files, HostKeyVerdict};
use crate::location::{SftpLocation, SftpOptions};
use crate::ssh_config::HostConfig;

/// Bytes per SFTP write request when the server does not announce its
/// limits: OpenSSH's sftp client uses 32 KiB too, and every server accepts it.
const WRITE_CHUNK: u64 = 32 * 1024;
/// Bytes per SFTP write request when the server announces its write limit
/// (`limits@openssh.com`; OpenSSH: 255 KiB): fewer, larger requests cost
/// the client and the server fewer messages and `pwrite` calls.
const LIMITED_WRITE_CHUNK: u64 = 255 * 1024;
/// Bytes per SFTP read request.
const READ_CHUNK: u64 = 64 * 1024;
/// Seconds one SFTP request may take before the connection counts as dead.
const REQUEST_TIMEOUT_SECS: u64 = 60;
/// Time to dial, authenticate and start SFTP before giving up on an attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);
/// SSH channel window of the client: large, so downloads are not throttled
/// by window adjustments on fast links (measured: 64 MiB, see crate docs).
const WINDOW_SIZE: u32 = 64 * 1024 * 1024;
/// SFTP sessions per SSH connection: its own and `LANES_PER_CONNECTION - 1`
/// lanes. The server decides how much of an upload may be in flight on one
/// channel (OpenSSH: a 2 MiB window), so an upload on one session moves at
/// most 2 MiB per round trip: 17 MiB take eight or nine round trips (1.3 s
/// at 100 ms). Spread over eight sessions, each slice is about one window
/// and a pack needs about two round trips of data (issue #20; measured at
/// 100 ms: a 17 MB pack 0.55-0.6 s with four sessions, 0.48-0.52 s with
/// eight, no change at 0 ms). Each session is an `sftp-server` process on
/// the server; OpenSSH allows ten sessions per connection (`MaxSessions`),
/// and a server that refuses more leaves fewer lanes, never a failed
/// connection.
const LANES_PER_CONNECTION: usize = 8;

/// How to reach the server; resolved once when the backend is opened.
#[derive(Debug, Clone)]
pub(crate) enum Target {
    /// In-process SSH with russh.
    Ssh(Box<SshTarget>),
    /// A command speaking SFTP on stdin/stdout (`argv[0]` looked up in PATH).
    Command(Vec<String>),
}

/// Everything needed to dial and authenticate an SSH server.
#[derive(Debug, Clone)]
pub(crate) struct SshTarget {
    /// Host name to connect to and to look up in known_hosts.
    pub hostname: String,
    pub port: u16,
    pub user: String,
    /// Private keys to try, in order (missing files are skipped).
    pub identity_files: Vec<PathBuf>,
    pub known_hosts: Vec<PathBuf>,
    /// ssh-agent socket, when one is to be used.
    pub agent_socket: Option<PathBuf>,
}

impl Target {
    /// Resolve a location and options into a target (ssh config, keys, user).
    pub fn resolve(
        location: &SftpLocation,
        opts: &SftpOptions,
        env: &SshEnv,
    ) -> Result<Target, SftpError> {
        opts.validate()?;
        if let Some(command) = &opts.command {
            if command.trim().is_empty() {
                return Err(SftpError::InvalidOption(
                    "sftp.command is empty".to_string(),
                ));
            }
            let argv = split_shell_strings(command)
                .map_err(|e| SftpError::InvalidOption(format!("sftp.command {command:?}: {e}")))?;
            return Ok(Target::Command(argv));
        }
        if let Some(args) = &opts.args {
            // spec: cli §5.2: ssh host [-p port] [-l user] [args...] -s sftp
            let mut argv = vec!["ssh".to_string(), location.host.clone()];
            if let Some(port) = location.port {
                argv.extend(["-p".to_string(), port.to_string()]);
            }
            if let Some(user) = &location.user {
                argv.extend(["-l".to_string(), user.clone()]);
            }
            // restic splits sftp.args only when it is not empty.
            if !args.is_empty() {
                argv.extend(
                    split_shell_strings(args).map_err(|e| {
                        SftpError::InvalidOption(format!("sftp.args {args:?}: {e}"))
                    })?,
                );
            }
            argv.extend(["-s".to_string(), "sftp".to_string()]);
            return Ok(Target::Command(argv));
        }
        let home = env.home.clone();
        let ssh_dir = home.join(".ssh");
        let cfg = HostConfig::load(&ssh_dir.join("config"), &location.host, &home);
        let hostname = cfg
            .hostname
            .clone()
            .unwrap_or_else(|| location.host.clone());
        let port = location.port.or(cfg.port).unwrap_or(22);
        let user = location
            .user
            .clone()
            .or(cfg.user.clone())
            .unwrap_or_else(current_user_name);
        let mut identity_files = cfg.identity_files.clone();
        if identity_files.is_empty() {
            identity_files = ["id_ed25519", "id_ecdsa", "id_rsa"]
                .iter()
                .map(|name| ssh_dir.join(name))
                .collect();
        }
        Ok(Target::Ssh(Box::new(SshTarget {
            hostname,
            port,
            user,
            identity_files,
            known_hosts: known_hosts_files(&home, &cfg.user_known_hosts_files),
            agent_socket: env.agent_socket.clone(),
        })))
    }

    /// Short description for error messages.
    pub fn describe(&self) -> String {
        match self {
            Target::Ssh(t) => format!("{}@{}:{}", t.user, t.hostname, t.port),
            Target::Command(argv) => format!("`{}`", argv.join(" ")),
        }
    }
}

/// Where the in-process SSH client finds the user's SSH setup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshEnv {
    /// Home folder: `~/.ssh/config`, keys and `known_hosts` live below it.
    pub home: PathBuf,
    /// ssh-agent socket (`SSH_AUTH_SOCK`), if any.
    pub agent_socket: Option<PathBuf>,
}

impl SshEnv {
    /// From this process: `$HOME` (else `/`) and `$SSH_AUTH_SOCK`.
    pub fn from_process() -> SshEnv {
        SshEnv {
            home: std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/")),
            agent_socket: std::env::var_os("SSH_AUTH_SOCK")
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
        }
    }
}

/// Login name when the location and the ssh config name none: `$USER`,
/// `$LOGNAME`, or the passwd entry of our uid.
fn current_user_name() -> String {
    for var in ["USER", "LOGNAME"] {
        if let Ok(v) = std::env::var(var) {
            if !v.is_empty() {
                return v;
            }
        }
    }
    use std::os::unix::fs::MetadataExt;
    let uid = std::fs::metadata("/proc/self").map(|m| m.uid()).ok();
    if let (Some(uid), Ok(passwd)) = (uid, std::fs::read_to_string("/etc/passwd")) {
        for line in passwd.lines() {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.get(2).and_then(|f| f.parse::<u32>().ok()) == Some(uid) {
                if let Some(name) = fields.first() {
                    return (*name).to_string();
                }
            }
        }
    }
    "root".to_string()
}

/// The transport that keeps an SFTP session alive.
enum Transport {
    Ssh(client::Handle<HostKeyChecker>),
    Process(tokio::process::Child),
}

/// A live SFTP session and what the server supports.
pub(crate) struct Connection {
    pub sftp: Arc<RawSftpSession>,
    /// Server supports `posix-rename@openssh.com`.
    pub posix_rename: bool,
    /// Server supports `fsync@openssh.com`.
    pub fsync: bool,
    /// More SFTP sessions on the same SSH connection, each on a channel of
    /// its own ([`LANES_PER_CONNECTION`]), for spreading one large upload
    /// over several channel windows. Empty for a subprocess.
    pub lanes: Vec<Lane>,
    /// Request sizes, once the server's `limits@openssh.com` answer is in
    /// (see [`start_sftp`]).
    sizes: Shared<BoxFuture<'static, RequestSizes>>,
    transport: Transport,
}

/// One extra SFTP session of a [`Connection`] (see [`Connection::lanes`]).
pub(crate) struct Lane {
    pub sftp: RawSftpSession,
    /// Set when a request on this lane failed: its channel may be gone, so
    /// uploads stop using it (the connection's own session carries on).
    pub broken: std::sync::atomic::AtomicBool,
}

impl Lane {
    pub fn usable(&self) -> bool {
        !self.broken.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn mark_broken(&self) {
        self.broken
            .store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Bytes per read and write request, within the server's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RequestSizes {
    pub write_len: u64,
    pub read_len: u64,
}

impl RequestSizes {
    /// For a server that announces no limits (or whose answer failed).
    const DEFAULT: RequestSizes = RequestSizes {
        write_len: WRITE_CHUNK,
        read_len: READ_CHUNK,
    };

    /// Within the limits a server announced.
    fn within(limits: Limits) -> RequestSizes {
        let mut sizes = RequestSizes::DEFAULT;
        if let Some(w) = limits.write_len {
            sizes.write_len = LIMITED_WRITE_CHUNK.min(w);
        }
        if let Some(r) = limits.read_len {
            sizes.read_len = sizes.read_len.min(r);
        }
        sizes.write_len = sizes.write_len.max(512);
        sizes.read_len = sizes.read_len.max(512);
        sizes
    }
}

impl Connection {
    /// Bytes per read and write request. Waits for the server's
    /// `limits@openssh.com` answer if it has not come yet: that request
    /// went out first on this session, and the server answers in order, so
    /// once an operation's first request (open) is answered, this is ready
    /// and costs no round trip of its own.
    pub async fn sizes(&self) -> RequestSizes {
        self.sizes.clone().await
    }

    /// True when the transport is known to be gone.
    pub fn is_closed(&self) -> bool {
        match &self.transport {
            Transport::Ssh(handle) => handle.is_closed(),
            Transport::Process(_) => false,
        }
    }

    /// Resolves once the SSH transport is gone (never for a subprocess,
    /// whose pipes end the SFTP session by themselves).
    ///
    /// russh-sftp fails the requests pending when its stream ends, but a
    /// request sent in the moment the stream ends is left to its timeout
    /// (60 s); racing every operation against this watcher turns a dead
    /// server into an immediate, retryable error instead.
    pub async fn closed(&self) {
        match &self.transport {
            Transport::Ssh(handle) => wait_closed(handle).await,
            Transport::Process(_) => std::future::pending().await,
        }
    }

    /// Dial `target` and start SFTP.
    pub async fn open(target: &Target) -> Result<Connection, SftpError> {
        let opening = async {
            match target {
                Target::Ssh(t) => open_ssh(t).await,
                Target::Command(argv) => open_command(argv).await,
            }
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, opening).await {
            Ok(result) => result,
            Err(_) => Err(SftpError::Connect {
                target: target.describe(),
                source: std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no SFTP session after {} s", CONNECT_TIMEOUT.as_secs()),
                ),
            }),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Transport::Process(child) = &mut self.transport {
            // The child was spawned with kill_on_drop; closing stdin (done
            // by the SFTP session's drop) lets ssh exit by itself first.
            let _ = child.start_kill();
        }
    }
}

/// What the host key check saw, kept for the error message.
#[derive(Debug, Clone)]
struct HostKeySeen {
    verdict: HostKeyVerdict,
    algorithm: String,
    fingerprint: String,
}

/// russh handler that checks the server's key strictly against known_hosts.
pub(crate) struct HostKeyChecker {
    target: SshTarget,
    seen: Arc<Mutex<Option<HostKeySeen>>>,
}

impl client::Handler for HostKeyChecker {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        server_public_key: &PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let (key, algorithm) = match server_public_key {
            PublicKeyOrCertificate::PublicKey { key, .. } => {
                (key.clone(), key.algorithm().to_string())
            }
            PublicKeyOrCertificate::Certificate(cert) => {
                // Host certificates would need @cert-authority support; check
                // the certified key itself like a plain key instead.
                let key = russh::keys::PublicKey::from(cert.public_key().clone());
                (key, format!("{} (certificate)", cert.algorithm()))
            }
        };
        let verdict = check_host_key(
            &self.target.known_hosts,
            &self.target.hostname,
            self.target.port,
            &key,
        );
        let trusted = verdict == HostKeyVerdict::Trusted;
        let seen = HostKeySeen {
            verdict,
            algorithm,
            fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        };
        if let Ok(mut slot) = self.seen.lock() {
            *slot = Some(seen);
        }
        Ok(trusted)
    }
}

async fn open_ssh(target: &SshTarget) -> Result<Connection, SftpError> {
    // AES-GCM first: with AES-NI it costs far less CPU than chacha20-poly1305
    // (russh's first choice), on both ends; bulk uploads are CPU-bound.
    let preferred = russh::Preferred {
        cipher: std::borrow::Cow::Borrowed(&[
            russh::cipher::AES_128_GCM,
            russh::cipher::AES_256_GCM,
            russh::cipher::CHACHA20_POLY1305,
            russh::cipher::AES_256_CTR,
            russh::cipher::AES_192_CTR,
            russh::cipher::AES_128_CTR,
        ]),
        ..Default::default()
    };
    let config = client::Config {
        preferred,
        window_size: WINDOW_SIZE,
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        ..Default::default()
    };
    let seen = Arc::new(Mutex::new(None));
    let checker = HostKeyChecker {
        target: target.clone(),
        seen: seen.clone(),
    };
    let addr = (target.hostname.as_str(), target.port);
    let connected = client::connect(Arc::new(config), addr, checker).await;
    let mut handle = match connected {
        Ok(h) => h,
        Err(err) => {
            let seen = seen.lock().ok().and_then(|s| s.clone());
            return Err(connect_error(target, err, seen));
        }
    };
    authenticate(&mut handle, target).await?;
    // The lanes' channels open together with the main one: no extra round
    // trip on a long link.
    let (channel, lane_channels) = futures::join!(
        handle.channel_open_session(),
        futures::future::join_all((1..LANES_PER_CONNECTION).map(|_| open_lane_channel(&handle)))
    );
    let channel = channel.map_err(|e| {
        SftpError::Ssh(format!(
            "{}: opening a session channel: {e}",
            describe(target)
        ))
    })?;
    channel.request_subsystem(true, "sftp").await.map_err(|e| {
        SftpError::Ssh(format!(
            "{}: starting the sftp subsystem: {e}",
            describe(target)
        ))
    })?;
    let stream = channel.into_stream();
    let name = describe(target);
    let (connection, lanes) = futures::join!(
        start_sftp(stream, Transport::Ssh(handle), &name),
        futures::future::join_all(lane_channels.into_iter().flatten().map(start_lane))
    );
    let mut connection = connection?;
    connection.lanes = lanes.into_iter().flatten().collect();
    Ok(connection)
}

/// A session channel with the sftp subsystem requested, for a lane; `None`
/// when the server refuses (then the connection has fewer lanes).
async fn open_lane_channel(
    handle: &client::Handle<HostKeyChecker>,
) -> Option<russh::Channel<client::Msg>> {
    let channel = handle.channel_open_session().await.ok()?;
    channel.request_subsystem(true, "sftp").await.ok()?;
    Some(channel)
}

/// Start SFTP on a lane's channel; `None` if the server does not answer
/// the init as it should.
async fn start_lane(channel: russh::Channel<client::Msg>) -> Option<Lane> {
    let sftp = RawSftpSession::new(channel.into_stream());
    sftp.set_timeout(REQUEST_TIMEOUT_SECS);
    let started = tokio::time::timeout(CONNECT_TIMEOUT, sftp.init()).await;
    match started {
        Ok(Ok(_)) => Some(Lane {
            sftp,
            broken: std::sync::atomic::AtomicBool::new(false),
        }),
        _ => None,
    }
}

fn describe(t: &SshTarget) -> String {
    format!("{}@{}:{}", t.user, t.hostname, t.port)
}

fn connect_error(target: &SshTarget, err: russh::Error, seen: Option<HostKeySeen>) -> SftpError {
    let host = crate::known_hosts::host_entry_name(&target.hostname, target.port);
    if let Some(seen) = seen {
        match seen.verdict {
            HostKeyVerdict::Trusted => {}
            HostKeyVerdict::Unknown { other_types } => {
                let files: Vec<String> = target
                    .known_hosts
                    .iter()
                    .map(|p| p.display().to_string())
                    .collect();
                let port_arg = if target.port == 22 {
                    String::new()
                } else {
                    format!("-p {} ", target.port)
                };
                let other = if other_types.is_empty() {
                    String::new()
                } else {
                    format!(
                        " (known_hosts has keys of other types for it: {})",
                        other_types.join(", ")
                    )
                };
                return SftpError::UnknownHostKey {
                    host,
                    message: format!(
                        "the {} host key {} is not in known_hosts{other}; refusing to connect.\n\
                         Verify the key and add it: connect once with `ssh {port_arg}{}@{}` and accept it, \
                         or add the server's public key to {} (e.g. with ssh-keyscan)",
                        seen.algorithm,
                        seen.fingerprint,
                        target.user,
                        target.hostname,
                        files.first().cloned().unwrap_or_else(|| "~/.ssh/known_hosts".to_string()),
                    ),
                };
            }
            HostKeyVerdict::Changed { file, line } => {
                return SftpError::HostKeyChanged {
                    host,
                    message: format!(
                        "@@@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @@@\n\
                         The {} host key of this server is now {}, which does not match the key \
                         recorded in {} line {line}. Someone could be eavesdropping on you right now \
                         (man-in-the-middle attack), or the host key has just been changed. \
                         Refusing to connect; if the change is expected, fix that known_hosts line.",
                        seen.algorithm,
                        seen.fingerprint,
                        file.display()
                    ),
                };
            }
            HostKeyVerdict::Revoked { file, line } => {
                return SftpError::HostKeyChanged {
                    host,
                    message: format!(
                        "the {} host key {} is marked @revoked in {} line {line}; refusing to connect",
                        seen.algorithm,
                        seen.fingerprint,
                        file.display()
                    ),
                };
            }
        }
    }
    match err {
        russh::Error::IO(source) => SftpError::Connect {
            target: describe(target),
            source,
        },
        other => SftpError::Ssh(format!("{}: {other}", describe(target))),
    }
}

/// Try the agent's keys, then the identity files, like ssh does.
async fn authenticate(
    handle: &mut client::Handle<HostKeyChecker>,
    target: &SshTarget,
) -> Result<(), SftpError> {
    let mut tried: Vec<String> = Vec::new();
    if let Some(sock) = &target.agent_socket {
        match AgentClient::connect_uds(sock).await {
            Ok(mut agent) => match agent.request_identities().await {
                Ok(identities) => {
                    for identity in identities {
                        let AgentIdentity::PublicKey { key, comment } = identity else {
                            continue;
                        };
                        let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
                        match handle
                            .authenticate_publickey_with(&target.user, key, hash, &mut agent)
                            .await
                        {
                            Ok(AuthResult::Success) => return Ok(()),
                            _ if connection_dropped(handle).await => {
                                return Err(dropped_during_auth(target))
                            }
                            Ok(_) => {
                                tried.push(format!("agent key {comment}: rejected by the server"))
                            }
                            Err(e) => tried.push(format!("agent key {comment}: {e}")),
                        }
                    }
                }
                Err(e) => tried.push(format!("ssh-agent: {e}")),
            },
            Err(e) => tried.push(format!("ssh-agent at {}: {e}", sock.display())),
        }
    }
    for path in &target.identity_files {
        if !path.exists() {
            continue;
        }
        let key = match russh::keys::load_secret_key(path, None) {
            Ok(k) => k,
            Err(russh::keys::Error::KeyIsEncrypted) => {
                tried.push(format!(
                    "{}: protected by a passphrase (add it to ssh-agent)",
                    path.display()
                ));
                continue;
            }
            Err(e) => {
                tried.push(format!("{}: unreadable key: {e}", path.display()));
                continue;
            }
        };
        let hash = rsa_hash(handle, key.algorithm().is_rsa()).await;
        let key = PrivateKeyWithHashAlg::new(Arc::new(key), hash);
        match handle.authenticate_publickey(&target.user, key).await {
            Ok(AuthResult::Success) => return Ok(()),
            _ if connection_dropped(handle).await => return Err(dropped_during_auth(target)),
            Ok(_) => tried.push(format!("{}: rejected by the server", path.display())),
            Err(e) => tried.push(format!("{}: {e}", path.display())),
        }
    }
    if tried.is_empty() {
        let files: Vec<String> = target
            .identity_files
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        tried.push(format!(
            "no ssh-agent (SSH_AUTH_SOCK unset) and no key file found (looked for {})",
            files.join(", ")
        ));
    }
    Err(SftpError::Auth {
        target: describe(target),
        tried: tried.join("; "),
    })
}

/// russh answers an authentication request whose connection dropped (the
/// server was restarted mid-handshake) with a plain "failure"; only a closed
/// session tells it apart from a rejected key. The session task may close
/// its end a moment after answering, so look a few times.
async fn connection_dropped(handle: &client::Handle<HostKeyChecker>) -> bool {
    for _ in 0..10 {
        if handle.is_closed() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    handle.is_closed()
}

/// Poll the session's liveness: russh has no close notification on the
/// handle, and a 100 ms delay is nothing next to a reconnect.
async fn wait_closed(handle: &client::Handle<HostKeyChecker>) {
    while !handle.is_closed() {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A retryable error (see [`SftpError::is_retryable`]): the server went
/// away during authentication, the key was not refused.
fn dropped_during_auth(target: &SshTarget) -> SftpError {
    SftpError::Ssh(format!(
        "{}: the connection closed during authentication",
        describe(target)
    ))
}

/// The signature hash for RSA keys the server accepts (rsa-sha2-512/256).
async fn rsa_hash(handle: &client::Handle<HostKeyChecker>, is_rsa: bool) -> Option<HashAlg> {
    if !is_rsa {
        return None;
    }
    handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten()
}

async fn open_command(argv: &[String]) -> Result<Connection, SftpError> {
    let Some((program, args)) = argv.split_first() else {
        return Err(SftpError::InvalidOption(
            "sftp.command is empty".to_string(),
        ));
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        // spec: cli §5.2: own process group, so Ctrl-C reaches only us.
        .process_group(0);
    // spec: cli §5.2: the child's environment lacks RESTIC_* variables.
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("RESTIC_") {
            cmd.env_remove(key);
        }
    }
    let describe = format!("`{}`", argv.join(" "));
    let mut child = cmd
        .spawn()
        .map_err(|e| SftpError::Subprocess(format!("cannot run {describe}: {e}")))?;
    let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
        return Err(SftpError::Subprocess(format!(
            "{describe}: no stdin/stdout pipes"
        )));
    };
    if let Some(stderr) = child.stderr.take() {
        // spec: cli §5.2: forward ssh's stderr line by line, prefixed.
        let name = Path::new(program)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| program.clone());
        tokio::spawn(async move {
            let mut lines = tokio::io::BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("subprocess {name}: {line}");
            }
        });
    }
    let stream = tokio::io::join(stdout, stdin);
    start_sftp(stream, Transport::Process(child), &describe).await
}

async fn start_sftp<S>(
    stream: S,
    mut transport: Transport,
    describe: &str,
) -> Result<Connection, SftpError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let sftp = RawSftpSession::new(stream);
    sftp.set_timeout(REQUEST_TIMEOUT_SECS);
    let failed = |reason: String| {
        SftpError::Sftp(format!(
            "{describe}: unable to start the sftp session, error: {reason}"
        ))
    };
    let version = match &mut transport {
        // A command that exits at once (wrong host, bad option) must not
        // leave the handshake waiting for its request timeout.
        Transport::Process(child) => tokio::select! {
            version = sftp.init() => version.map_err(|e| failed(e.to_string()))?,
            status = child.wait() => {
                let status = status.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                return Err(failed(format!("the command ended ({status})")));
            }
        },
        Transport::Ssh(handle) => tokio::select! {
            version = sftp.init() => version.map_err(|e| failed(e.to_string()))?,
            () = wait_closed(handle) => {
                return Err(failed("the connection closed".to_string()));
            }
        },
    };
    let has = |name: &str| version.extensions.contains_key(name);
    let posix_rename = has("posix-rename@openssh.com");
    let fsync = has("fsync@openssh.com");
    let sftp = Arc::new(sftp);
    // The limits are needed by the first read or write, not by the start:
    // the request goes out now (after VERSION, as servers require) and its
    // answer is awaited by whoever needs the sizes first, so the start
    // costs one round trip (init) instead of two. The session's own limit
    // checks (`set_limits`) stay unset: our requests stay within the sizes
    // chosen here, and an operation opens one handle at a time.
    let sizes = if has("limits@openssh.com") {
        let session = Arc::clone(&sftp);
        async move {
            match session.limits().await {
                Ok(limits) => RequestSizes::within(Limits::from(limits)),
                Err(_) => RequestSizes::DEFAULT,
            }
        }
        .boxed()
    } else {
        futures::future::ready(RequestSizes::DEFAULT).boxed()
    }
    .shared();
    // russh-sftp sends a request when its future is first polled.
    let _ = futures::poll!(sizes.clone());
    Ok(Connection {
        sftp,
        posix_rename,
        fsync,
        lanes: Vec::new(),
        sizes,
        transport,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_within_the_servers_limits() {
        let openssh = Limits {
            packet_len: Some(256 * 1024),
            read_len: Some(261_120),
            write_len: Some(261_120),
            open_handles: None,
        };
        assert_eq!(
            RequestSizes::within(openssh),
            RequestSizes {
                write_len: LIMITED_WRITE_CHUNK,
                read_len: READ_CHUNK
            }
        );
        let small = Limits {
            read_len: Some(16 * 1024),
            write_len: Some(8 * 1024),
            ..Limits::default()
        };
        assert_eq!(
            RequestSizes::within(small),
            RequestSizes {
                write_len: 8 * 1024,
                read_len: 16 * 1024
            }
        );
        // No write limit announced: the size every server accepts.
        assert_eq!(
            RequestSizes::within(Limits::default()),
            RequestSizes::DEFAULT
        );
    }
}
