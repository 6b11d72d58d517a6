//! The SSRF token: where it comes from, how it is compared, and how a sidecar makes one.
//!
//! The token is read at start from the first set, non-empty variable of `ssrf_env_variables`
//! (`file:///path` means "read this file", and the file is read again when it changes), or
//! generated and written to `token_file`.

use std::fmt;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime};

use crate::config::{Config, Env};

/// The token requests must carry. `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Token(Repr);

#[derive(Clone)]
enum Repr {
    Fixed(String),
    /// From a file, replaced when the file changes ([`Token::watch`]).
    File(Arc<FileToken>),
}

/// A token file and what it held when last read.
struct FileToken {
    path: PathBuf,
    /// Where it was named, for messages: `AWS_TOKEN (/path)`.
    from: String,
    /// Read on every request; written only when the file changes.
    value: RwLock<String>,
    /// The file's identity and mtime when it was read.
    stamp: Mutex<Option<Stamp>>,
}

/// What tells that a file changed: its inode, length and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp(u64, u64, Option<SystemTime>);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            Repr::Fixed(t) => write!(f, "Token(<{} bytes>)", t.len()),
            Repr::File(t) => write!(f, "Token(<from {}>)", t.from),
        }
    }
}

/// The longest token file read: a token is one line, and a larger file (or `/dev/zero`) is a
/// mistake that must not fill the memory.
pub const MAX_TOKEN_FILE_BYTES: u64 = 4096;

/// Tokens shorter than this are accepted with a warning: anything on the host that can guess
/// the token reads every secret.
pub const SHORT_TOKEN_CHARS: usize = 16;

/// How often a token file is checked for changes.
const TOKEN_FILE_CHECK: Duration = Duration::from_millis(250);

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
        Token(Repr::Fixed(value.into()))
    }

    /// Resolves the token as the configuration says: an environment variable wins; otherwise a
    /// configured `token_file` is generated; otherwise start-up fails with how to give one.
    pub fn resolve(config: &Config, env: &Env) -> Result<(Token, TokenSource), TokenError> {
        for var in &config.ssrf_env_variables {
            // An empty variable is an unset one (README, "Settings"): the next one is tried.
            let Some(value) = env.get(var).filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            if let Some(path) = value.strip_prefix("file://") {
                let unreadable = |source| TokenError::Unreadable {
                    var: var.clone(),
                    path: path.to_string(),
                    source,
                };
                let (text, stamp) = read_token_file(Path::new(path)).map_err(unreadable)?;
                let from = format!("{var} ({path})");
                let token = usable(&text, &from)?;
                let file = FileToken {
                    path: PathBuf::from(path),
                    from,
                    value: RwLock::new(token.expose()),
                    stamp: Mutex::new(Some(stamp)),
                };
                return Ok((
                    Token(Repr::File(Arc::new(file))),
                    TokenSource::File(path.to_string()),
                ));
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
        Ok(Token::new(hex))
    }

    /// Constant-time comparison (`subtle`): the time taken does not depend on where the values
    /// differ, only on the length, which is no secret. Eight bytes per step (`subtle` compares
    /// a byte slice a byte at a time, a third of the token check's cost on a cache hit).
    pub fn matches(&self, candidate: &[u8]) -> bool {
        match &self.0 {
            Repr::Fixed(t) => same(t.as_bytes(), candidate),
            Repr::File(f) => same(f.read().as_bytes(), candidate),
        }
    }

    /// The token itself, for the code that writes it out or sends it.
    pub fn expose(&self) -> String {
        match &self.0 {
            Repr::Fixed(t) => t.clone(),
            Repr::File(f) => f.read().clone(),
        }
    }

    /// How many characters the token has now (the start-up warning about short tokens).
    pub fn char_count(&self) -> usize {
        match &self.0 {
            Repr::Fixed(t) => t.chars().count(),
            Repr::File(f) => f.read().chars().count(),
        }
    }

    /// For a token read from a file, a future that checks the file every 250 ms and, when it
    /// changed, puts its new token in force (the old one is refused from then on). A file that
    /// became unusable keeps the token in force and is reported. Never resolves.
    pub fn watch(&self) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        let Repr::File(file) = &self.0 else {
            return None;
        };
        let file = file.clone();
        Some(async move {
            let mut tick = tokio::time::interval(TOKEN_FILE_CHECK);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                file.reread_if_changed();
            }
        })
    }
}

impl FileToken {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, String> {
        // A panic while holding the lock left a whole String behind.
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }

    fn reread_if_changed(&self) {
        let mut seen = self.stamp.lock().unwrap_or_else(|e| e.into_inner());
        let now = std::fs::metadata(&self.path).ok().map(|m| stamp(&m));
        if now.is_none() || now == *seen {
            return;
        }
        let read = read_token_file(&self.path)
            .map_err(|e| e.to_string())
            .and_then(|(text, stamp)| {
                usable(&text, &self.from)
                    .map(|t| (t, stamp))
                    .map_err(|e| e.to_string())
            });
        match read {
            Ok((token, stamp)) => {
                *seen = Some(stamp);
                let token = token.expose();
                let mut value = self.value.write().unwrap_or_else(|e| e.into_inner());
                if *value != token {
                    *value = token;
                    drop(value);
                    tracing::info!(
                        file = ?self.path,
                        "SSRF token file changed: its new token is in force, the old one is refused"
                    );
                }
            }
            Err(why) => {
                *seen = now;
                tracing::warn!(
                    file = ?self.path,
                    error = %why,
                    "SSRF token file changed but cannot be used; the token read before stays \
                     in force until the file holds a usable one"
                );
            }
        }
    }
}

/// Constant-time comparison (see [`Token::matches`]).
fn same(token: &[u8], candidate: &[u8]) -> bool {
    use subtle::ConstantTimeEq;
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

fn stamp(meta: &std::fs::Metadata) -> Stamp {
    #[cfg(unix)]
    let ino = std::os::unix::fs::MetadataExt::ino(meta);
    #[cfg(not(unix))]
    let ino = 0;
    Stamp(ino, meta.len(), meta.modified().ok())
}

/// A token file's text, read only when it is a regular file (a link to one is followed) of at
/// most [`MAX_TOKEN_FILE_BYTES`]: a fifo would block the start, `/dev/zero` fill the memory.
fn read_token_file(path: &Path) -> std::io::Result<(String, Stamp)> {
    use std::io::{Error, ErrorKind};
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            "it is not a regular file (a folder, fifo, device or socket); give a file that holds \
             the token",
        ));
    }
    let too_large = || {
        Error::new(
            ErrorKind::InvalidData,
            format!("it is larger than {MAX_TOKEN_FILE_BYTES} bytes; a token file holds one line"),
        )
    };
    if meta.len() > MAX_TOKEN_FILE_BYTES {
        return Err(too_large());
    }
    let file = std::fs::File::open(path)?;
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE_BYTES + 1)
        .read_to_string(&mut text)?;
    if text.len() as u64 > MAX_TOKEN_FILE_BYTES {
        return Err(too_large());
    }
    Ok((text, stamp(&meta)))
}

/// The token in a file the agent wrote (`token_file`), for clients of the running agent: read
/// by the same rules as a token file named in a variable.
pub fn read_agent_token_file(path: &Path) -> Result<Token, String> {
    read_token_file(path)
        .map(|(text, _)| Token::new(text.trim()))
        .map_err(|e| format!("cannot read the agent's token file {}: {e}", path.display()))
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
    Ok(Token::new(token))
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
    (text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())).then_some(Token::new(text))
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
        f.write_all(token.expose().as_bytes())?;
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

    fn from_file(path: &Path) -> Result<(Token, TokenSource), TokenError> {
        let value = format!("file://{}", path.display());
        Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", value.as_str())]))
    }

    /// Hostile round 2, item 9: an empty (or blank) variable is an unset one.
    #[test]
    fn an_empty_variable_falls_through_to_the_next() {
        for empty in ["", "  "] {
            let (t, src) = Token::resolve(
                &Config::default(),
                &env(&[("AWS_TOKEN", empty), ("AWS_SESSION_TOKEN", "session")]),
            )
            .unwrap();
            assert!(t.matches(b"session"));
            assert_eq!(src, TokenSource::Env("AWS_SESSION_TOKEN".into()));
        }
        let only_empty = Token::resolve(&Config::default(), &env(&[("AWS_TOKEN", "")]));
        assert!(matches!(only_empty, Err(TokenError::Missing { .. })));
    }

    /// Hostile round 2, item 8: `/dev/zero` grew the agent to 900 MB, a fifo blocked the start.
    #[test]
    fn token_files_are_regular_and_bounded() {
        let dir = std::env::temp_dir().join(format!("token-files-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let large = dir.join("large");
        std::fs::write(&large, "a".repeat(MAX_TOKEN_FILE_BYTES as usize + 1)).unwrap();
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        assert!(made.unwrap().success());
        let cases = [
            (Path::new("/dev/zero"), "not a regular file"),
            (fifo.as_path(), "not a regular file"),
            (dir.as_path(), "not a regular file"),
            (large.as_path(), "larger than 4096 bytes"),
        ];
        for (path, why) in cases {
            let err = from_file(path).unwrap_err();
            assert!(matches!(err, TokenError::Unreadable { .. }), "{path:?}");
            assert!(err.to_string().contains(why), "{path:?}: {err}");
        }
        let link = dir.join("link");
        std::fs::write(dir.join("token"), "from-a-link\n").unwrap();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(dir.join("token"), &link).unwrap();
        assert!(from_file(&link).unwrap().0.matches(b"from-a-link"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// Hostile round 2, item 8: a token file edited while the agent ran kept the old token.
    #[test]
    fn a_changed_token_file_replaces_the_token() {
        let path = std::env::temp_dir().join(format!("token-change-{}", std::process::id()));
        std::fs::write(&path, "first-token-value").unwrap();
        let (token, _) = from_file(&path).unwrap();
        let Repr::File(file) = &token.0 else {
            panic!("a file token")
        };
        assert!(token.matches(b"first-token-value"));
        // Unchanged: nothing happens.
        file.reread_if_changed();
        assert!(token.matches(b"first-token-value"));
        // Rewritten (a new inode, as an atomic rename gives, or a new length): the new one only.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, "second-token-value-longer").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        file.reread_if_changed();
        assert!(token.matches(b"second-token-value-longer"));
        assert!(!token.matches(b"first-token-value"));
        // Emptied: the token in force stays.
        std::fs::write(&path, "").unwrap();
        file.reread_if_changed();
        assert!(token.matches(b"second-token-value-longer"));
        std::fs::remove_file(&path).unwrap();
    }

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
