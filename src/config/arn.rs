//! Role ARNs and session names: checked where the configuration names them, and where a
//! request names one (`roleArn`); the backend assumes them.

/// The session name when none is configured: the one 3.x uses, so trust policies that
/// condition on `sts:RoleSessionName` and CloudTrail queries written for it keep matching.
pub const DEFAULT_SESSION_NAME: &str = "secrets-manager-provider";

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
