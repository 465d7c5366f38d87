//! Feature flags (`RESTIC_FEATURES`) and the `features` command's list:
//! restic 0.18.1's flags with their states, applied with its rules
//! (restic `internal/feature`).
//!
//! `RESTIC_FEATURES="name=true,other=false"` switches alpha and beta
//! features; a bare name means `true`; stable and deprecated ones only get
//! a warning; an unknown name or a value `strconv.ParseBool` refuses stops
//! the program before the command line is read.

use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A feature's maturity, as restic names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Off unless switched on; may change.
    Alpha,
    /// On unless switched off.
    Beta,
    /// Always on; the flag will go away.
    Stable,
    /// Always off; the flag will go away (no 0.18.1 feature is in this
    /// phase yet).
    #[allow(dead_code)]
    Deprecated,
}

impl Phase {
    pub fn name(self) -> &'static str {
        match self {
            Phase::Alpha => "alpha",
            Phase::Beta => "beta",
            Phase::Stable => "stable",
            Phase::Deprecated => "deprecated",
        }
    }

    pub fn default_enabled(self) -> bool {
        matches!(self, Phase::Beta | Phase::Stable)
    }
}

/// One feature flag.
#[derive(Debug, Clone, Copy)]
pub struct Feature {
    pub name: &'static str,
    pub phase: Phase,
    pub description: &'static str,
}

/// restic 0.18.1's feature flags (names and phases), described as they
/// apply to restix.
pub const FEATURES: &[Feature] = &[
    Feature {
        name: "backend-error-redesign",
        phase: Phase::Beta,
        description: "retry requests that stall longer than --stuck-request-timeout and report backend errors the new way.",
    },
    Feature {
        name: "deprecate-legacy-index",
        phase: Phase::Stable,
        description: "refuse the index format of restic 0.1.0; `restic repair index` rewrites such an index.",
    },
    Feature {
        name: "deprecate-s3-legacy-layout",
        phase: Phase::Stable,
        description: "refuse the S3 layout of restic up to 0.7.0.",
    },
    Feature {
        name: "device-id-for-hardlinks",
        phase: Phase::Alpha,
        description: "store the device ID only for files with hard links, so fewer metadata changes show up (restix stores it as restic 0.18 does by default).",
    },
    Feature {
        name: "explicit-s3-anonymous-auth",
        phase: Phase::Stable,
        description: "use anonymous S3 access only when `-o s3.unsafe-anonymous-auth=true` asks for it.",
    },
    Feature {
        name: "safe-forget-keep-tags",
        phase: Phase::Stable,
        description: "`forget --keep-tag` with a tag no snapshot has does not remove every snapshot.",
    },
    Feature {
        name: "s3-restore",
        phase: Phase::Alpha,
        description: "restore S3 objects from cold storage classes when `-o s3.enable-restore=true` is set.",
    },
];

static ENABLED: OnceLock<BTreeMap<&'static str, bool>> = OnceLock::new();

/// Parse a `RESTIC_FEATURES` value: the enabled state of every feature and
/// the warnings to print, or restic's error text.
pub fn parse(value: &str) -> Result<(BTreeMap<&'static str, bool>, Vec<String>), String> {
    let mut enabled: BTreeMap<&'static str, bool> = FEATURES
        .iter()
        .map(|f| (f.name, f.phase.default_enabled()))
        .collect();
    let mut warnings = Vec::new();
    if value.is_empty() {
        return Ok((enabled, warnings));
    }
    let mut selection: Vec<(String, bool)> = Vec::new();
    for item in value.split(',') {
        let (name, setting) = item.split_once('=').unwrap_or((item, "true"));
        let on = crate::pflag::parse_go_bool(setting).ok_or_else(|| {
            format!(
                "failed to parse value {setting:?} for feature flag {name}: strconv.ParseBool: parsing {setting:?}: invalid syntax"
            )
        })?;
        selection.retain(|(n, _)| n != name);
        selection.push((name.to_string(), on));
    }
    for (name, on) in selection {
        let Some(feature) = FEATURES.iter().find(|f| f.name == name) else {
            return Err(format!("unknown feature flag {name:?}"));
        };
        match feature.phase {
            Phase::Alpha | Phase::Beta => {
                enabled.insert(feature.name, on);
            }
            Phase::Stable => warnings.push(format!(
                "feature flag {:?} is always enabled and will be removed in a future release",
                feature.name
            )),
            Phase::Deprecated => warnings.push(format!(
                "feature flag {:?} is always disabled and will be removed in a future release",
                feature.name
            )),
        }
    }
    Ok((enabled, warnings))
}

/// Read `RESTIC_FEATURES` once at start-up, print its warnings on stderr.
pub fn apply_from_env() -> Result<(), String> {
    let value = std::env::var("RESTIC_FEATURES").unwrap_or_default();
    let (enabled, warnings) = parse(&value)?;
    for warning in warnings {
        eprintln!("{warning}");
    }
    let _ = ENABLED.set(enabled);
    Ok(())
}

/// Whether the feature `name` is on (its default before start-up).
#[allow(dead_code)]
pub fn enabled(name: &str) -> bool {
    if let Some(on) = ENABLED.get().and_then(|m| m.get(name)) {
        return *on;
    }
    FEATURES
        .iter()
        .find(|f| f.name == name)
        .is_some_and(|f| f.phase.default_enabled())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restic_rules() {
        let (on, warnings) = parse("").unwrap();
        assert_eq!(on.get("backend-error-redesign"), Some(&true));
        assert_eq!(on.get("s3-restore"), Some(&false));
        assert!(warnings.is_empty());
        let (on, _) = parse("s3-restore,backend-error-redesign=false").unwrap();
        assert_eq!(on.get("s3-restore"), Some(&true));
        assert_eq!(on.get("backend-error-redesign"), Some(&false));
        let (on, warnings) = parse("safe-forget-keep-tags=false").unwrap();
        assert_eq!(on.get("safe-forget-keep-tags"), Some(&true));
        assert_eq!(
            warnings,
            vec!["feature flag \"safe-forget-keep-tags\" is always enabled and will be removed in a future release"]
        );
        assert_eq!(parse("nope").unwrap_err(), "unknown feature flag \"nope\"");
        assert_eq!(
            parse("s3-restore=maybe").unwrap_err(),
            "failed to parse value \"maybe\" for feature flag s3-restore: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
    }
}
