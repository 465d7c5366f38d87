//! The blob cache and loader threads through which `mount` and
//! `serve-nbd` read file data.

use crate::engine_glue::OpenedRepository;
use crate::errors::fatal;
use crate::options;

/// The blob cache and loader threads `mount` and `serve-nbd` read file
/// data through: `--blob-cache SIZE` (default 128 MiB), two loads in
/// flight per backend connection, at least four.
pub fn blob_source(
    opened: &OpenedRepository,
    cache_flag: Option<&str>,
) -> anyhow::Result<std::sync::Arc<restix_engine::vfs::BlobSource>> {
    let bytes = match cache_flag {
        Some(text) => options::parse_size(text).map_err(|e| {
            fatal(format!(
                "invalid argument \"{text}\" for \"--blob-cache\" flag: {e}"
            ))
        })?,
        None => restix_engine::vfs::DEFAULT_CACHE_BYTES,
    };
    let loaders = (opened.repo.backend().connections() * 2).max(4);
    Ok(restix_engine::vfs::BlobSource::new(
        std::sync::Arc::clone(&opened.repo),
        bytes,
        loaders,
    ))
}
