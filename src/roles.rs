//! Roles assumed for callers (`roleArn`), as the AWS Workload Credentials Provider 3.x does:
//! STS AssumeRole on top of the agent's own credentials, one set of credentials held per role
//! and renewed before it expires, at most `max_roles` roles held at once.
//!
//! Why the agent holds the credentials itself rather than leaving them to the SDK's lazy
//! identity cache: the first AssumeRole of a role is made before the read it serves, so an STS
//! refusal is answered as such, naming the role (inside the SDK it would surface as a dispatch
//! failure of the Secrets Manager call); and renewal runs on the cache's clock, the one tests
//! move by hand, five minutes before expiry rather than the SDK's ten seconds.
//!
//! `max_roles`: past it a new role is refused (`MaxRolesExceeded`, as 3.x answers), not made to
//! push out the least recently used one. Dropping a role drops nothing of its cached values but
//! makes its next miss pay an AssumeRole, and a working set of roles larger than the bound would
//! then turn every miss into an STS call (STS throttles, and each one is a CloudTrail event in
//! the role's account) with nothing in the answers to show why. A refusal names the bound, so an
//! operator raises it or narrows `allowed_roles`. A role whose first AssumeRole fails is not
//! kept and holds no place.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::{future, ProvideCredentials};
use aws_credential_types::Credentials;

use crate::clock::Clock;
use crate::error::{Error, ServiceErrorKind};
use crate::metrics::Metrics;

/// The session name when none is configured: the one 3.x uses, so trust policies that
/// condition on `sts:RoleSessionName` and CloudTrail queries written for it keep matching.
pub const DEFAULT_SESSION_NAME: &str = "secrets-manager-provider";

/// Renew this long before the credentials expire (what the AWS SDKs for Java and .NET use for
/// STS credentials), or at half their lifetime if that is shorter.
const RENEW_BEFORE: Duration = Duration::from_secs(300);

/// After a failed renewal while the old credentials still hold: try again after this long (or
/// half of what is left), not on every call.
const RETRY_AFTER: Duration = Duration::from_secs(30);

/// Whether `arn` has the shape of an IAM role ARN: `arn:PARTITION:iam::ACCOUNT:role/NAME`,
/// ACCOUNT 12 digits, NAME (with an optional path) of `A-Za-z0-9_+=,.@-/`. Returns why not.
pub fn check_role_arn(arn: &str) -> Result<(), &'static str> {
    const SHAPE: &str =
        "must be an IAM role ARN, arn:<partition>:iam::<12-digit account>:role/<name>";
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some("iam"), Some(""), Some(account), Some(resource)) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(SHAPE);
    };
    let name = resource.strip_prefix("role/").unwrap_or("");
    let partition_ok = !partition.is_empty()
        && partition
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    let account_ok = account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    let name_ok = !name.is_empty()
        && name.len() <= 512
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-/".contains(&b));
    if partition_ok && account_ok && name_ok {
        Ok(())
    } else {
        Err(SHAPE)
    }
}

/// Whether `name` is a valid RoleSessionName: 2 to 64 of `A-Za-z0-9_+=,.@-`.
pub fn check_session_name(name: &str) -> Result<(), &'static str> {
    let ok = (2..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_+=,.@-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err("must be 2 to 64 characters of letters, digits and _+=,.@-")
    }
}

/// The roles held, each with what the backend built for it (`T`: its SDK clients).
pub struct Roles<T> {
    max: usize,
    /// Held only to look up, insert or remove; never across an `.await`.
    held: Mutex<HashMap<Arc<str>, Arc<Assumed<T>>>>,
}

/// One role: its credentials and the clients that sign with them.
pub struct Assumed<T> {
    pub credentials: RoleCredentials,
    pub clients: T,
}

impl<T> Roles<T> {
    pub fn new(max: usize) -> Self {
        Roles {
            max,
            held: Mutex::new(HashMap::new()),
        }
    }

    fn held(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Arc<Assumed<T>>>> {
        // Every update is one map operation: a poisoned map is still consistent.
        self.held.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The role `arn`, added with `make` if it is new and the bound allows.
    pub fn get_or_add(
        &self,
        arn: &Arc<str>,
        make: impl FnOnce() -> Assumed<T>,
    ) -> Result<Arc<Assumed<T>>, Error> {
        let mut held = self.held();
        if let Some(role) = held.get(arn) {
            return Ok(role.clone());
        }
        if held.len() >= self.max {
            return Err(Error::Service {
                kind: ServiceErrorKind::Other,
                status: 400,
                code: "MaxRolesExceeded".into(),
                message: format!(
                    "the agent already holds max_roles = {} roles and does not assume role {arn}; \
                     raise max_roles or restrict allowed_roles",
                    self.max
                ),
            });
        }
        let role = Arc::new(make());
        held.insert(arn.clone(), role.clone());
        tracing::info!(role = %arn, held = held.len(), max_roles = self.max, "role added");
        Ok(role)
    }

    /// Forgets `role` if it never got credentials, so a refused role holds no place.
    pub fn forget_if_unused(&self, arn: &Arc<str>, role: &Arc<Assumed<T>>) {
        let mut held = self.held();
        if held.get(arn).is_some_and(|r| Arc::ptr_eq(r, role)) && !role.credentials.ever_held() {
            held.remove(arn);
        }
    }

    /// Forgets every role (a process restored from a snapshot: connections are dead).
    pub fn clear(&self) {
        self.held().clear();
    }

    pub fn len(&self) -> usize {
        self.held().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Credentials of one role: assumed on first use, renewed before they expire.
pub struct RoleCredentials {
    arn: Arc<str>,
    sts: aws_sdk_sts::Client,
    session_name: String,
    clock: Arc<dyn Clock>,
    timeout: Duration,
    metrics: Arc<Metrics>,
    /// When to renew and when the held credentials expire, on `clock`. An async mutex on
    /// purpose, held across the AssumeRole: it is the single flight (callers that find the
    /// credentials due wait for the one call instead of each sending their own).
    schedule: tokio::sync::Mutex<Option<Schedule>>,
    /// What the SDK clients sign with ([`RoleCredentials::provider`]).
    current: Arc<Mutex<Option<Credentials>>>,
}

#[derive(Clone, Copy)]
struct Schedule {
    renew_at: SystemTime,
    expires_at: SystemTime,
}

impl RoleCredentials {
    pub fn new(
        arn: Arc<str>,
        sts: aws_sdk_sts::Client,
        session_name: String,
        clock: Arc<dyn Clock>,
        timeout: Duration,
        metrics: Arc<Metrics>,
    ) -> Self {
        RoleCredentials {
            arn,
            sts,
            session_name,
            clock,
            timeout,
            metrics,
            schedule: tokio::sync::Mutex::new(None),
            current: Arc::new(Mutex::new(None)),
        }
    }

    /// A credentials provider that hands out the held credentials (give the clients no
    /// identity cache of their own: this is it). Call [`RoleCredentials::ensure`] first.
    pub fn provider(&self) -> HeldCredentials {
        HeldCredentials {
            arn: self.arn.clone(),
            current: self.current.clone(),
        }
    }

    fn ever_held(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .is_some()
    }

    /// Makes sure usable credentials are held: assumes the role the first time, and again
    /// once the renewal point has passed. A failed renewal keeps the old credentials while they
    /// hold (and retries later); with none left, the failure is returned.
    pub async fn ensure(&self) -> Result<(), Error> {
        let mut schedule = self.schedule.lock().await;
        let now = self.clock.now();
        if schedule.is_some_and(|s| now < s.renew_at) {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let assumed = self.assume().await;
        let outcome = assumed.as_ref().map_or_else(Error::label, |_| "ok");
        self.metrics
            .observe_call("AssumeRole", outcome, started.elapsed());
        match assumed {
            Ok((credentials, valid_for)) => {
                // Measured from now on our clock: STS's expiry is in its clock, ours may differ.
                let renew_before = RENEW_BEFORE.min(valid_for / 2);
                *schedule = Some(Schedule {
                    renew_at: now + valid_for - renew_before,
                    expires_at: now + valid_for,
                });
                *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Some(credentials);
                tracing::debug!(role = %self.arn, valid_s = valid_for.as_secs(), "role assumed");
                Ok(())
            }
            Err(e) => match schedule.as_mut() {
                Some(s) if now < s.expires_at => {
                    let left = s.expires_at.duration_since(now).unwrap_or_default();
                    s.renew_at = now + RETRY_AFTER.min(left / 2);
                    tracing::warn!(
                        role = %self.arn,
                        error = ?e.to_string(),
                        expires_in_s = left.as_secs(),
                        "could not renew the role's credentials; using the current ones meanwhile"
                    );
                    Ok(())
                }
                _ => Err(e),
            },
        }
    }

    /// One AssumeRole call: the credentials and how long they are valid from now.
    async fn assume(&self) -> Result<(Credentials, Duration), Error> {
        const OP: &str = "AssumeRole";
        let call = self
            .sts
            .assume_role()
            .role_arn(self.arn.as_ref())
            .role_session_name(&self.session_name)
            .send();
        let out = match tokio::time::timeout(self.timeout, call).await {
            Err(_) => {
                return Err(Error::Timeout {
                    operation: OP,
                    millis: self.timeout.as_millis() as u64,
                })
            }
            Ok(Err(e)) => {
                return Err(name_the_role(
                    &self.arn,
                    crate::backend::classify(OP, self.timeout, &self.arn, e),
                ))
            }
            Ok(Ok(out)) => out,
        };
        let Some(c) = out.credentials else {
            return Err(Error::Unreachable {
                operation: OP,
                detail: "STS answered without credentials".into(),
            });
        };
        let expiry = SystemTime::try_from(c.expiration).unwrap_or(SystemTime::UNIX_EPOCH);
        let valid_for = expiry.duration_since(SystemTime::now()).unwrap_or_default();
        let credentials = Credentials::new(
            c.access_key_id,
            c.secret_access_key,
            Some(c.session_token),
            Some(expiry),
            "AssumeRole",
        );
        Ok((credentials, valid_for))
    }
}

/// An STS refusal as the caller should see it: the role named, what to check. AccessDenied
/// keeps the 403 class under the code Secrets Manager uses for it.
fn name_the_role(arn: &str, e: Error) -> Error {
    match e {
        Error::Service {
            kind,
            status,
            code,
            message,
        } if !e_is_transient(kind) => {
            // Only AccessDenied is the role refusing us; the other 403s of STS say something
            // else (STS off in the region, the agent's own credentials expired or unknown).
            let hint = match code.as_str() {
                "AccessDenied" | "AccessDeniedException" => {
                    "Check that the role's trust policy lets the agent's own role call \
                     sts:AssumeRole"
                }
                "RegionDisabledException" => {
                    "STS is not activated in this region: activate it in the account's IAM \
                     settings, or set AWS_REGION to a region where it is"
                }
                "ExpiredToken" | "ExpiredTokenException" | "InvalidClientTokenId" => {
                    "The agent's own credentials were refused: check what the agent runs with"
                }
                _ => "Check the role ARN and the agent's own permissions",
            };
            let denied = matches!(code.as_str(), "AccessDenied" | "AccessDeniedException");
            Error::Service {
                kind: if denied {
                    ServiceErrorKind::AccessDenied
                } else {
                    kind
                },
                status: if denied { 403 } else { status },
                code: if denied {
                    "AccessDeniedException".into()
                } else {
                    code.clone()
                },
                message: format!(
                    "the agent could not assume role {arn}: STS answered {code}: {message}. {hint}"
                ),
            }
        }
        other => other,
    }
}

fn e_is_transient(kind: ServiceErrorKind) -> bool {
    matches!(
        kind,
        ServiceErrorKind::Throttled | ServiceErrorKind::ServerError
    )
}

/// The credentials a role holds now, for the SDK clients of that role.
#[derive(Debug, Clone)]
pub struct HeldCredentials {
    arn: Arc<str>,
    current: Arc<Mutex<Option<Credentials>>>,
}

impl ProvideCredentials for HeldCredentials {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        let held = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        future::ProvideCredentials::ready(held.ok_or_else(|| {
            aws_credential_types::provider::error::CredentialsError::not_loaded(format!(
                "role {} has not been assumed yet",
                self.arn
            ))
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_arns_are_checked_for_shape() {
        for ok in [
            "arn:aws:iam::123456789012:role/reader",
            "arn:aws-cn:iam::123456789012:role/path/to/reader",
            "arn:aws-us-gov:iam::123456789012:role/a+b=c,d.e@f-g_h",
        ] {
            assert_eq!(check_role_arn(ok), Ok(()), "{ok}");
        }
        for bad in [
            "",
            "reader",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::12345:role/reader",
            "arn:aws:sts::123456789012:role/reader",
            "arn:aws:iam:us-east-1:123456789012:role/reader",
            "arn:aws:iam::123456789012:role/",
            "arn:aws:iam::123456789012:role/a b",
            "arn::iam::123456789012:role/reader",
        ] {
            assert!(check_role_arn(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn session_names_follow_sts_rules() {
        assert!(check_session_name(DEFAULT_SESSION_NAME).is_ok());
        assert!(check_session_name("a").is_err());
        assert!(check_session_name("has space").is_err());
        assert!(check_session_name(&"x".repeat(65)).is_err());
    }

    #[test]
    fn past_max_roles_a_new_role_is_refused_and_a_held_one_served() {
        let roles: Roles<()> = Roles::new(1);
        let a: Arc<str> = "arn:aws:iam::111111111111:role/a".into();
        let b: Arc<str> = "arn:aws:iam::222222222222:role/b".into();
        let make = |arn: &Arc<str>| {
            let arn = arn.clone();
            let sdk = aws_config::SdkConfig::builder()
                .behavior_version(aws_config::BehaviorVersion::latest())
                .build();
            move || Assumed {
                credentials: RoleCredentials::new(
                    arn,
                    aws_sdk_sts::Client::new(&sdk),
                    DEFAULT_SESSION_NAME.into(),
                    Arc::new(crate::clock::ManualClock::new()),
                    Duration::from_secs(1),
                    Arc::new(Metrics::default()),
                ),
                clients: (),
            }
        };
        let first = roles.get_or_add(&a, make(&a)).unwrap();
        assert!(Arc::ptr_eq(
            &first,
            &roles.get_or_add(&a, make(&a)).unwrap()
        ));
        let Err(Error::Service { code, message, .. }) = roles.get_or_add(&b, make(&b)) else {
            panic!("a second role must be refused");
        };
        assert_eq!(code, "MaxRolesExceeded");
        assert!(message.contains(b.as_ref()) && message.contains("max_roles = 1"));
        // A role that never got credentials gives its place back.
        roles.forget_if_unused(&a, &first);
        assert!(roles.is_empty());
        assert!(roles.get_or_add(&b, make(&b)).is_ok());
    }
}
