//! The words of `restix help`: each command's usage line (restic 0.18.1's
//! `Use`), a description in restix's words, examples where restic has
//! them, and the exit statuses the command can end with.
//!
//! [`crate::help`] lays these out as cobra does; a command missing here
//! falls back to its clap `about` text.

/// Exit statuses a command documents (restic's EXIT STATUS sections).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatuses {
    /// 0 success, 1 any error.
    Simple,
    /// 0, 1, and 10/11/12 for a missing, locked or wrongly unlocked repository.
    Repository,
    /// `backup`: 0, 1 (no snapshot), 3 (incomplete snapshot), 10, 11, 12.
    Backup,
    /// No section (commands that only group subcommands).
    None,
}

impl ExitStatuses {
    /// The section as printed under the description.
    pub fn section(self) -> &'static str {
        match self {
            ExitStatuses::Simple => {
                "EXIT STATUS\n===========\n\nExit status is 0 if the command was successful.\nExit status is 1 if there was any error.\n"
            }
            ExitStatuses::Repository => {
                "EXIT STATUS\n===========\n\nExit status is 0 if the command was successful.\nExit status is 1 if there was any error.\nExit status is 10 if the repository does not exist.\nExit status is 11 if the repository is already locked.\nExit status is 12 if the password is incorrect.\n"
            }
            ExitStatuses::Backup => {
                "EXIT STATUS\n===========\n\nExit status is 0 if the command was successful.\nExit status is 1 if there was a fatal error (no snapshot created).\nExit status is 3 if some source data could not be read (incomplete snapshot created).\nExit status is 10 if the repository does not exist.\nExit status is 11 if the repository is already locked.\nExit status is 12 if the password is incorrect.\n"
            }
            ExitStatuses::None => "",
        }
    }
}

/// Help words of one command.
#[derive(Debug, Clone, Copy)]
pub struct CommandText {
    /// The usage pattern after the parent's path (`backup [flags] [FILE/DIR] ...`).
    pub usage: &'static str,
    /// What the command does (a few sentences).
    pub description: &'static str,
    /// Example command lines, one per line, written for `restic`.
    pub examples: &'static str,
    pub exit: ExitStatuses,
}

const fn text(usage: &'static str, description: &'static str, exit: ExitStatuses) -> CommandText {
    CommandText {
        usage,
        description,
        examples: "",
        exit,
    }
}

/// The root command's description.
pub const ROOT_DESCRIPTION: &str =
    "restix keeps versioned, encrypted, deduplicated backups of files, folders and
VM disk images in restic repositories. It reads and writes the repository
format of restic byte for byte and accepts restic 0.18's command line, so it
can run wherever restic runs.";

/// Help words of the command at `path` (`"backup"`, `"key add"`).
pub fn command_text(path: &str) -> Option<CommandText> {
    use ExitStatuses::{Backup, Repository, Simple};
    let found = match path {
        "backup" => text(
            "backup [flags] [FILE/DIR] ...",
            "Saves the given files and folders (or standard input, or a VM disk image
with --image) as a new snapshot. Data already in the repository is not stored
again; files unchanged since the parent snapshot are not read again.",
            Backup,
        ),
        "cache" => text(
            "cache",
            "Lists the local cache folders (one per repository), with their size and
age, and removes the old ones with --cleanup.",
            Simple,
        ),
        "cat" => text(
            "cat [flags] [masterkey|config|pack ID|blob ID|snapshot ID|index ID|key ID|lock ID|tree snapshot:subfolder]",
            "Prints a repository object: decrypted JSON for config, index, snapshot, key
and lock files, the raw content of blobs and packs.",
            Repository,
        ),
        "check" => text(
            "check [flags]",
            "Verifies the repository's structure: the index against the pack files, and
every snapshot's trees and the blobs they reference. With --read-data or
--read-data-subset it also reads pack files and verifies their content.",
            Repository,
        ),
        "copy" => text(
            "copy [flags] [snapshotID ...]",
            "Copies snapshots from the repository given with --from-repo into the one
given with --repo. Snapshots already copied are skipped. Both repositories
should use the same chunker parameters (init --copy-chunker-params), or the
copied data is not deduplicated against later backups.",
            Repository,
        ),
        "diff" => text(
            "diff [flags] snapshotID snapshotID",
            "Shows which files and folders were added (+), removed (-) or modified (M)
between two snapshots, and how much data was added and removed.",
            Repository,
        ),
        "dump" => text(
            "dump [flags] snapshotID file",
            "Writes one backed-up file to standard output (or --target), or a folder as
a tar or zip archive. `latest` names the newest snapshot.",
            Repository,
        ),
        "features" => text(
            "features",
            "Lists the feature flags, their state and default. Set RESTIC_FEATURES to
\"name=true,other=false\" to switch alpha and beta features; an unknown name
is an error.",
            Simple,
        ),
        "find" => CommandText {
            usage: "find [flags] PATTERN...",
            description: "Searches the snapshots for files and folders whose name matches a pattern,
or, with --blob, --tree or --pack, for repository objects by ID. Snapshots
are searched newest first (--reverse: oldest first).",
            examples: "restic find config.json
restic find --json \"*.yml\" \"*.json\"
restic find --json --blob 420f620f b46ebe8a ddd38656
restic find --show-pack-id --blob 420f620f
restic find --tree 577c2bc9 f81f2e22 a62827a9
restic find --pack 025c1d06",
            exit: Repository,
        },
        "forget" => text(
            "forget [flags] [snapshot ID] [...]",
            "Removes the given snapshots, or those a --keep-* policy does not keep
(decided per group of host and paths). Only the snapshot records are removed;
run prune (or add --prune) to free the space of data nothing uses any more.",
            Repository,
        ),
        "generate" => text(
            "generate [flags]",
            "Writes man pages (--man) and shell completion files for bash, fish, zsh
and PowerShell (`-` writes a completion to standard output).",
            Simple,
        ),
        "init" => text(
            "init",
            "Creates a new, empty repository at the location given with --repo.",
            Simple,
        ),
        "key" => text(
            "key",
            "Manages the keys (passwords) that open the repository; every key unlocks
the same data.",
            ExitStatuses::None,
        ),
        "key add" => text(
            "add",
            "Adds a key with a new password and prints its ID.",
            Repository,
        ),
        "key list" => text(
            "list",
            "Lists the keys of the repository; the one used now is marked with `*`.",
            Repository,
        ),
        "key passwd" => text(
            "passwd",
            "Changes the password: adds a key with the new password and removes the
key that opened the repository.",
            Repository,
        ),
        "key remove" => text(
            "remove [ID]",
            "Removes the key with the given ID. The key in use cannot be removed.",
            Repository,
        ),
        "list" => text(
            "list [flags] [blobs|packs|index|snapshots|keys|locks]",
            "Lists the IDs of all objects of one kind.",
            Repository,
        ),
        "ls" => text(
            "ls [flags] snapshotID [dir...]",
            "Lists the files and folders of a snapshot, or of the given folders in it.
`latest` names the newest snapshot.",
            Repository,
        ),
        "migrate" => text(
            "migrate [flags] [migration name] [...]",
            "Without arguments, lists the migrations the repository can use. With
names, applies them (upgrade_repo_v2 converts a version 1 repository to
version 2, which allows compression).",
            Repository,
        ),
        "mount" => text(
            "mount [flags] mountpoint",
            "Makes the snapshots browsable as a read-only file system.",
            Repository,
        ),
        "options" => text(
            "options",
            "Lists the extended options (-o key=value) restix understands.",
            Simple,
        ),
        "prune" => text(
            "prune [flags]",
            "Deletes data no snapshot uses any more, repacking pack files that hold
both used and unused data.",
            Repository,
        ),
        "rebuild-index" | "repair index" => text(
            if path == "repair index" {
                "index [flags]"
            } else {
                "rebuild-index [flags]"
            },
            "Writes a new index from the pack files in the repository and removes the
old index files.",
            Repository,
        ),
        "recover" => text(
            "recover [flags]",
            "Finds trees no snapshot refers to and saves a new snapshot that contains
them, so data stored by an interrupted or forgotten backup can be restored.",
            Repository,
        ),
        "repair" => text(
            "repair",
            "Repairs a damaged repository.",
            ExitStatuses::None,
        ),
        "repair packs" => text(
            "packs [packIDs...]",
            "Reads the given pack files, stores every blob that can still be read in
new packs and removes the damaged pack files. Run `repair snapshots` next.",
            Repository,
        ),
        "repair snapshots" => text(
            "snapshots [flags] [snapshot ID] [...]",
            "Rewrites snapshots that refer to missing or damaged data: files lose the
parts that are missing, unreadable folders become empty. The new snapshots
get the tag `repaired`; --forget removes the old ones.",
            Repository,
        ),
        "restore" => text(
            "restore [flags] snapshotID",
            "Restores a snapshot (or `ID:subfolder`) into the folder given with
--target. `latest` names the newest snapshot.",
            Repository,
        ),
        "restore-chain" => text(
            "restore-chain [flags] snapshotID",
            "Flattens an OpenNebula backup chain (a full image and its qcow2
increments) into one image, without qemu-img.",
            Repository,
        ),
        "rewrite" => text(
            "rewrite [flags] [snapshotID ...]",
            "Stores new versions of snapshots without the files the exclude patterns
match, or with a new host name or time. The new snapshots keep a reference
to the original; --forget removes the originals. Run prune afterwards to
free the space of the excluded data.",
            Repository,
        ),
        "self-update" => text(
            "self-update [flags]",
            "restic downloads its latest release here. This build of restix does not
update itself: install a new release the way this one was installed.",
            Repository,
        ),
        "snapshots" => text(
            "snapshots [flags] [snapshotID ...]",
            "Lists the snapshots in the repository.",
            Repository,
        ),
        "stats" => text(
            "stats [flags] [snapshot ID] [...]",
            "Counts files and bytes of snapshots: as restored (restore-size), unique
file contents (files-by-contents), blobs (raw-data), or blobs per file.",
            Repository,
        ),
        "tag" => text(
            "tag [flags] [snapshotID ...]",
            "Sets, adds or removes tags of snapshots. A changed snapshot is stored
anew and keeps a reference to the original.",
            Repository,
        ),
        "unlock" => text(
            "unlock",
            "Removes stale locks (those of processes that no longer run);
--remove-all removes every lock.",
            Simple,
        ),
        "version" => text(
            "version",
            "Prints the version of restix and the platform it was built for.",
            Simple,
        ),
        _ => return None,
    };
    Some(found)
}

/// cobra's command groups in the root's help.
pub fn group_of(name: &str) -> &'static str {
    match name {
        "features" | "options" => "Advanced Options:",
        "generate" | "help" | "self-update" | "version" => "Additional Commands:",
        _ => "Available Commands:",
    }
}
