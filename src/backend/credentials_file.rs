//! AWS credentials from a file in the standard credentials-file format (`credentials_file_path`,
//! as in the AWS agent 2.1 and its 3.x successor), re-read when the file changes: IAM Roles
//! Anywhere's `update` helper and on-premises rotation tools rewrite such a file in place.
//!
//! Same rules as 3.x: the agent starts whether or not the file exists (AWS calls fail until it
//! appears), the `[default]` profile must carry a session token (temporary credentials only),
//! a file that disappears or stops parsing leaves the last good credentials in use, and a file
//! readable by others than its owner is warned about.
//!
//! The file is checked on every call of the provider: one `stat`, and a re-read (by aws-config's
//! own profile-file provider) only when its modification time, size or inode changed. The SDK
//! is built without an identity cache over this provider (see `backend`), so the call after a
//! rewrite signs with the new keys.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use aws_credential_types::provider::{error::CredentialsError, future, ProvideCredentials};
use aws_credential_types::Credentials;
use aws_smithy_runtime_api::client::http::SharedHttpClient;

/// What identifies one version of the file: rewrites in place change the mtime (and usually
/// the size), atomic replacements change the inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    inode: u64,
}

impl Stamp {
    fn of(path: &Path) -> std::io::Result<Stamp> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path)?;
        Ok(Stamp {
            modified: m.modified().ok(),
            len: m.len(),
            inode: m.ino(),
        })
    }
}

#[derive(Debug, Default)]
struct State {
    /// The version of the file last read (successfully or not).
    stamp: Option<Stamp>,
    /// The last good credentials.
    credentials: Option<Credentials>,
    /// Why the last read failed, while no good credentials were ever read.
    problem: Option<String>,
}

/// A credentials provider over one file; cheap to clone.
#[derive(Debug, Clone)]
pub struct FileCredentials {
    path: Arc<PathBuf>,
    /// For the profile-file provider, which can also name a credential source that calls out
    /// (IMDS, the container endpoint) and wants a client even when it does not.
    http: SharedHttpClient,
    /// Held only to read or swap the state, never across an await.
    state: Arc<Mutex<State>>,
}

impl FileCredentials {
    /// A provider for `path`. Says at once (WARN) if the file is not there yet.
    pub fn new(path: impl Into<PathBuf>, http: SharedHttpClient) -> Self {
        let path = path.into();
        if !path.is_file() {
            tracing::warn!(
                path = %path.display(),
                "credentials_file_path does not exist yet; AWS calls fail until it appears, \
                 and it is read as soon as it does"
            );
        }
        FileCredentials {
            path: Arc::new(path),
            http,
            state: Arc::default(),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current credentials, reading the file again if it changed.
    async fn current(&self) -> Result<Credentials, CredentialsError> {
        let path = self.path.as_path();
        let stamp = Stamp::of(path).ok();
        {
            let st = self.state();
            if stamp.is_some() && st.stamp == stamp {
                return answer(path, &st);
            }
            if stamp.is_none() {
                // Gone (or not there yet): keep what we have.
                return answer(path, &st);
            }
        }
        let read = read_file(path, self.http.clone()).await;
        let mut st = self.state();
        st.stamp = stamp;
        match read {
            Ok(credentials) => {
                warn_if_open(path);
                tracing::info!(path = %path.display(), "AWS credentials read from the credentials file");
                st.credentials = Some(credentials);
                st.problem = None;
            }
            Err(why) => {
                tracing::warn!(
                    path = %path.display(),
                    error = %why,
                    "the credentials file could not be used; {}",
                    if st.credentials.is_some() {
                        "keeping the credentials read before"
                    } else {
                        "AWS calls fail until it is fixed"
                    }
                );
                if st.credentials.is_none() {
                    st.problem = Some(why);
                }
            }
        }
        answer(path, &st)
    }
}

fn answer(path: &Path, st: &State) -> Result<Credentials, CredentialsError> {
    match (&st.credentials, &st.problem) {
        (Some(c), _) => Ok(c.clone()),
        (None, Some(why)) => Err(CredentialsError::not_loaded(format!(
            "credentials file {}: {why}",
            path.display()
        ))),
        (None, None) => Err(CredentialsError::not_loaded(format!(
            "credentials file {} does not exist yet",
            path.display()
        ))),
    }
}

/// The `[default]` profile of the file, by aws-config's profile-file provider (which knows the
/// format, comments and all), refused without a session token.
async fn read_file(path: &Path, http: SharedHttpClient) -> Result<Credentials, String> {
    use aws_runtime::env_config::file::{EnvConfigFileKind, EnvConfigFiles};
    let files = EnvConfigFiles::builder()
        .include_default_config_file(false)
        .include_default_credentials_file(false)
        .with_file(EnvConfigFileKind::Credentials, path)
        .build();
    let conf = aws_config::provider_config::ProviderConfig::without_region().with_http_client(http);
    let credentials = aws_config::profile::ProfileFileCredentialsProvider::builder()
        .configure(&conf)
        .profile_files(files)
        .profile_name("default")
        .build()
        .provide_credentials()
        .await
        .map_err(|e| aws_smithy_types::error::display::DisplayErrorContext(e).to_string())?;
    if credentials.session_token().is_none() {
        return Err(
            "the [default] profile has no aws_session_token: only temporary \
                    credentials (IAM Roles Anywhere, STS) are taken from a credentials file"
                .into(),
        );
    }
    Ok(credentials)
}

/// Warns when others than the owner may read or write the file.
fn warn_if_open(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        let mode = m.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                path = %path.display(),
                mode = format!("{mode:04o}"),
                "the credentials file is open to others than its owner; chmod 600 it"
            );
        }
    }
}

impl ProvideCredentials for FileCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(self.current())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_path(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("sa-creds-{}-{name}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("credentials")
    }

    fn write(path: &Path, text: &str) {
        // Replace atomically, as rotation helpers do.
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, path).unwrap();
    }

    fn profile(key: &str, token: Option<&str>) -> String {
        let mut s =
            format!("[default]\naws_access_key_id = {key}\naws_secret_access_key = s3cr3t\n");
        if let Some(t) = token {
            s.push_str(&format!("aws_session_token = {t}\n"));
        }
        s
    }

    #[tokio::test]
    async fn starts_without_the_file_and_follows_its_rewrites() {
        let path = temp_path("follow");
        let _ = std::fs::remove_file(&path);
        let p = FileCredentials::new(&path, crate::backend::https_client());
        let e = p.provide_credentials().await.unwrap_err();
        assert!(
            e.to_string().contains("does not exist yet")
                || format!("{e:?}").contains("does not exist yet"),
            "{e:?}"
        );

        write(&path, &profile("AKIDFIRST", Some("t1")));
        let c = p.provide_credentials().await.unwrap();
        assert_eq!(c.access_key_id(), "AKIDFIRST");
        assert_eq!(c.session_token(), Some("t1"));

        write(&path, &profile("AKIDSECOND", Some("t2")));
        assert_eq!(
            p.provide_credentials().await.unwrap().access_key_id(),
            "AKIDSECOND"
        );

        // Long-term keys are refused; the last good ones stay.
        write(&path, &profile("AKIDLONGTERM", None));
        assert_eq!(
            p.provide_credentials().await.unwrap().access_key_id(),
            "AKIDSECOND"
        );
        // So do they when the file goes away.
        std::fs::remove_file(&path).unwrap();
        assert_eq!(
            p.provide_credentials().await.unwrap().access_key_id(),
            "AKIDSECOND"
        );
    }

    #[tokio::test]
    async fn long_term_keys_alone_are_refused_with_the_reason() {
        let path = temp_path("longterm");
        write(&path, &profile("AKIDLONGTERM", None));
        let e = FileCredentials::new(&path, crate::backend::https_client())
            .provide_credentials()
            .await
            .unwrap_err();
        assert!(format!("{e:?}").contains("aws_session_token"), "{e:?}");
    }
}
