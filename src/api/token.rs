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
    /// The token an earlier run of this agent generated into the same file.
    Kept(String),
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
    #[error(
        "SSRF token from {0} contains a line break or another control character, which no \
         HTTP header can carry, so every request would be refused; give a one-line token"
    )]
    Unsendable(String),
    #[error(
        "refusing to write the token to {path}: {why}. The token file is replaced only when it \
         is a regular file that is empty or holds a token the agent wrote; choose another path \
         (e.g. on a memory volume shared with the application) or remove what is there"
    )]
    UnsafePath { path: String, why: String },
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
                let from = format!("{var} ({path})");
                let token = usable(&text, &from)?;
                return Ok((token, TokenSource::File(path.to_string())));
            }
            let token = usable(value, var)?;
            return Ok((token, TokenSource::Env(var.clone())));
        }
        if let Some(path) = &config.token_file {
            // A restart (a sidecar's liveness failure, say) keeps the token its clients read.
            if let Some(token) = token_left_by_an_earlier_run(path) {
                return Ok((token, TokenSource::Kept(path.display().to_string())));
            }
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

    /// Constant-time comparison (`subtle`): the time taken does not depend on where the values
    /// differ, only on the length, which is no secret. Eight bytes per step (`subtle` compares
    /// a byte slice a byte at a time, a third of the token check's cost on a cache hit).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        let token = self.0.as_bytes();
        if token.len() != candidate.len() {
            return false;
        }
        let words = token.chunks_exact(8);
        let other_words = candidate.chunks_exact(8);
        let mut same = words.remainder().ct_eq(other_words.remainder());
        for (a, b) in words.zip(other_words) {
            same &= word(a).ct_eq(&word(b));
        }
        same.into()
    }

    /// The token itself, for the code that writes it out.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

/// Eight bytes (a `chunks_exact(8)` chunk) as one number.
fn word(bytes: &[u8]) -> u64 {
    let mut w = [0; 8];
    w.copy_from_slice(bytes);
    u64::from_ne_bytes(w)
}

/// The token as requests will carry it: surrounding whitespace trimmed, as the AWS agent does
/// (a header value cannot carry it, so an untrimmed token would refuse every request).
fn usable(raw: &str, from: &str) -> Result<Token, TokenError> {
    let token = raw.trim();
    if token.is_empty() {
        return Err(TokenError::Empty(from.to_string()));
    }
    // A header value is visible ASCII, spaces, tabs and bytes from 0x80 up.
    if token.chars().any(|c| c.is_control() && c != '\t') {
        return Err(TokenError::Unsendable(from.to_string()));
    }
    Ok(Token(token.to_string()))
}

/// The token in `path` when an earlier run of this agent wrote it there: a regular file owned by
/// this user, mode 0444, holding 64 hex digits. Anything else is replaced with a new token.
#[cfg(unix)]
fn token_left_by_an_earlier_run(path: &Path) -> Option<Token> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::symlink_metadata(path).ok()?;
    let ours = meta.is_file()
        && meta.uid() == nix::unistd::geteuid().as_raw()
        && meta.permissions().mode() & 0o7777 == 0o444
        && meta.len() == 64;
    if !ours {
        return None;
    }
    let text = std::fs::read_to_string(path).ok()?;
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Token(text))
}

#[cfg(not(unix))]
fn token_left_by_an_earlier_run(_path: &Path) -> Option<Token> {
    None
}

/// Longest existing file taken to hold an earlier token: ours are 64 bytes.
const MAX_OLD_TOKEN_BYTES: u64 = 1024;

/// Checks that `path` may be replaced: missing, or a regular file (not a symlink, device, fifo,
/// socket or folder) that is empty or holds a token in the form the agent writes. Its folder
/// must exist: the agent creates none.
fn check_replaceable(path: &Path) -> Result<(), TokenError> {
    let refuse = |why: String| TokenError::UnsafePath {
        path: path.display().to_string(),
        why,
    };
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = dir {
        match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => return Err(refuse(format!("{} is not a folder", dir.display()))),
            Err(e) => {
                return Err(refuse(format!(
                    "its folder {} cannot be used ({e}); the agent creates no folders",
                    dir.display()
                )))
            }
        }
    }
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(refuse(format!("it cannot be inspected ({e})"))),
    };
    let kind = meta.file_type();
    if !kind.is_file() {
        let what = if kind.is_symlink() {
            "a symbolic link"
        } else if kind.is_dir() {
            "a folder"
        } else {
            "not a regular file (a device, fifo or socket)"
        };
        return Err(refuse(format!("it is {what}")));
    }
    if meta.len() > MAX_OLD_TOKEN_BYTES || !holds_old_token(path, &meta) {
        return Err(refuse(
            "it is a file that does not hold a token the agent wrote".into(),
        ));
    }
    Ok(())
}

/// True when the regular file at `path` (the one `meta` describes, not a file swapped in since)
/// is empty or holds one token of the generated form (64 hex digits).
fn holds_old_token(path: &Path, meta: &std::fs::Metadata) -> bool {
    use std::io::Read;
    let Ok(file) = std::fs::File::open(path) else {
        return false;
    };
    if !same_file(meta, &file) {
        return false;
    }
    let mut text = String::new();
    if file
        .take(MAX_OLD_TOKEN_BYTES)
        .read_to_string(&mut text)
        .is_err()
    {
        return false;
    }
    let text = text.trim();
    text.is_empty() || (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(unix)]
fn same_file(meta: &std::fs::Metadata, file: &std::fs::File) -> bool {
    use std::os::unix::fs::MetadataExt;
    file.metadata()
        .is_ok_and(|m| m.is_file() && m.dev() == meta.dev() && m.ino() == meta.ino())
}

#[cfg(not(unix))]
fn same_file(_meta: &std::fs::Metadata, file: &std::fs::File) -> bool {
    file.metadata().is_ok_and(|m| m.is_file())
}

/// Writes the token atomically (temp file in the same folder, then rename) with mode 0444,
/// after [`check_replaceable`]. The rename replaces a directory entry and never follows a link.
fn write_token_file(path: &Path, token: &Token) -> Result<(), TokenError> {
    let err = |source| TokenError::Write {
        path: path.display().to_string(),
        source,
    };
    check_replaceable(path)?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "token".into());
    let tmp = path.with_file_name(format!(".{file_name}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut options = std::fs::OpenOptions::new();
        // `create_new` fails on anything already there, a link included; owner-only until the
        // token is complete, so nobody else can open it for writing meanwhile.
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut f = options.open(&tmp)?;
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

    #[test]
    fn compare_sees_a_difference_in_any_byte_of_any_length() {
        for len in [1, 7, 8, 9, 16, 63, 64, 65] {
            let value: Vec<u8> = (0..len).map(|i| b'a' + (i % 26) as u8).collect();
            let t = Token::new(std::str::from_utf8(&value).unwrap());
            assert!(t.matches(&value), "len {len}");
            for at in 0..len {
                let mut other = value.clone();
                other[at] ^= 0x20;
                assert!(!t.matches(&other), "len {len}, byte {at}");
            }
        }
    }

    #[cfg(unix)]
    #[test]
    fn generated_token_is_written_read_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!("sa-gen-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("token");
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
        // A restart keeps the token its clients read.
        let (t2, src) = Token::resolve(&config, &env(&[])).unwrap();
        assert!(t2.matches(written.as_bytes()));
        assert_eq!(src, TokenSource::Kept(path.display().to_string()));
        // A file this agent would not have written (another mode) gets a new token.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let (t3, src) = Token::resolve(&config, &env(&[])).unwrap();
        assert!(!t3.matches(written.as_bytes()));
        assert_eq!(src, TokenSource::Generated(path.display().to_string()));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn surrounding_whitespace_is_trimmed_as_the_aws_agent_does() {
        let dir = std::env::temp_dir().join(format!("sa-trim-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("t");
        std::fs::write(&path, " \t from-file \t\r\n\n").unwrap();
        let value = format!("file://{}", path.display());
        let (t, _) = Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", &value)])).unwrap();
        assert!(t.matches(b"from-file"));
        let (t, _) = Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", "  abc\t")])).unwrap();
        assert!(t.matches(b"abc"));
        // Only whitespace: empty.
        std::fs::write(&path, " \n\t ").unwrap();
        let err = Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", &value)])).unwrap_err();
        assert!(matches!(err, TokenError::Empty(_)), "{err}");
        // A line break inside cannot be sent in a header: refused at start, naming the source.
        std::fs::write(&path, "two\nlines\n").unwrap();
        let err = Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", &value)])).unwrap_err();
        assert!(matches!(err, TokenError::Unsendable(_)), "{err}");
        assert!(err.to_string().contains("AWS_TOKEN"), "{err}");
        let err =
            Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", "a\u{1b}[31m")])).unwrap_err();
        assert!(matches!(err, TokenError::Unsendable(_)), "{err}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[cfg(unix)]
    #[test]
    fn token_file_replaces_only_an_empty_file_or_an_earlier_token() {
        let dir = std::env::temp_dir().join(format!("sa-safe-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let write = |path: &Path| write_token_file(path, &Token::generate().unwrap());

        // Missing, empty, or an earlier token: written.
        let path = dir.join("token");
        write(&path).unwrap();
        write(&path).unwrap();
        let empty = dir.join("empty");
        std::fs::write(&empty, "").unwrap();
        write(&empty).unwrap();
        assert_eq!(std::fs::read_to_string(&empty).unwrap().len(), 64);

        // Anything else is refused, named, and left as it was.
        let other = dir.join("passwd");
        std::fs::write(&other, "root:x:0:0:root:/root:/bin/sh\n").unwrap();
        let link = dir.join("link");
        std::os::unix::fs::symlink(&path, &link).unwrap();
        let folder = dir.join("folder");
        std::fs::create_dir(&folder).unwrap();
        let socket = dir.join("sock");
        let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
        for (target, why) in [
            (&other, "does not hold a token"),
            (&link, "symbolic link"),
            (&folder, "a folder"),
            (&socket, "not a regular file"),
        ] {
            let err = write(target).unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, TokenError::UnsafePath { .. }), "{msg}");
            assert!(msg.contains(&target.display().to_string()), "{msg}");
            assert!(msg.contains(why), "{msg}");
        }
        assert_eq!(
            std::fs::read_to_string(&other).unwrap(),
            "root:x:0:0:root:/root:/bin/sh\n"
        );
        assert!(std::fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());

        // No folders are created.
        let deep = dir.join("missing").join("token");
        let err = write(&deep).unwrap_err();
        assert!(err.to_string().contains("creates no folders"), "{err}");
        assert!(!dir.join("missing").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
