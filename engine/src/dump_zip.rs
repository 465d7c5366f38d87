//! `dump --archive zip`: a folder of a snapshot as a zip archive, entry by
//! entry as restic writes it with Go's `archive/zip` (internal/dump/zip.go):
//! names relative to the dumped folder, folders with a trailing `/`,
//! files deflated, symbolic links stored with their target as content, the
//! Unix mode and the modification time (MS-DOS fields, in the node's own
//! zone) kept. The bytes differ from restic's (another deflate); the
//! content and metadata do not.

use std::io::Write;

use restix_repo_format::tree::unix_permissions_from_go;
use restix_repo_format::{GoTime, Id, NodeType};
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipWriter};

use crate::dump::{dump_file, DumpError};
use crate::repository::Repository;
use crate::walker::{self, WalkAction};

fn zip_error(e: zip::result::ZipError) -> DumpError {
    DumpError::Write(std::io::Error::other(e.to_string()))
}

/// The node's modification time as MS-DOS date fields (in its zone), or
/// the earliest date zip can store.
fn dos_time(time: &GoTime) -> DateTime {
    let local = time.unix_seconds + i64::from(time.offset_seconds);
    let days = local.div_euclid(86_400);
    let seconds = local.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let field = |v: i64| u8::try_from(v).unwrap_or(0);
    DateTime::from_date_and_time(
        u16::try_from(year).unwrap_or(1980),
        field(month),
        field(day),
        field(seconds / 3600),
        field(seconds / 60 % 60),
        field(seconds % 60),
    )
    .unwrap_or_default()
}

/// Write the descendants of tree `tree` as a zip archive; `base` is the
/// tree's path in the snapshot (`/sub`, or empty for the root).
pub fn dump_zip<W: Write>(
    repo: &Repository,
    tree: &Id,
    base: &[u8],
    writer: W,
) -> Result<(), DumpError> {
    let mut zip = ZipWriter::new_stream(writer);
    let mut failure: Option<DumpError> = None;
    walker::walk(repo, tree, |entry| {
        let mut name: Vec<u8> = base.strip_prefix(b"/").unwrap_or(base).to_vec();
        if !name.is_empty() {
            name.push(b'/');
        }
        name.extend_from_slice(entry.path.strip_prefix(b"/").unwrap_or(entry.path));
        let name = String::from_utf8_lossy(&name).into_owned();
        let node = entry.node;
        let options = SimpleFileOptions::default()
            .last_modified_time(dos_time(&node.mtime))
            .unix_permissions(unix_permissions_from_go(node.mode))
            .large_file(node.size >= u64::from(u32::MAX));
        let result = match node.node_type {
            NodeType::Dir => zip
                .add_directory(name, options.compression_method(CompressionMethod::Stored))
                .map_err(zip_error),
            NodeType::Symlink => zip
                .add_symlink(
                    name,
                    String::from_utf8_lossy(&node.linktarget),
                    options.compression_method(CompressionMethod::Stored),
                )
                .map_err(zip_error),
            NodeType::File => zip
                .start_file(
                    name,
                    options.compression_method(CompressionMethod::Deflated),
                )
                .map_err(zip_error)
                .and_then(|()| dump_file(repo, node, &mut zip).map(|_| ())),
            _ => zip
                .start_file(name, options.compression_method(CompressionMethod::Stored))
                .map_err(zip_error),
        };
        if let Err(e) = result {
            failure = Some(e);
            return Ok(WalkAction::Stop);
        }
        Ok(WalkAction::Continue)
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut inner = zip.finish().map_err(zip_error)?;
    inner.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dos_dates() {
        let t = GoTime::from_unix_utc(1_700_000_000, 0); // 2023-11-14 22:13:20 UTC
        let d = dos_time(&t);
        assert_eq!(
            (
                d.year(),
                d.month(),
                d.day(),
                d.hour(),
                d.minute(),
                d.second()
            ),
            (2023, 11, 14, 22, 13, 20)
        );
    }
}
