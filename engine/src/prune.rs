//! prune: remove unused data, repack partly used packs, rewrite the index.
