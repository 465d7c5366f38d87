//! `azure:` repository locations, parsed the way restic parses them
//! (restic `internal/backend/azure/config.go`, facts only):
//! `azure:<container>:/<prefix>`. The prefix is `path.Clean`ed and loses
//! its leading `/`; `azure:c:/` and `azure:c:` put the repository at the
//! root of the container.

use crate::AzureError;

/// A parsed `azure:` location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureLocation {
    /// The container name.
    pub container: String,
    /// Blob-name prefix of the repository (`""` = container root).
    pub prefix: String,
    /// The location as written.
    pub text: String,
}

impl AzureLocation {
    /// Parse `azure:<container>:/<prefix>`.
    pub fn parse(text: &str) -> Result<AzureLocation, AzureError> {
        let rest = text
            .strip_prefix("azure:")
            .ok_or_else(|| AzureError::InvalidLocation("azure: invalid format".to_string()))?;
        let Some((container, prefix)) = rest.split_once(':') else {
            return Err(AzureError::InvalidLocation(
                "azure: invalid format: bucket name or path not found".to_string(),
            ));
        };
        let cleaned = restix_backend::go_path::clean(prefix);
        let prefix = match cleaned.trim_start_matches('/') {
            "." => String::new(),
            other => other.to_string(),
        };
        Ok(AzureLocation {
            container: container.to_string(),
            prefix,
            text: text.to_string(),
        })
    }

    /// The blob name of `relative` (`config`, `data/ab/ab...`) under the
    /// prefix.
    pub fn blob_name(&self, relative: &str) -> String {
        if self.prefix.is_empty() {
            relative.to_string()
        } else {
            format!("{}/{relative}", self.prefix)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let l = AzureLocation::parse("azure:backups:/hosts/a/../b").unwrap();
        assert_eq!(l.container, "backups");
        assert_eq!(l.prefix, "hosts/b");
        assert_eq!(l.blob_name("config"), "hosts/b/config");
        for root in ["azure:c:/", "azure:c:", "azure:c:."] {
            let l = AzureLocation::parse(root).unwrap();
            assert_eq!(l.prefix, "", "{root}");
            assert_eq!(l.blob_name("keys/x"), "keys/x");
        }
        assert_eq!(
            AzureLocation::parse("azure:nocolon")
                .unwrap_err()
                .to_string(),
            "azure: invalid format: bucket name or path not found"
        );
    }
}
