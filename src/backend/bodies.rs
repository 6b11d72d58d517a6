//! AWS answers turned into the bodies the agent serves: the AWS agent's GetSecretValue shape and
//! the AWS extension's GetParameter shape, serialized once so a hit is a clone of bytes; an answer
//! that lacks what AWS always sends is refused.

use super::*;

/// A BatchGetSecretValue entry as the body GetSecretValue would have given; what it lacks,
/// if it is not a usable secret.
pub(super) fn entry_body(
    v: aws_sdk_secretsmanager::types::SecretValueEntry,
) -> Result<Fetched, &'static str> {
    let fields = SecretFields {
        arn: v.arn,
        name: v.name,
        version_id: v.version_id,
        secret_string: v.secret_string,
        secret_binary: v.secret_binary.map(|b| b.into_inner()),
        version_stages: v.version_stages,
        created_date: v.created_date,
    };
    fields.check()?;
    Ok(secret_body(fields))
}

/// An answer without a field AWS always sends (an empty `{}` 200 parses as one).
pub(super) fn lacking(operation: &'static str, id: &str, what: &str) -> Error {
    Error::Unusable {
        operation,
        id: id.to_string(),
        detail: format!("the answer has no {what}, which AWS always sends"),
    }
}

/// The fields of a secret, from GetSecretValue or BatchGetSecretValue.
pub(super) struct SecretFields {
    pub(super) arn: Option<String>,
    pub(super) name: Option<String>,
    pub(super) version_id: Option<String>,
    pub(super) secret_string: Option<String>,
    pub(super) secret_binary: Option<Vec<u8>>,
    pub(super) version_stages: Option<Vec<String>>,
    pub(super) created_date: Option<DateTime>,
}

/// The AWS agent's GetSecretValue body: field names and order as it writes them.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct SecretBody<'a> {
    #[serde(rename = "ARN")]
    arn: &'a Option<String>,
    name: &'a Option<String>,
    version_id: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_string: &'a Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    secret_binary: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    version_stages: &'a Option<Vec<String>>,
    /// Seconds since the epoch with fraction, as a string (the AWS agent's format).
    created_date: Option<String>,
}

impl SecretFields {
    /// What a usable secret lacks: AWS always sends its ARN, name, version and one value.
    pub(super) fn check(&self) -> Result<(), &'static str> {
        if self.arn.is_none() || self.name.is_none() {
            return Err("ARN or Name");
        }
        if self.version_id.is_none() {
            return Err("VersionId");
        }
        if self.secret_string.is_none() && self.secret_binary.is_none() {
            return Err("SecretString or SecretBinary");
        }
        Ok(())
    }
}

pub(super) fn secret_body(f: SecretFields) -> Fetched {
    let body = SecretBody {
        arn: &f.arn,
        name: &f.name,
        version_id: &f.version_id,
        secret_string: &f.secret_string,
        secret_binary: f
            .secret_binary
            .as_deref()
            .map(aws_smithy_types::base64::encode),
        version_stages: &f.version_stages,
        created_date: f.created_date.map(|d| d.as_secs_f64().to_string()),
    };
    let mut stages = f.version_stages.clone().unwrap_or_default();
    stages.sort();
    Fetched {
        body: to_bytes(&body),
        version: f.version_id,
        stages,
    }
}

#[derive(Serialize)]
pub(super) struct Empty {}

/// The AWS extension's GetParameter body.
#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ParameterBody {
    pub(super) parameter: ParameterFields,
    pub(super) result_metadata: Empty,
}

#[derive(Serialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ParameterFields {
    #[serde(rename = "ARN")]
    pub(super) arn: Option<String>,
    pub(super) data_type: Option<String>,
    pub(super) last_modified_date: Option<String>,
    pub(super) name: Option<String>,
    pub(super) selector: Option<String>,
    pub(super) source_result: Option<String>,
    #[serde(rename = "Type")]
    pub(super) kind: Option<String>,
    pub(super) value: Option<String>,
    pub(super) version: i64,
}

pub(super) fn to_bytes<T: Serialize>(v: &T) -> Bytes {
    // Our own structs of strings and numbers always serialize.
    let mut body = serde_json::to_vec(v).unwrap_or_default();
    // The vector grew by doubling: without this a 64 KiB secret could hold 128 KiB for as long
    // as it is cached, and the cache's byte budget counts the length.
    body.shrink_to_fit();
    Bytes::from(body)
}
