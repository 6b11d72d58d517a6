//! How much an AWS answer may weigh. AWS caps a secret's value at 65,536 bytes (SecretString or
//! SecretBinary) and a parameter's at 8 KiB (advanced tier), so an answer far beyond what those
//! allow did not come from AWS: a misconfigured proxy, a fake endpoint or a broken one. Read
//! whole, such a body would grow the agent without bound (an endless chunked body reached
//! gigabytes in seconds). Every SDK client of the agent carries [`AnswerLimit`], which cuts the
//! body off at its operation's limit; the read then fails as an unusable answer (`classify`),
//! and the cache serves the value it holds.

use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeDeserializationInterceptorContextMut;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use http_body_util::{BodyExt, LengthLimitError, Limited};

/// AWS's maximum for a secret's SecretString or SecretBinary.
const SECRET_VALUE_MAX: usize = 65_536;
/// AWS's maximum for an advanced parameter's value.
const PARAMETER_VALUE_MAX: usize = 8 * 1024;
/// The worst case of JSON escaping: a control character becomes `\u00XX`.
const ESCAPED: usize = 6;
/// Room for everything around a value: ARN (2,048), name (512), version id, stages, dates.
const ENVELOPE: usize = 16 * 1024;
/// One GetSecretValue answer, or one entry of BatchGetSecretValue: 400 KiB.
const SECRET_ANSWER_MAX: usize = SECRET_VALUE_MAX * ESCAPED + ENVELOPE;
/// BatchGetSecretValue returns at most 20 secrets a page.
const BATCH_ANSWER_MAX: usize = 20 * SECRET_ANSWER_MAX + ENVELOPE;
/// One GetParameter answer.
const PARAMETER_ANSWER_MAX: usize = PARAMETER_VALUE_MAX * ESCAPED + ENVELOPE;
/// GetParameters takes at most 10 names.
const PARAMETERS_ANSWER_MAX: usize = 10 * PARAMETER_ANSWER_MAX + ENVELOPE;
/// Anything else the agent calls (DescribeSecret with its tags and versions, STS, ACM's
/// certificate chains) answers with metadata far below this.
const OTHER_ANSWER_MAX: usize = 1024 * 1024;

/// The most bytes an answer to `operation` may have.
pub(crate) fn limit_for(operation: &str) -> usize {
    match operation {
        "GetSecretValue" => SECRET_ANSWER_MAX,
        "BatchGetSecretValue" => BATCH_ANSWER_MAX,
        "GetParameter" => PARAMETER_ANSWER_MAX,
        "GetParameters" => PARAMETERS_ANSWER_MAX,
        _ => OTHER_ANSWER_MAX,
    }
}

/// An answer over its operation's limit (see the module doc).
#[derive(Debug, thiserror::Error)]
#[error(
    "the answer to {operation} is larger than {limit} bytes, more than AWS's own maximum sizes \
     allow; it was not read further"
)]
pub(crate) struct TooLarge {
    operation: String,
    limit: usize,
}

/// Cuts every answer body off at its operation's limit.
#[derive(Debug)]
pub(crate) struct AnswerLimit;

impl Intercept for AnswerLimit {
    fn name(&self) -> &'static str {
        "AnswerLimit"
    }

    fn modify_before_deserialization(
        &self,
        context: &mut BeforeDeserializationInterceptorContextMut<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let operation = cfg
            .load::<Metadata>()
            .map_or_else(String::new, |m| m.name().to_string());
        let limit = limit_for(&operation);
        let response = context.response_mut();
        let body = response.take_body();
        let limited = Limited::new(body, limit).map_err(move |e| -> BoxError {
            if e.is::<LengthLimitError>() {
                Box::new(TooLarge {
                    operation: operation.clone(),
                    limit,
                })
            } else {
                e
            }
        });
        *response.body_mut() = SdkBody::from_body_1_x(limited);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_hold_the_largest_answer_aws_can_give_and_little_more() {
        // A 64 KiB SecretString of control characters, escaped, still fits.
        assert!(limit_for("GetSecretValue") >= 65_536 * 6 + 2048 + 512);
        assert!(limit_for("GetSecretValue") < 512 * 1024);
        assert_eq!(
            limit_for("BatchGetSecretValue"),
            20 * limit_for("GetSecretValue") + ENVELOPE
        );
        assert!(limit_for("GetParameter") >= 8 * 1024 * 6);
        assert!(limit_for("GetParameter") < limit_for("GetSecretValue"));
        assert_eq!(limit_for("AssumeRole"), 1024 * 1024);
    }
}
