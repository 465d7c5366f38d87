//! Authentication: Shared Key signatures (HMAC-SHA256 over the canonical
//! request, "Authorize with Shared Key" in the Azure Storage REST reference)
//! or a SAS token appended to every URL.

use hmac::{KeyInit, Mac};
use sha2::Sha256;

use crate::AzureError;

/// How requests are authorised.
#[derive(Clone)]
pub enum Auth {
    /// `AZURE_ACCOUNT_KEY`: the decoded account key signs every request.
    SharedKey {
        /// The storage account.
        account: String,
        /// The base64-decoded key.
        key: Vec<u8>,
    },
    /// `AZURE_ACCOUNT_SAS`: the token (without a leading `?`), appended to
    /// every request's query.
    Sas(String),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Auth::SharedKey { account, .. } => write!(f, "SharedKey({account}, ***)"),
            Auth::Sas(_) => f.write_str("Sas(***)"),
        }
    }
}

/// Account name, credentials and endpoint suffix from the environment
/// (restic's `ApplyEnvironment`: `AZURE_ACCOUNT_NAME`, `AZURE_ACCOUNT_KEY`,
/// `AZURE_ACCOUNT_SAS`, `AZURE_ENDPOINT_SUFFIX`).
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// The storage account.
    pub account: String,
    /// How to authorise.
    pub auth: Auth,
    /// `AZURE_ENDPOINT_SUFFIX` (default `core.windows.net`).
    pub endpoint_suffix: String,
}

impl AccountSettings {
    /// Read the settings through `env`. A key wins over a SAS token, as in
    /// restic; without either restix has no way in (it does not implement
    /// Azure AD / `az` CLI credentials).
    pub fn from_env(env: &dyn Fn(&str) -> Option<String>) -> Result<AccountSettings, AzureError> {
        let get = |name: &str| env(name).filter(|v| !v.is_empty());
        let account = get("AZURE_ACCOUNT_NAME").ok_or_else(|| {
            AzureError::Credentials(
                "unable to open Azure backend: Account name ($AZURE_ACCOUNT_NAME) is empty"
                    .to_string(),
            )
        })?;
        let auth = if let Some(key) = get("AZURE_ACCOUNT_KEY") {
            let key = data_encoding::BASE64
                .decode(key.trim().as_bytes())
                .map_err(|e| {
                    AzureError::Credentials(format!(
                        "NewSharedKeyCredential: decode account key: {e}"
                    ))
                })?;
            Auth::SharedKey {
                account: account.clone(),
                key,
            }
        } else if let Some(sas) = get("AZURE_ACCOUNT_SAS") {
            Auth::Sas(sas.trim_start_matches('?').to_string())
        } else {
            return Err(AzureError::Credentials(
                "no credentials: set $AZURE_ACCOUNT_KEY or $AZURE_ACCOUNT_SAS \
                 (restix does not use Azure AD or Azure CLI credentials)"
                    .to_string(),
            ));
        };
        Ok(AccountSettings {
            account,
            auth,
            endpoint_suffix: get("AZURE_ENDPOINT_SUFFIX")
                .unwrap_or_else(|| "core.windows.net".to_string()),
        })
    }
}

/// The parts of a request that its Shared Key signature covers.
pub struct Signable<'a> {
    /// `GET`, `PUT`, ...
    pub method: &'a str,
    /// The URL path as sent (percent-encoded), from the first `/`.
    pub path: &'a str,
    /// Query parameters, decoded.
    pub query: &'a [(String, String)],
    /// All headers of the request, names in lower case.
    pub headers: &'a [(String, String)],
}

/// The string to sign (Shared Key, service version 2015-02-21 and later:
/// a zero `Content-Length` is written as an empty line).
pub fn string_to_sign(account: &str, request: &Signable<'_>) -> String {
    let header = |name: &str| {
        request
            .headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.trim())
            .unwrap_or("")
    };
    let content_length = match header("content-length") {
        "0" => "",
        other => other,
    };
    let mut text = String::new();
    for line in [
        request.method,
        header("content-encoding"),
        header("content-language"),
        content_length,
        header("content-md5"),
        header("content-type"),
        "", // Date: x-ms-date is sent instead
        header("if-modified-since"),
        header("if-match"),
        header("if-none-match"),
        header("if-unmodified-since"),
        header("range"),
    ] {
        text.push_str(line);
        text.push('\n');
    }
    // Canonicalized headers: every x-ms-* header, sorted, `name:value\n`.
    let mut ms: Vec<(&str, &str)> = request
        .headers
        .iter()
        .filter(|(n, _)| n.starts_with("x-ms-"))
        .map(|(n, v)| (n.as_str(), v.trim()))
        .collect();
    ms.sort();
    for (name, value) in ms {
        text.push_str(name);
        text.push(':');
        text.push_str(value);
        text.push('\n');
    }
    // Canonicalized resource: /account/path, then `\nname:v1,v2` per
    // query parameter, names lower-cased and sorted, values sorted.
    text.push('/');
    text.push_str(account);
    text.push_str(if request.path.is_empty() {
        "/"
    } else {
        request.path
    });
    let mut names: Vec<String> = request
        .query
        .iter()
        .map(|(n, _)| n.to_ascii_lowercase())
        .collect();
    names.sort();
    names.dedup();
    for name in names {
        let mut values: Vec<&str> = request
            .query
            .iter()
            .filter(|(n, _)| n.to_ascii_lowercase() == name)
            .map(|(_, v)| v.as_str())
            .collect();
        values.sort_unstable();
        text.push('\n');
        text.push_str(&name);
        text.push(':');
        text.push_str(&values.join(","));
    }
    text
}

/// `SharedKey <account>:<base64 HMAC-SHA256 of the string to sign>`.
pub fn shared_key_authorization(account: &str, key: &[u8], request: &Signable<'_>) -> String {
    let signature = signature(key, &string_to_sign(account, request));
    format!("SharedKey {account}:{signature}")
}

/// Base64 of HMAC-SHA256(`key`, `text`): the signature of Shared Key
/// requests and of SAS tokens.
pub fn signature(key: &[u8], text: &str) -> String {
    match <Hmac<Sha256> as KeyInit>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(text.as_bytes());
            data_encoding::BASE64.encode(&mac.finalize().into_bytes())
        }
        // HMAC takes keys of any length; this arm is never taken.
        Err(_) => String::new(),
    }
}

type Hmac<D> = hmac::Hmac<D>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canonical_request() {
        let query = vec![
            ("restype".to_string(), "container".to_string()),
            ("comp".to_string(), "list".to_string()),
            ("prefix".to_string(), "r/data/".to_string()),
        ];
        let headers = vec![
            ("x-ms-version".to_string(), "2021-12-02".to_string()),
            (
                "x-ms-date".to_string(),
                "Mon, 01 Jan 2024 00:00:00 GMT".to_string(),
            ),
            ("content-length".to_string(), "0".to_string()),
        ];
        let request = Signable {
            method: "GET",
            path: "/devstoreaccount1/c",
            query: &query,
            headers: &headers,
        };
        assert_eq!(
            string_to_sign("devstoreaccount1", &request),
            "GET\n\n\n\n\n\n\n\n\n\n\n\n\
             x-ms-date:Mon, 01 Jan 2024 00:00:00 GMT\nx-ms-version:2021-12-02\n\
             /devstoreaccount1/devstoreaccount1/c\ncomp:list\nprefix:r/data/\nrestype:container"
        );
        let auth = shared_key_authorization("acct", b"key", &request);
        assert!(auth.starts_with("SharedKey acct:"), "{auth}");
        assert_eq!(auth.len(), "SharedKey acct:".len() + 44);
    }

    #[test]
    fn settings_from_env() {
        let env = |vars: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        let s = AccountSettings::from_env(&env(&[
            ("AZURE_ACCOUNT_NAME", "acct"),
            ("AZURE_ACCOUNT_KEY", "a2V5"),
            ("AZURE_ACCOUNT_SAS", "?sv=1"),
        ]))
        .unwrap();
        assert!(matches!(s.auth, Auth::SharedKey { ref key, .. } if key == b"key"));
        assert_eq!(s.endpoint_suffix, "core.windows.net");
        let s = AccountSettings::from_env(&env(&[
            ("AZURE_ACCOUNT_NAME", "acct"),
            ("AZURE_ACCOUNT_SAS", "?sv=1&sig=x"),
            ("AZURE_ENDPOINT_SUFFIX", "core.chinacloudapi.cn"),
        ]))
        .unwrap();
        assert!(matches!(s.auth, Auth::Sas(ref t) if t == "sv=1&sig=x"));
        assert_eq!(s.endpoint_suffix, "core.chinacloudapi.cn");
        assert!(AccountSettings::from_env(&env(&[("AZURE_ACCOUNT_NAME", "a")])).is_err());
        assert!(AccountSettings::from_env(&env(&[])).is_err());
    }
}
