//! Command-line syntax: restic's flags and commands, parsed with clap.
//!
//! restic uses cobra/pflag, which is more permissive than clap in three ways
//! that callers rely on (spec: callers §1.1, §2.1, §3 "Flag parsing"):
//! - command flags may come *before* the command name
//!   (`restic --force --json --tag=x --repo=R backup /p`),
//! - boolean flags accept an explicit value (`--insecure-tls=true`),
//! - `--verbose=N` sets the level directly.
//!
//! [`normalize_args`] (through [`crate::pflag`], which applies pflag's rules
//! using this module's clap definition) rewrites such an argv into a
//! canonical line (command first, `--long=value`, positionals after `--`),
//! then [`Cli`] parses it.

use clap::{ArgAction, Args, Parser, Subcommand};

/// Global flags (spec: cli §2). Valid before or after the command name.
#[derive(Args, Debug, Default, Clone)]
pub struct GlobalOptions {
    /// Repository to back up to or restore from (default: $RESTIC_REPOSITORY)
    #[arg(short = 'r', long = "repo", global = true, value_name = "REPOSITORY")]
    pub repo: Option<String>,
    /// File to read the repository location from (default: $RESTIC_REPOSITORY_FILE)
    #[arg(long = "repository-file", global = true, value_name = "FILE")]
    pub repository_file: Option<String>,
    /// File to read the repository password from (default: $RESTIC_PASSWORD_FILE)
    #[arg(
        short = 'p',
        long = "password-file",
        global = true,
        value_name = "FILE"
    )]
    pub password_file: Option<String>,
    /// Shell command to obtain the repository password from (default: $RESTIC_PASSWORD_COMMAND)
    #[arg(long = "password-command", global = true, value_name = "COMMAND")]
    pub password_command: Option<String>,
    /// Key ID of key to try decrypting first (default: $RESTIC_KEY_HINT)
    #[arg(long = "key-hint", global = true, value_name = "KEY")]
    pub key_hint: Option<String>,
    /// Use an empty password for the repository
    #[arg(long = "insecure-no-password", global = true)]
    pub insecure_no_password: bool,
    /// Do not output comprehensive progress report
    #[arg(short = 'q', long = "quiet", global = true)]
    pub quiet: bool,
    /// Be verbose (specify multiple times or a level using --verbose=n, max level/times is 2)
    #[arg(short = 'v', long = "verbose", global = true, action = ArgAction::Count)]
    pub verbose: u8,
    /// Set output mode to JSON for commands that support it
    #[arg(long = "json", global = true)]
    pub json: bool,
    /// Do not lock the repository, this allows some operations on read-only repositories
    #[arg(long = "no-lock", global = true)]
    pub no_lock: bool,
    /// Retry to lock the repository if it is already locked, takes a value like 5m or 2h
    #[arg(long = "retry-lock", global = true, value_name = "DURATION")]
    pub retry_lock: Option<String>,
    /// Set the cache directory (default: $RESTIC_CACHE_DIR)
    #[arg(long = "cache-dir", global = true, value_name = "DIR")]
    pub cache_dir: Option<String>,
    /// Do not use a local cache
    #[arg(long = "no-cache", global = true)]
    pub no_cache: bool,
    /// Auto remove old cache directories
    #[arg(long = "cleanup-cache", global = true)]
    pub cleanup_cache: bool,
    /// Compression mode (only available for repository format version 2), one of (auto|off|max|fastest|better) (default: $RESTIC_COMPRESSION)
    #[arg(long = "compression", global = true, value_name = "MODE")]
    pub compression: Option<String>,
    /// Set target pack size in MiB, created pack files may be larger (default: $RESTIC_PACK_SIZE)
    #[arg(long = "pack-size", global = true, value_name = "SIZE")]
    pub pack_size: Option<String>,
    /// Limits uploads to a maximum rate in KiB/s (default: unlimited)
    #[arg(
        long = "limit-upload",
        global = true,
        allow_hyphen_values = true,
        value_name = "RATE"
    )]
    pub limit_upload: Option<i64>,
    /// Limits downloads to a maximum rate in KiB/s (default: unlimited)
    #[arg(
        long = "limit-download",
        global = true,
        allow_hyphen_values = true,
        value_name = "RATE"
    )]
    pub limit_download: Option<i64>,
    /// Set extended option (key=value, can be specified multiple times)
    #[arg(short = 'o', long = "option", global = true, action = ArgAction::Append, value_name = "KEY=VALUE")]
    pub option: Vec<String>,
    /// File to load root certificates from (default: use system certificates or $RESTIC_CACERT)
    #[arg(long = "cacert", global = true, action = ArgAction::Append, value_name = "FILE")]
    pub cacert: Vec<String>,
    /// Path to a file containing PEM encoded TLS client certificate and private key
    #[arg(long = "tls-client-cert", global = true, value_name = "FILE")]
    pub tls_client_cert: Option<String>,
    /// Skip TLS certificate verification when connecting to the repository (insecure)
    #[arg(long = "insecure-tls", global = true)]
    pub insecure_tls: bool,
    /// Skip additional verification of data before upload
    #[arg(long = "no-extra-verify", global = true)]
    pub no_extra_verify: bool,
    /// Set a http user agent for outgoing http requests
    #[arg(long = "http-user-agent", global = true, value_name = "STRING")]
    pub http_user_agent: Option<String>,
    /// Duration after which to retry stuck requests
    #[arg(long = "stuck-request-timeout", global = true, value_name = "DURATION")]
    pub stuck_request_timeout: Option<String>,
    /// Number of CPU worker threads (default: $GOMAXPROCS, else all cores)
    #[arg(long = "threads", global = true, value_name = "N")]
    pub threads: Option<usize>,
}

/// Snapshot filter flags shared by many commands (spec: cli §9).
#[derive(Args, Debug, Default, Clone)]
pub struct SnapshotFilterOptions {
    /// Only consider snapshots for this host (can be specified multiple times) (default: $RESTIC_HOST)
    #[arg(short = 'H', long = "host", action = ArgAction::Append, value_name = "HOST")]
    pub host: Vec<String>,
    /// Only consider snapshots including tag[,tag,...] (can be specified multiple times)
    #[arg(long = "tag", action = ArgAction::Append, value_name = "TAGLIST")]
    pub tag: Vec<String>,
    /// Only consider snapshots including this (absolute) path (can be specified multiple times)
    #[arg(long = "path", action = ArgAction::Append, value_name = "PATH")]
    pub path: Vec<String>,
}

/// The `restix` command line.
#[derive(Parser, Debug)]
#[command(
    name = "restic",
    about = "restix: a fast, restic-compatible backup program",
    disable_version_flag = true,
    propagate_version = false
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalOptions,
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// All restic commands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new backup of files and/or directories
    Backup(BackupArgs),
    /// Operate on local cache directories
    Cache(CacheArgs),
    /// Print internal objects to stdout
    Cat(PositionalArgs),
    /// Check the repository for errors
    Check(CheckArgs),
    /// Copy snapshots from one repository to another
    Copy(CopyArgs),
    /// Show differences between two snapshots
    Diff(DiffArgs),
    /// Print a backed-up file to stdout
    Dump(DumpArgs),
    /// Print list of feature flags
    Features(PositionalArgs),
    /// Find a file, a directory or restic IDs
    Find(FindArgs),
    /// Remove snapshots from the repository
    Forget(ForgetArgs),
    /// Generate manual pages and auto-completion files (bash, fish, zsh, powershell)
    Generate(GenerateArgs),
    /// Initialize a new repository
    Init(InitArgs),
    /// Manage keys (passwords)
    Key(KeyArgs),
    /// List objects in the repository
    List(PositionalArgs),
    /// List files in a snapshot
    Ls(LsArgs),
    /// Apply migrations
    Migrate(MigrateArgs),
    /// Mount the repository
    Mount(MountArgs),
    /// Print list of extended options
    Options(PositionalArgs),
    /// Remove unneeded data from the repository
    Prune(PruneArgs),
    /// Build a new index
    #[command(name = "rebuild-index")]
    RebuildIndex(RepairIndexArgs),
    /// Recover data from the repository not referenced by snapshots
    Recover(PositionalArgs),
    /// Repair the repository
    Repair(RepairArgs),
    /// Extract the data from a snapshot
    Restore(RestoreArgs),
    /// Flatten an OpenNebula backup chain (full + qcow2 increments) into one image
    #[command(name = "restore-chain")]
    RestoreChain(crate::image_args::RestoreChainArgs),
    /// Rewrite snapshots to exclude unwanted files
    Rewrite(RewriteArgs),
    /// Update the restic binary
    #[command(name = "self-update")]
    SelfUpdate(SelfUpdateArgs),
    /// List all snapshots
    Snapshots(SnapshotsArgs),
    /// Scan the repository and show basic statistics
    Stats(StatsArgs),
    /// Modify tags on snapshots
    Tag(TagArgs),
    /// Remove locks other processes created
    Unlock(UnlockArgs),
    /// Serve a file of a snapshot (a VM disk) as a read-only NBD export
    #[command(name = "serve-nbd")]
    ServeNbd(ServeNbdArgs),
    /// Print version information
    Version(PositionalArgs),
}

impl Command {
    /// The command's name as typed on the command line.
    pub fn name(&self) -> &'static str {
        match self {
            Command::Backup(_) => "backup",
            Command::Cache(_) => "cache",
            Command::Cat(_) => "cat",
            Command::Check(_) => "check",
            Command::Copy(_) => "copy",
            Command::Diff(_) => "diff",
            Command::Dump(_) => "dump",
            Command::Features(_) => "features",
            Command::Find(_) => "find",
            Command::Forget(_) => "forget",
            Command::Generate(_) => "generate",
            Command::Init(_) => "init",
            Command::Key(_) => "key",
            Command::List(_) => "list",
            Command::Ls(_) => "ls",
            Command::Migrate(_) => "migrate",
            Command::Mount(_) => "mount",
            Command::Options(_) => "options",
            Command::Prune(_) => "prune",
            Command::RebuildIndex(_) => "rebuild-index",
            Command::Recover(_) => "recover",
            Command::Repair(_) => "repair",
            Command::Restore(_) => "restore",
            Command::Rewrite(_) => "rewrite",
            Command::SelfUpdate(_) => "self-update",
            Command::Snapshots(_) => "snapshots",
            Command::Stats(_) => "stats",
            Command::Tag(_) => "tag",
            Command::Unlock(_) => "unlock",
            Command::ServeNbd(_) => "serve-nbd",
            Command::RestoreChain(_) => "restore-chain",
            Command::Version(_) => "version",
        }
    }
}

/// Commands whose flags restix does not model yet: positional args only.
#[derive(Args, Debug, Default)]
pub struct PassthroughArgs {
    pub args: Vec<String>,
}

/// Positional arguments only (`cat`, `list`).
#[derive(Args, Debug, Default)]
pub struct PositionalArgs {
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct BackupArgs {
    /// Use this parent snapshot (default: latest snapshot in the group determined by --group-by and not newer than the timestamp determined by --time)
    #[arg(long = "parent", value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Group snapshots by host, paths and/or tags, separated by comma (disable grouping with '')
    #[arg(short = 'g', long = "group-by", value_name = "GROUP")]
    pub group_by: Option<String>,
    /// Force re-reading the source files/directories (overrides the "parent" flag)
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Exclude a pattern (can be specified multiple times)
    #[arg(short = 'e', long = "exclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Same as --exclude pattern but ignores the casing of filenames
    #[arg(long = "iexclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file (can be specified multiple times)
    #[arg(long = "exclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub exclude_file: Vec<String>,
    /// Same as --exclude-file but ignores casing of filenames in patterns
    #[arg(long = "iexclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub iexclude_file: Vec<String>,
    /// Excludes cache directories that are marked with a CACHEDIR.TAG file
    #[arg(long = "exclude-caches")]
    pub exclude_caches: bool,
    /// Takes filename[:header], exclude contents of directories containing filename (except filename itself) if header of that file is as provided (can be specified multiple times)
    #[arg(long = "exclude-if-present", action = ArgAction::Append, value_name = "FILENAME")]
    pub exclude_if_present: Vec<String>,
    /// Max size of the files to be backed up (allowed suffixes: k/K, m/M, g/G, t/T)
    #[arg(long = "exclude-larger-than", value_name = "SIZE")]
    pub exclude_larger_than: Option<String>,
    /// Exclude other file systems, don't cross filesystem boundaries and subvolumes
    #[arg(short = 'x', long = "one-file-system")]
    pub one_file_system: bool,
    /// Read backup from stdin
    #[arg(long = "stdin")]
    pub stdin: bool,
    /// Filename to use when reading from stdin
    #[arg(
        long = "stdin-filename",
        value_name = "FILENAME",
        default_value = "stdin"
    )]
    pub stdin_filename: String,
    /// Interpret arguments as command to execute and store its stdout
    #[arg(long = "stdin-from-command")]
    pub stdin_from_command: bool,
    /// Add tags for the new snapshot in the format `tag[,tag,...]` (can be specified multiple times)
    #[arg(long = "tag", action = ArgAction::Append, value_name = "TAGS")]
    pub tag: Vec<String>,
    /// Set the hostname for the snapshot manually (default: $RESTIC_HOST)
    #[arg(
        short = 'H',
        long = "host",
        alias = "hostname",
        value_name = "HOSTNAME"
    )]
    pub host: Option<String>,
    /// Read the files to backup from file (can be combined with file args; can be specified multiple times)
    #[arg(long = "files-from", action = ArgAction::Append, value_name = "FILE")]
    pub files_from: Vec<String>,
    /// Read the files to backup from file (can be combined with file args; can be specified multiple times)
    #[arg(long = "files-from-verbatim", action = ArgAction::Append, value_name = "FILE")]
    pub files_from_verbatim: Vec<String>,
    /// Read the files to backup from file (can be combined with file args; can be specified multiple times)
    #[arg(long = "files-from-raw", action = ArgAction::Append, value_name = "FILE")]
    pub files_from_raw: Vec<String>,
    /// Time of the backup (ex. '2012-11-01 22:08:41') (default: now)
    #[arg(long = "time", value_name = "TIME")]
    pub time: Option<String>,
    /// Store the atime for all files and directories
    #[arg(long = "with-atime")]
    pub with_atime: bool,
    /// Ignore inode number and ctime changes when checking for modified files
    #[arg(long = "ignore-inode")]
    pub ignore_inode: bool,
    /// Ignore ctime changes when checking for modified files
    #[arg(long = "ignore-ctime")]
    pub ignore_ctime: bool,
    /// Do not upload or write any data, just show what would be done
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Read n files concurrently (default: $RESTIC_READ_CONCURRENCY or 2)
    #[arg(long = "read-concurrency", value_name = "N")]
    pub read_concurrency: Option<usize>,
    /// Do not run scanner to estimate size of backup
    #[arg(long = "no-scan")]
    pub no_scan: bool,
    /// Skip snapshot creation if identical to parent snapshot
    #[arg(long = "skip-if-unchanged")]
    pub skip_if_unchanged: bool,
    /// Image mode (see `restix backup --image`)
    #[command(flatten)]
    pub image: crate::image_args::ImageBackupFlags,
    /// Files and directories to back up
    pub paths: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Use compact output format
    #[arg(short = 'c', long = "compact")]
    pub compact: bool,
    /// Only show the last snapshot for each host and path
    #[arg(long = "last")]
    pub last: bool,
    /// Only show the last n snapshots for each host and path
    #[arg(long = "latest", value_name = "N")]
    pub latest: Option<usize>,
    /// Group snapshots by host, paths and/or tags, separated by comma
    #[arg(short = 'g', long = "group-by", value_name = "GROUP")]
    pub group_by: Option<String>,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RestoreArgs {
    /// Directory to extract data to
    #[arg(short = 't', long = "target", value_name = "DIR")]
    pub target: Option<String>,
    /// Include a pattern (can be specified multiple times)
    #[arg(short = 'i', long = "include", action = ArgAction::Append, value_name = "PATTERN")]
    pub include: Vec<String>,
    /// Same as --include pattern but ignores the casing of filenames
    #[arg(long = "iinclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub iinclude: Vec<String>,
    /// Exclude a pattern (can be specified multiple times)
    #[arg(short = 'e', long = "exclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Same as --exclude pattern but ignores the casing of filenames
    #[arg(long = "iexclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Read include patterns from a file
    #[arg(long = "include-file", action = ArgAction::Append, value_name = "FILE")]
    pub include_file: Vec<String>,
    /// Read exclude patterns from a file
    #[arg(long = "exclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub exclude_file: Vec<String>,
    /// Same as --include-file but ignores casing of filenames in patterns
    #[arg(long = "iinclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub iinclude_file: Vec<String>,
    /// Same as --exclude-file but ignores casing of filenames in patterns
    #[arg(long = "iexclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub iexclude_file: Vec<String>,
    /// Include xattr by pattern (can be specified multiple times)
    #[arg(long = "include-xattr", action = ArgAction::Append, value_name = "PATTERN")]
    pub include_xattr: Vec<String>,
    /// Exclude xattr by pattern (can be specified multiple times)
    #[arg(long = "exclude-xattr", action = ArgAction::Append, value_name = "PATTERN")]
    pub exclude_xattr: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Verify restored files content
    #[arg(long = "verify")]
    pub verify: bool,
    /// Restore files as sparse
    #[arg(long = "sparse")]
    pub sparse: bool,
    /// Do not write any data, just show what would be done
    #[arg(long = "dry-run")]
    pub dry_run: bool,
    /// Overwrite behavior, one of (always|if-changed|if-newer|never)
    #[arg(long = "overwrite", value_name = "BEHAVIOR")]
    pub overwrite: Option<String>,
    /// Delete files from target directory if they do not exist in snapshot
    #[arg(long = "delete")]
    pub delete: bool,
    /// Image mode
    #[command(flatten)]
    pub image: crate::image_args::ImageRestoreFlags,
    /// Snapshot ID (or `latest`), optionally `ID:subfolder`
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct DumpArgs {
    /// Set archive format as "tar" or "zip"
    #[arg(
        short = 'a',
        long = "archive",
        default_value = "tar",
        value_name = "FORMAT"
    )]
    pub archive: String,
    /// Image mode
    #[command(flatten)]
    pub image: crate::image_args::ImageRestoreFlags,
    /// Write the output to target path
    #[arg(short = 't', long = "target", value_name = "PATH")]
    pub target: Option<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot ID and file path
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct LsArgs {
    /// Use a long listing format showing size and mode
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Include files in subfolders of the listed directories
    #[arg(long = "recursive")]
    pub recursive: bool,
    /// Print sizes in human readable format
    #[arg(long = "human-readable")]
    pub human_readable: bool,
    /// Output NCDU export format
    #[arg(long = "ncdu")]
    pub ncdu: bool,
    /// Sort output by (name|size|time=mtime|atime|ctime|extension)
    #[arg(short = 's', long = "sort", value_name = "FIELD")]
    pub sort: Option<String>,
    /// Reverse sorted output
    #[arg(long = "reverse")]
    pub reverse: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot ID and optional directory filters
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct InitArgs {
    /// Repository format version to use, allowed values are a format version, 'latest' and 'stable'
    #[arg(
        long = "repository-version",
        default_value = "stable",
        value_name = "VERSION"
    )]
    pub repository_version: String,
    /// Copy chunker parameters from the secondary repository (useful with the copy command)
    #[arg(long = "copy-chunker-params")]
    pub copy_chunker_params: bool,
    #[command(flatten)]
    pub secondary: SecondaryRepoOptions,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct UnlockArgs {
    /// Remove all locks, even non-stale ones
    #[arg(long = "remove-all")]
    pub remove_all: bool,
    /// Positional arguments are ignored
    pub args: Vec<String>,
}

/// Prune tuning flags, shared by `prune` and `forget --prune`.
#[derive(Args, Debug, Default, Clone)]
pub struct PruneOptions {
    /// Tolerate given limit of unused data (absolute value in bytes with suffixes k/K, m/M, g/G, t/T, a value in % or the word 'unlimited')
    #[arg(long = "max-unused", value_name = "LIMIT")]
    pub max_unused: Option<String>,
    /// Stop after repacking this much data in total (allowed suffixes: k/K, m/M, g/G, t/T)
    #[arg(long = "max-repack-size", value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Only repack packs which are cacheable
    #[arg(long = "repack-cacheable-only")]
    pub repack_cacheable_only: bool,
    /// Repack pack files below 80% of target pack size
    #[arg(long = "repack-small")]
    pub repack_small: bool,
    /// Repack all uncompressed data
    #[arg(long = "repack-uncompressed")]
    pub repack_uncompressed: bool,
    /// Pack below-limit packfiles (allowed suffixes: k/K, m/M)
    #[arg(long = "repack-smaller-than", value_name = "SIZE")]
    pub repack_smaller_than: Option<String>,
}

#[derive(Args, Debug, Default)]
pub struct PruneArgs {
    /// Do not modify the repository, just print what would be done
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    #[command(flatten)]
    pub prune: PruneOptions,
    /// Override safety check for missing free space (requires the repository ID)
    #[arg(long = "unsafe-recover-no-free-space", value_name = "ID")]
    pub unsafe_recover_no_free_space: Option<String>,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default, Clone)]
pub struct ForgetArgs {
    /// Keep the last n snapshots (use 'unlimited' to keep all snapshots)
    #[arg(short = 'l', long = "keep-last", value_name = "N")]
    pub keep_last: Option<String>,
    /// Keep the last n hourly snapshots
    #[arg(short = 'H', long = "keep-hourly", value_name = "N")]
    pub keep_hourly: Option<String>,
    /// Keep the last n daily snapshots
    #[arg(short = 'd', long = "keep-daily", value_name = "N")]
    pub keep_daily: Option<String>,
    /// Keep the last n weekly snapshots
    #[arg(short = 'w', long = "keep-weekly", value_name = "N")]
    pub keep_weekly: Option<String>,
    /// Keep the last n monthly snapshots
    #[arg(short = 'm', long = "keep-monthly", value_name = "N")]
    pub keep_monthly: Option<String>,
    /// Keep the last n yearly snapshots
    #[arg(short = 'y', long = "keep-yearly", value_name = "N")]
    pub keep_yearly: Option<String>,
    /// Keep snapshots that are newer than duration relative to the latest snapshot
    #[arg(long = "keep-within", value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots newer than duration
    #[arg(long = "keep-within-hourly", value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots newer than duration
    #[arg(long = "keep-within-daily", value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots newer than duration
    #[arg(long = "keep-within-weekly", value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots newer than duration
    #[arg(long = "keep-within-monthly", value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots newer than duration
    #[arg(long = "keep-within-yearly", value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with this taglist (can be specified multiple times)
    #[arg(long = "keep-tag", action = ArgAction::Append, value_name = "TAGLIST")]
    pub keep_tag: Vec<String>,
    /// Allow deleting all snapshots of a snapshot group
    #[arg(long = "unsafe-allow-remove-all")]
    pub unsafe_allow_remove_all: bool,
    /// Only consider snapshots for this host (can be specified multiple times)
    #[arg(long = "host", alias = "hostname", action = ArgAction::Append, value_name = "HOST")]
    pub host: Vec<String>,
    /// Only consider snapshots including tag[,tag,...]
    #[arg(long = "tag", action = ArgAction::Append, value_name = "TAGLIST")]
    pub tag: Vec<String>,
    /// Only consider snapshots including this (absolute) path
    #[arg(long = "path", action = ArgAction::Append, value_name = "PATH")]
    pub path: Vec<String>,
    /// Use compact output format
    #[arg(short = 'c', long = "compact")]
    pub compact: bool,
    /// Group snapshots by host, paths and/or tags, separated by comma (disable grouping with '')
    #[arg(short = 'g', long = "group-by", value_name = "GROUP")]
    pub group_by: Option<String>,
    /// Do not delete anything, just print what would be done
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Automatically run the 'prune' command if snapshots have been removed
    #[arg(long = "prune")]
    pub prune: bool,
    #[command(flatten)]
    pub prune_options: PruneOptions,
    /// Snapshot IDs to remove
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct CheckArgs {
    /// Read all data blobs
    #[arg(long = "read-data")]
    pub read_data: bool,
    /// Read a subset of data packs, specified as 'n/t', 'x%' or a size
    #[arg(long = "read-data-subset", value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
    /// Find unused blobs
    #[arg(long = "check-unused")]
    pub check_unused: bool,
    /// Use existing cache, only read uncached data from repository
    #[arg(long = "with-cache")]
    pub with_cache: bool,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

/// `key add|list|passwd|remove`.
#[derive(Args, Debug)]
pub struct KeyArgs {
    #[command(subcommand)]
    pub command: KeyCommand,
}

/// The subcommands of `key`.
#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Add a new key (password) to the repository; returns the new key ID
    Add(KeyAddArgs),
    /// List keys (passwords)
    List(PositionalArgs),
    /// Change key (password); creates a new key ID and removes the old key ID, returns new key ID
    Passwd(KeyAddArgs),
    /// Remove key ID (password) from the repository.
    Remove(PositionalArgs),
}

/// Flags of `key add` and `key passwd`.
#[derive(Args, Debug, Default)]
pub struct KeyAddArgs {
    /// File from which to read the new password
    #[arg(long = "new-password-file", value_name = "FILE")]
    pub new_password_file: Option<String>,
    /// Add an empty password for the repository (insecure)
    #[arg(long = "new-insecure-no-password")]
    pub new_insecure_no_password: bool,
    /// The username for new key
    #[arg(long = "user", value_name = "USER")]
    pub user: Option<String>,
    /// The hostname for new key
    #[arg(long = "host", value_name = "HOST")]
    pub host: Option<String>,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct StatsArgs {
    /// Counting mode: restore-size (default), files-by-contents, blobs-per-file or raw-data
    #[arg(long = "mode", default_value = "restore-size", value_name = "MODE")]
    pub mode: String,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct TagArgs {
    /// Tags which will replace the existing tags in the format tag[,tag,...]
    #[arg(long = "set", action = ArgAction::Append, value_name = "TAGS")]
    pub set: Vec<String>,
    /// Tags which will be added to the existing tags
    #[arg(long = "add", action = ArgAction::Append, value_name = "TAGS")]
    pub add: Vec<String>,
    /// Tags which will be removed from the existing tags
    #[arg(long = "remove", action = ArgAction::Append, value_name = "TAGS")]
    pub remove: Vec<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct DiffArgs {
    /// Print changes in metadata
    #[arg(long = "metadata")]
    pub metadata: bool,
    /// Two snapshot IDs
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct FindArgs {
    /// Oldest modification date/time
    #[arg(short = 'O', long = "oldest", value_name = "STRING")]
    pub oldest: Option<String>,
    /// Newest modification date/time
    #[arg(short = 'N', long = "newest", value_name = "STRING")]
    pub newest: Option<String>,
    /// Snapshot ID to search in (can be given multiple times)
    #[arg(short = 's', long = "snapshot", action = ArgAction::Append, value_name = "ID")]
    pub snapshot: Vec<String>,
    /// Pattern is a blob-ID
    #[arg(long = "blob")]
    pub blob: bool,
    /// Pattern is a tree-ID
    #[arg(long = "tree")]
    pub tree: bool,
    /// Pattern is a pack-ID
    #[arg(long = "pack")]
    pub pack: bool,
    /// Display the pack-ID the blobs belong to
    #[arg(long = "show-pack-id")]
    pub show_pack_id: bool,
    /// Ignore case for pattern
    #[arg(short = 'i', long = "ignore-case")]
    pub ignore_case: bool,
    /// Reverse sort order oldest to newest
    #[arg(short = 'R', long = "reverse")]
    pub reverse: bool,
    /// Use a long listing format showing size and mode
    #[arg(short = 'l', long = "long")]
    pub long: bool,
    /// Print sizes in human readable format
    #[arg(long = "human-readable")]
    pub human_readable: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Patterns
    pub patterns: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct CopyArgs {
    #[command(flatten)]
    pub secondary: SecondaryRepoOptions,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

/// The second repository of `copy` (source) and `init` (chunker parameters):
/// `--from-*` and the legacy `--repo2` family, with their `RESTIC_FROM_*`
/// and `RESTIC_*2` variables (restic's secondary_repo.go).
#[derive(Args, Debug, Default, Clone)]
pub struct SecondaryRepoOptions {
    /// Source repository (default: $RESTIC_FROM_REPOSITORY)
    #[arg(long = "from-repo", value_name = "REPOSITORY")]
    pub from_repo: Option<String>,
    /// File from which to read the source repository location (default: $RESTIC_FROM_REPOSITORY_FILE)
    #[arg(long = "from-repository-file", value_name = "FILE")]
    pub from_repository_file: Option<String>,
    /// File to read the source repository password from (default: $RESTIC_FROM_PASSWORD_FILE)
    #[arg(long = "from-password-file", value_name = "FILE")]
    pub from_password_file: Option<String>,
    /// Key ID of key to try decrypting the source repository first (default: $RESTIC_FROM_KEY_HINT)
    #[arg(long = "from-key-hint", value_name = "KEY")]
    pub from_key_hint: Option<String>,
    /// Shell command to obtain the source repository password from (default: $RESTIC_FROM_PASSWORD_COMMAND)
    #[arg(long = "from-password-command", value_name = "COMMAND")]
    pub from_password_command: Option<String>,
    /// Use an empty password for the source repository (insecure)
    #[arg(long = "from-insecure-no-password")]
    pub from_insecure_no_password: bool,
    /// Deprecated: use --repo or --from-repo (default: $RESTIC_REPOSITORY2)
    #[arg(long = "repo2", value_name = "REPOSITORY", hide = true)]
    pub repo2: Option<String>,
    /// Deprecated: use --repository-file or --from-repository-file (default: $RESTIC_REPOSITORY_FILE2)
    #[arg(long = "repository-file2", value_name = "FILE", hide = true)]
    pub repository_file2: Option<String>,
    /// File to read the legacy secondary repository password from (default: $RESTIC_PASSWORD_FILE2)
    #[arg(long = "password-file2", value_name = "FILE", hide = true)]
    pub password_file2: Option<String>,
    /// Key ID to try first in the legacy secondary repository (default: $RESTIC_KEY_HINT2)
    #[arg(long = "key-hint2", value_name = "KEY", hide = true)]
    pub key_hint2: Option<String>,
    /// Shell command for the legacy secondary repository password (default: $RESTIC_PASSWORD_COMMAND2)
    #[arg(long = "password-command2", value_name = "COMMAND", hide = true)]
    pub password_command2: Option<String>,
}

/// `repair index|packs|snapshots`.
#[derive(Args, Debug)]
pub struct RepairArgs {
    #[command(subcommand)]
    pub command: RepairCommand,
}

/// The subcommands of `repair`.
#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Build a new index
    Index(RepairIndexArgs),
    /// Salvage damaged pack files
    Packs(PositionalArgs),
    /// Repair snapshots
    Snapshots(RepairSnapshotsArgs),
}

#[derive(Args, Debug, Default)]
pub struct RepairIndexArgs {
    /// Read all pack files to generate new index from scratch
    #[arg(long = "read-all-packs")]
    pub read_all_packs: bool,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RepairSnapshotsArgs {
    /// Do not do anything, just print what would be done
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Remove original snapshots after creating new ones
    #[arg(long = "forget")]
    pub forget: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct GenerateArgs {
    /// Write man pages to directory
    #[arg(long = "man", value_name = "DIRECTORY")]
    pub man: Option<String>,
    /// Write bash completion file
    #[arg(long = "bash-completion", value_name = "FILE")]
    pub bash_completion: Option<String>,
    /// Write fish completion file
    #[arg(long = "fish-completion", value_name = "FILE")]
    pub fish_completion: Option<String>,
    /// Write zsh completion file
    #[arg(long = "zsh-completion", value_name = "FILE")]
    pub zsh_completion: Option<String>,
    /// Write powershell completion file
    #[arg(long = "powershell-completion", value_name = "FILE")]
    pub powershell_completion: Option<String>,
    /// Positional arguments are ignored
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct MigrateArgs {
    /// Apply a migration a second time
    #[arg(short = 'f', long = "force")]
    pub force: bool,
    /// Migration names
    pub args: Vec<String>,
}

/// The exclude flags of `backup` and `rewrite` (restic's
/// `filter.ExcludePatternOptions`).
#[derive(Args, Debug, Default, Clone)]
pub struct ExcludePatternOptions {
    /// Exclude a pattern (can be specified multiple times)
    #[arg(short = 'e', long = "exclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub exclude: Vec<String>,
    /// Same as --exclude pattern but ignores the casing of filenames
    #[arg(long = "iexclude", action = ArgAction::Append, value_name = "PATTERN")]
    pub iexclude: Vec<String>,
    /// Read exclude patterns from a file (can be specified multiple times)
    #[arg(long = "exclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub exclude_file: Vec<String>,
    /// Same as --exclude-file but ignores casing of filenames in patterns
    #[arg(long = "iexclude-file", action = ArgAction::Append, value_name = "FILE")]
    pub iexclude_file: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct RewriteArgs {
    /// Remove original snapshots after creating new ones
    #[arg(long = "forget")]
    pub forget: bool,
    /// Do not do anything, just print what would be done
    #[arg(short = 'n', long = "dry-run")]
    pub dry_run: bool,
    /// Replace hostname
    #[arg(long = "new-host", value_name = "HOST")]
    pub new_host: Option<String>,
    /// Replace time of the backup
    #[arg(long = "new-time", value_name = "TIME")]
    pub new_time: Option<String>,
    /// Create snapshot summary record if it does not exist
    #[arg(short = 's', long = "snapshot-summary")]
    pub snapshot_summary: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    #[command(flatten)]
    pub excludes: ExcludePatternOptions,
    /// Snapshot IDs
    pub ids: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct CacheArgs {
    /// Remove old cache directories
    #[arg(long = "cleanup")]
    pub cleanup: bool,
    /// Max age in days for cache directories to be considered old
    #[arg(long = "max-age", value_name = "DAYS", default_value_t = 30)]
    pub max_age: u64,
    /// Do not output the size of the cache directories
    #[arg(long = "no-size")]
    pub no_size: bool,
    /// Positional arguments are rejected
    pub args: Vec<String>,
}

#[derive(Args, Debug, Default)]
pub struct SelfUpdateArgs {
    /// Save the downloaded file as filename (default: running binary itself)
    #[arg(long = "output", value_name = "FILENAME")]
    pub output: Option<String>,
    /// Positional arguments are ignored
    pub args: Vec<String>,
}

/// The clap command tree restix parses with, named as invoked. clap's own
/// help flag and help subcommand are off: [`crate::pflag`] reads `-h`,
/// `--help` and `help <topic>` and [`crate::help`] prints cobra's layout.
pub fn command_tree(program: &str) -> clap::Command {
    use clap::CommandFactory;
    fn quiet(command: clap::Command) -> clap::Command {
        command
            .disable_help_flag(true)
            .disable_help_subcommand(true)
            .mut_subcommands(quiet)
    }
    quiet(
        Cli::command()
            .name(program.to_string())
            .bin_name(program.to_string()),
    )
}

/// Rewrite a restic-style argv into the canonical line clap parses (see
/// [`crate::pflag`]). Errors are pflag's and cobra's messages; a request
/// for help is reported as the error `help requested`.
pub fn normalize_args(argv: &[String]) -> Result<Vec<String>, String> {
    let program = crate::pflag::program_name(argv.first().map(String::as_str));
    match crate::pflag::interpret(&command_tree(&program), argv) {
        Ok(crate::pflag::Request::Run { argv, .. }) => Ok(argv),
        Ok(_) => Err("help requested".to_string()),
        Err(failure) => Err(failure.message),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(line: &[&str]) -> Vec<String> {
        line.iter().map(|s| s.to_string()).collect()
    }

    fn parse(line: &[&str]) -> Cli {
        let normalized = normalize_args(&argv(line)).unwrap();
        match Cli::try_parse_from(&normalized) {
            Ok(cli) => cli,
            Err(e) => panic!("failed to parse {line:?} (as {normalized:?}): {e}"),
        }
    }

    #[test]
    fn command_moved_first() {
        assert_eq!(
            normalize_args(&argv(&[
                "restic", "--json", "--repo", "R", "-o", "a=b", "backup", "/p"
            ]))
            .unwrap(),
            argv(&[
                "restic",
                "backup",
                "--json",
                "--repo=R",
                "--option=a=b",
                "--",
                "/p"
            ])
        );
        assert_eq!(
            normalize_args(&argv(&["restic", "-rR", "snapshots"])).unwrap(),
            argv(&["restic", "snapshots", "--repo=R"])
        );
    }

    #[test]
    fn bool_values_and_verbose_level() {
        assert_eq!(
            normalize_args(&argv(&[
                "restic",
                "version",
                "--insecure-tls=true",
                "--json=false",
                "--verbose=2"
            ]))
            .unwrap(),
            argv(&[
                "restic",
                "version",
                "--insecure-tls",
                "--verbose",
                "--verbose"
            ])
        );
        assert!(normalize_args(&argv(&["restic", "version", "--json=maybe"])).is_err());
    }

    #[test]
    fn every_command_takes_positionals_and_has_long_flags() {
        // The canonical line puts positionals after `--`: every runnable
        // command must accept them (and check them itself, as restic does).
        fn visit(command: &clap::Command, path: &str) {
            if command.has_subcommands() {
                for sub in command.get_subcommands() {
                    visit(sub, &format!("{path} {}", sub.get_name()));
                }
                return;
            }
            assert!(
                command.get_arguments().any(|a| a.is_positional()),
                "{path} takes no positional arguments"
            );
            for arg in command.get_arguments().filter(|a| !a.is_positional()) {
                assert!(
                    arg.get_long().is_some(),
                    "{path}: {:?} has no long name",
                    arg.get_id()
                );
            }
        }
        for sub in command_tree("restic").get_subcommands() {
            visit(sub, sub.get_name());
        }
    }

    // spec: callers §1.5 (OpenNebula), rendered exactly as the shell passes them.
    #[test]
    fn opennebula_lines_parse() {
        let repo = "--repo=sftp:oneadmin@192.168.1.8:/var/lib/one/datastores/100/42";
        let cli = parse(&[
            "restic",
            "--limit-upload=-1",
            "--limit-download=-1",
            repo,
            "stats",
        ]);
        assert!(matches!(cli.command, Some(Command::Stats(_))));
        assert_eq!(cli.global.limit_upload, Some(-1));
        let cli = parse(&[
            "restic",
            "--limit-upload=1",
            "--limit-download=1",
            repo,
            "init",
        ]);
        assert!(matches!(cli.command, Some(Command::Init(_))));

        let cli = parse(&[
            "restic",
            "--force",
            "--json",
            "--tag=one-42",
            "--limit-upload=-1",
            "--limit-download=-1",
            "--option=sftp.connections=8",
            "--compression=max",
            repo,
            "backup",
            "/var/lib/one/datastores/0/42/backup/disk.0.0",
            "/var/lib/one/datastores/0/42/backup/disk.tpm.0",
            "/var/lib/one/datastores/0/42/backup/vm.xml",
        ]);
        assert!(cli.global.json);
        assert_eq!(cli.global.option, vec!["sftp.connections=8"]);
        assert_eq!(cli.global.compression.as_deref(), Some("max"));
        let Some(Command::Backup(backup)) = cli.command else {
            panic!("not backup")
        };
        assert!(backup.force);
        assert_eq!(backup.tag, vec!["one-42"]);
        assert_eq!(backup.paths.len(), 3);

        // S3 variant with --cacert and bare --insecure-tls.
        let cli = parse(&[
            "restic",
            "--force",
            "--json",
            "--tag=one-42",
            "--option=s3.bucket-lookup=path",
            "--cacert=/etc/ca.pem",
            "--insecure-tls",
            "--compression=off",
            "--repo=s3:s3.amazonaws.com/bucket/42",
            "backup",
            "/b/disk.0.0",
        ]);
        assert!(cli.global.insecure_tls);
        assert_eq!(cli.global.cacert, vec!["/etc/ca.pem"]);

        // Cancel, listing, dump, forget, flatten.
        let cli = parse(&[
            "restic",
            "--limit-upload=-1",
            "--limit-download=-1",
            repo,
            "unlock",
        ]);
        assert!(matches!(cli.command, Some(Command::Unlock(_))));
        let cli = parse(&[
            "restic",
            "--no-lock",
            "--json",
            repo,
            "snapshots",
            "f130ed80",
            "1995054d",
        ]);
        assert!(cli.global.no_lock && cli.global.json);
        let Some(Command::Snapshots(snapshots)) = cli.command else {
            panic!("not snapshots")
        };
        assert_eq!(snapshots.ids, vec!["f130ed80", "1995054d"]);
        let cli = parse(&[
            "restic",
            "--quiet",
            "--option=sftp.connections=3",
            "--repo=/var/lib/one/datastores/100/42",
            "dump",
            "f130ed80",
            "/var/lib/one/datastores/0/42/backup/disk.0.3",
        ]);
        assert!(cli.global.quiet);
        let Some(Command::Dump(dump)) = cli.command else {
            panic!("not dump")
        };
        assert_eq!(dump.args.len(), 2);
        let cli = parse(&[
            "restic",
            "--prune",
            "--max-repack-size=10G",
            "--max-unused=0",
            "--limit-upload=-1",
            "--limit-download=-1",
            repo,
            "forget",
            "f130ed80",
            "1995054d",
        ]);
        let Some(Command::Forget(forget)) = cli.command else {
            panic!("not forget")
        };
        assert!(forget.prune);
        assert_eq!(forget.prune_options.max_unused.as_deref(), Some("0"));
        assert_eq!(forget.prune_options.max_repack_size.as_deref(), Some("10G"));
        assert_eq!(forget.ids, vec!["f130ed80", "1995054d"]);
        let cli = parse(&[
            "restic",
            "--force",
            "--json",
            "--tag=one-42",
            "--time=2024-07-29 10:00:00",
            "--repo=/var/lib/one/datastores/100/42",
            "backup",
            "/var/lib/one/datastores/0/42/backup/disk.0.3",
            "/var/lib/one/datastores/0/42/backup/vm.xml",
        ]);
        let Some(Command::Backup(backup)) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(backup.time.as_deref(), Some("2024-07-29 10:00:00"));
    }

    // spec: callers §2.2 (Velero): command first, flags after positionals.
    #[test]
    fn velero_lines_parse() {
        let common = [
            "--repo=s3:http://minio.velero.svc:9000/velero/restic/default",
            "--password-file=/tmp/credentials",
            "--cacert=/tmp/cacert",
            "--cache-dir=/scratch/.cache/restic",
        ];
        let with = |head: &[&str], tail: &[&str]| -> Vec<String> {
            let mut line = vec!["restic".to_string()];
            line.extend(head.iter().map(|s| s.to_string()));
            line.extend(common.iter().map(|s| s.to_string()));
            line.extend(tail.iter().map(|s| s.to_string()));
            line
        };
        let parse_owned = |line: Vec<String>| -> Cli {
            let refs: Vec<&str> = line.iter().map(String::as_str).collect();
            parse(&refs)
        };

        let cli = parse_owned(with(
            &["backup"],
            &[
                ".",
                "--tag=backup=b1",
                "--tag=backup-uid=u1",
                "--tag=pod=p",
                "--tag=pod-uid=pu",
                "--tag=ns=default",
                "--tag=volume=v",
                "--tag=pvc-uid=x",
                "--host=velero",
                "--json",
                "--insecure-tls=true",
                "--parent=1a2b3c4d",
            ],
        ));
        assert_eq!(
            cli.global.password_file.as_deref(),
            Some("/tmp/credentials")
        );
        assert_eq!(
            cli.global.cache_dir.as_deref(),
            Some("/scratch/.cache/restic")
        );
        assert!(cli.global.json && cli.global.insecure_tls);
        let Some(Command::Backup(backup)) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(backup.paths, vec!["."]);
        assert_eq!(backup.tag.len(), 7);
        assert_eq!(backup.tag[0], "backup=b1");
        assert_eq!(backup.host.as_deref(), Some("velero"));
        assert_eq!(backup.parent.as_deref(), Some("1a2b3c4d"));

        let cli = parse_owned(with(
            &["snapshots"],
            &[
                "--json",
                "--latest=1",
                "--tag=backup=b1,backup-uid=u1,pod=p",
                "--insecure-tls=true",
            ],
        ));
        let Some(Command::Snapshots(snapshots)) = cli.command else {
            panic!("not snapshots")
        };
        assert_eq!(snapshots.latest, Some(1));
        assert_eq!(snapshots.filter.tag, vec!["backup=b1,backup-uid=u1,pod=p"]);
        let cli = parse_owned(with(&["snapshots"], &["--latest=1", "--tag="]));
        let Some(Command::Snapshots(snapshots)) = cli.command else {
            panic!("not snapshots")
        };
        assert_eq!(snapshots.filter.tag, vec![""]);

        let cli = parse_owned(with(
            &["restore"],
            &["1a2b3c4d", "--target=.", "--insecure-tls=true", "--sparse"],
        ));
        let Some(Command::Restore(restore)) = cli.command else {
            panic!("not restore")
        };
        assert_eq!(restore.args, vec!["1a2b3c4d"]);
        assert_eq!(restore.target.as_deref(), Some("."));
        assert!(restore.sparse);

        let cli = parse_owned(with(
            &["stats"],
            &["1a2b3c4d", "--json", "--insecure-tls=true"],
        ));
        assert!(matches!(cli.command, Some(Command::Stats(_))));
        for command in ["init", "prune", "unlock"] {
            let cli = parse_owned(with(&[command], &["--insecure-tls=true"]));
            assert_eq!(cli.command.map(|c| c.name()), Some(command));
        }
        let cli = parse_owned(with(&["forget"], &["1a2b3c4d", "--insecure-tls=true"]));
        let Some(Command::Forget(forget)) = cli.command else {
            panic!("not forget")
        };
        assert_eq!(forget.ids, vec!["1a2b3c4d"]);
        let cli = parse_owned(with(&["snapshots"], &["--last"]));
        assert!(matches!(cli.command, Some(Command::Snapshots(s)) if s.last));
    }

    #[test]
    fn restic_style_variants() {
        let cli = parse(&["restic", "--json", "--tag=x", "--repo=R", "backup", "/p"]);
        assert_eq!(cli.global.repo.as_deref(), Some("R"));
        let cli = parse(&["restic", "backup", "/p", "--repo=R", "--json"]);
        assert!(cli.global.json);
        let cli = parse(&["restic", "-r", "R", "-p", "pwfile", "-q", "snapshots"]);
        assert_eq!(cli.global.password_file.as_deref(), Some("pwfile"));
        assert!(cli.global.quiet);
        let cli = parse(&[
            "restic", "-vv", "-r", "R", "backup", "--tag", "a", "--tag", "b", "/p",
        ]);
        assert_eq!(cli.global.verbose, 2);
        let cli = parse(&[
            "restic",
            "backup",
            "-v",
            "/p",
            "-o",
            "sftp.command=ssh x",
            "-o",
            "k=v",
        ]);
        assert_eq!(cli.global.option, vec!["sftp.command=ssh x", "k=v"]);
        assert_eq!(cli.global.verbose, 1);
        let cli = parse(&["restic", "--limit-upload", "-1", "-r", "R", "snapshots"]);
        assert_eq!(cli.global.limit_upload, Some(-1));
        let cli = parse(&[
            "restic",
            "-r",
            "R",
            "backup",
            "--exclude",
            "*.tmp",
            "-e",
            "x",
            "--stdin",
            "--stdin-filename",
            "f.txt",
        ]);
        let Some(Command::Backup(backup)) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(backup.exclude, vec!["*.tmp", "x"]);
        assert!(backup.stdin);
        let cli = parse(&[
            "restic",
            "-r",
            "R",
            "restore",
            "latest:/data",
            "-t",
            "/out",
            "--include",
            "/a",
        ]);
        assert!(matches!(cli.command, Some(Command::Restore(_))));
        let cli = parse(&["restic", "-r", "R", "ls", "-l", "latest", "/data"]);
        assert!(matches!(cli.command, Some(Command::Ls(l)) if l.long));
        let cli = parse(&["restic", "-r", "R", "forget", "-l", "3", "--dry-run"]);
        assert!(
            matches!(cli.command, Some(Command::Forget(f)) if f.keep_last.as_deref() == Some("3"))
        );
        let cli = parse(&["restic", "--threads", "4", "-r", "R", "version"]);
        assert_eq!(cli.global.threads, Some(4));
    }

    #[test]
    fn unknown_flag_rejected() {
        assert_eq!(
            normalize_args(&argv(&["restic", "snapshots", "--foo"])),
            Err("unknown flag: --foo".to_string())
        );
    }
}

// ---- mount and serve-nbd (issue #19) ----

/// restic's default `--time-template`: Go's `time.RFC3339`.
const RFC3339_LAYOUT: &str = "2006-01-02T15:04:05Z07:00";

/// `mount` flags (restic 0.18.1 `cmd_mount.go`), plus restix's `--blob-cache`.
#[derive(Args, Debug, Default)]
pub struct MountArgs {
    /// Use 'root' as the owner of files and dirs
    #[arg(long = "owner-root")]
    pub owner_root: bool,
    /// Allow other users to access the data in the mounted directory
    #[arg(long = "allow-other")]
    pub allow_other: bool,
    /// For 'allow-other', ignore Unix permissions and allow users to read all snapshot files
    #[arg(long = "no-default-permissions")]
    pub no_default_permissions: bool,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// Set template for path names (can be specified multiple times)
    #[arg(long = "path-template", action = ArgAction::Append, value_name = "TEMPLATE")]
    pub path_template: Vec<String>,
    /// Set template to use for times
    #[arg(
        long = "time-template",
        alias = "snapshot-template",
        value_name = "TEMPLATE",
        default_value = RFC3339_LAYOUT
    )]
    pub time_template: String,
    /// Size of the cache of decrypted file data (allowed suffixes: k/K, m/M, g/G, t/T) (default: 128M)
    #[arg(long = "blob-cache", value_name = "SIZE")]
    pub blob_cache: Option<String>,
    /// The mountpoint
    pub args: Vec<String>,
}

/// `serve-nbd` flags (restix only).
#[derive(Args, Debug, Default)]
pub struct ServeNbdArgs {
    /// Address to listen on: HOST:PORT, :PORT, or unix:PATH / an absolute socket path
    #[arg(
        long = "listen",
        value_name = "ADDRESS",
        default_value = "127.0.0.1:10809"
    )]
    pub listen: String,
    /// Export name clients ask for (the empty name works too) (default: the file's name)
    #[arg(long = "export-name", value_name = "NAME")]
    pub export_name: Option<String>,
    /// Size of the cache of decrypted file data (allowed suffixes: k/K, m/M, g/G, t/T) (default: 128M)
    #[arg(long = "blob-cache", value_name = "SIZE")]
    pub blob_cache: Option<String>,
    #[command(flatten)]
    pub filter: SnapshotFilterOptions,
    /// SNAPSHOT[:PATH]: the snapshot and, unless it holds a single file, the file to serve
    pub args: Vec<String>,
}
