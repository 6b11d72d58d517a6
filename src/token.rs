//! The SSRF token: where it comes from, how it is compared, and how a sidecar makes one.
//!
//! The token is read once at start from the first set variable of `ssrf_env_variables`
//! (`file:///path` means "read this file"), or generated and written to `token_file`.

use std::fmt;
use std::io::Write;
use std::path::Path;

use crate::config::{Config, Env};

/// The token requests must carry. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

/// Where the token came from, for the start-up log line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSource {
    Env(String),
    File(String),
    Generated(String),
}

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error(
        "no SSRF token: none of the environment variables {vars} is set. Set one of them \
         (e.g. AWS_TOKEN=<random string> or AWS_TOKEN=file:///path/to/token), or let the agent \
         generate one with --token-file PATH (SECRETS_AGENT_TOKEN_FILE, token_file)"
    )]
    Missing { vars: String },
    #[error("SSRF token file {path} (from {var}) cannot be read: {source}")]
    Unreadable {
        var: String,
        path: String,
        source: std::io::Error,
    },
    #[error("SSRF token from {0} is empty; give a non-empty value")]
    Empty(String),
    #[error("cannot write the generated token to {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
    #[error("the OS random number generator failed: {0}")]
    Random(String),
}

impl Token {
    /// A token from a string (tests and the generator).
    pub fn new(value: impl Into<String>) -> Self {
        Token(value.into())
    }

    /// Resolves the token as the configuration says: an environment variable wins; otherwise a
    /// configured `token_file` is generated; otherwise start-up fails with how to give one.
    pub fn resolve(config: &Config, env: &Env) -> Result<(Token, TokenSource), TokenError> {
        for var in &config.ssrf_env_variables {
            let Some(value) = env.get(var) else { continue };
            if let Some(path) = value.strip_prefix("file://") {
                let text =
                    std::fs::read_to_string(path).map_err(|source| TokenError::Unreadable {
                        var: var.clone(),
                        path: path.to_string(),
                        source,
                    })?;
                let text = text.trim_end_matches(['\r', '\n']);
                if text.is_empty() {
                    return Err(TokenError::Empty(format!("{var} ({path})")));
                }
                return Ok((Token(text.to_string()), TokenSource::File(path.to_string())));
            }
            if value.is_empty() {
                return Err(TokenError::Empty(var.clone()));
            }
            return Ok((Token(value.clone()), TokenSource::Env(var.clone())));
        }
        if let Some(path) = &config.token_file {
            let token = Token::generate()?;
            write_token_file(path, &token)?;
            return Ok((token, TokenSource::Generated(path.display().to_string())));
        }
        Err(TokenError::Missing {
            vars: config.ssrf_env_variables.join(", "),
        })
    }

    /// 32 bytes from the OS RNG, hex-encoded (64 characters, safe in any header).
    pub fn generate() -> Result<Token, TokenError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| TokenError::Random(e.to_string()))?;
        let mut hex = String::with_capacity(64);
        for b in bytes {
            hex.push_str(&format!("{b:02x}"));
        }
        Ok(Token(hex))
    }

    /// Constant-time comparison: the time taken does not depend on where the values differ.
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.0.as_bytes();
        if expected.len() != candidate.len() {
            return false;
        }
        expected
            .iter()
            .zip(candidate)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// The token itself, for the code that writes it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Writes the token atomically (temp file in the same folder, then rename) with mode 0444.
fn write_token_file(path: &Path, token: &Token) -> Result<(), TokenError> {
    let err = |source| TokenError::Write {
        path: path.display().to_string(),
        source,
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)?;
        f.write_all(token.0.as_bytes())?;
        f.sync_all()?;
        set_read_only(&tmp)?;
        std::fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result.map_err(err)
}

#[cfg(unix)]
fn set_read_only(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o444))
}

#[cfg(not(unix))]
fn set_read_only(path: &Path) -> std::io::Result<()> {
    let mut p = std::fs::metadata(path)?.permissions();
    p.set_readonly(true);
    std::fs::set_permissions(path, p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::env;

    #[test]
    fn first_set_variable_wins() {
        let config = Config::default();
        let (t, src) = Token::resolve(
            &config,
            &env(&[
                ("AWS_SESSION_TOKEN", "b"),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "c"),
            ]),
        )
        .unwrap();
        assert!(t.matches(b"b"));
        assert_eq!(src, TokenSource::Env("AWS_SESSION_TOKEN".into()));
    }

    #[test]
    fn file_reference_is_read() {
        let dir = std::env::temp_dir().join(format!("sa-token-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t");
        std::fs::write(&path, "from-file\n").unwrap();
        let config = Config::default();
        let value = format!("file://{}", path.display());
        let (t, _) = Token::resolve(&config, &env(&[("AWS_TOKEN", &value)])).unwrap();
        assert!(t.matches(b"from-file"));
        let missing = format!("file://{}/nope", dir.display());
        let err = Token::resolve(&config, &env(&[("AWS_TOKEN", &missing)])).unwrap_err();
        assert!(err.to_string().contains("cannot be read"));
    }

    #[test]
    fn missing_token_says_how_to_give_one() {
        let err = Token::resolve(&Config::default(), &env(&[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("AWS_TOKEN, AWS_SESSION_TOKEN, AWS_CONTAINER_AUTHORIZATION_TOKEN"));
        assert!(msg.contains("--token-file"));
    }

    #[test]
    fn compare_rejects_prefixes_and_other_values() {
        let t = Token::new("secret-token");
        assert!(t.matches(b"secret-token"));
        assert!(!t.matches(b"secret-toke"));
        assert!(!t.matches(b"secret-tokeN"));
        assert!(!t.matches(b""));
    }

    #[cfg(unix)]
    #[test]
    fn generated_token_is_written_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sa-gen-{}", std::process::id()));
        let path = dir.join("sub").join("token");
        let config = Config {
            token_file: Some(path.clone()),
            ..Config::default()
        };
        let (t, src) = Token::resolve(&config, &env(&[])).unwrap();
        assert_eq!(src, TokenSource::Generated(path.display().to_string()));
        let written = std::fs::read_to_string(&path).unwrap();
        assert_eq!(written.len(), 64);
        assert!(t.matches(written.as_bytes()));
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o444);
        // A restart replaces the read-only file with a new token.
        let (t2, _) = Token::resolve(&config, &env(&[])).unwrap();
        assert!(!t2.matches(written.as_bytes()));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
