//! Sorting AWS errors into transient (retry with backoff) and permanent (record and stop).

use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use notify_core::ports::{SendError, error_chain};

/// Error codes that mean "slow down", whatever the HTTP status says.
const THROTTLING_CODES: &[&str] = &[
    "TooManyRequestsException",
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "Throttled",
    "LimitExceededException",
    "RequestLimitExceeded",
    "KMSThrottlingException",
];

/// Error codes that stop a channel for every recipient: SES paused or suspended the account's
/// sending, or the function's role may not send (IAM). Sending more only fails more.
const PAUSING_CODES: &[&str] = &[
    "SendingPausedException",
    "AccountSuspendedException",
    "AccessDeniedException",
    "AccessDenied",
    "AuthorizationError",
    "InvalidClientTokenId",
    "ExpiredTokenException",
];

/// Error codes that mean "try later".
const TRANSIENT_CODES: &[&str] = &[
    "ServiceUnavailable",
    "InternalFailure",
    "InternalError",
    "InternalServerError",
];

pub fn classify<E>(service: &str, err: &SdkError<E, HttpResponse>) -> SendError
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown");
            let message = se.err().message().unwrap_or("");
            let status = se.raw().status().as_u16();
            let text = format!("{service} {status} {code}: {message}");
            // SES's daily quota answers LimitExceededException, as its per-second rate can:
            // only the message tells them apart.
            let daily_quota =
                code == "LimitExceededException" && message.to_ascii_lowercase().contains("daily");
            if PAUSING_CODES.contains(&code) || daily_quota {
                SendError::paused(text)
            } else if status == 429 || THROTTLING_CODES.contains(&code) {
                SendError::throttled(text)
            } else if status >= 500 || TRANSIENT_CODES.contains(&code) {
                SendError::transient(text)
            } else {
                SendError::permanent(text)
            }
        }
        SdkError::ConstructionFailure(_) => {
            SendError::permanent(format!("{service}: the request could not be built: {err}"))
        }
        // Timeouts, connection failures, unreadable responses: the call may pass later.
        _ => SendError::transient(format!("{service}: {}", error_chain(err))),
    }
}
