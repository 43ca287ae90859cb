//! The generic HTTP edge: sends a request, reads its body up to a bound, and maps transport and
//! status failures onto the retry table — timeout, connection error, 429 and 5xx are retryable
//! (honouring `Retry-After` in seconds); any other 4xx, an oversized answer or an answer outside the
//! contract is invalid. An edge may name more 4xx statuses that mean "try again later" (a webhook
//! receiver's 409 and 425, see [`crate::webhook`]).
//!
//! Error messages name the edge (`what`, e.g. "classification provider") and never the URL, which
//! may carry credentials in its query string.

use std::time::Duration;

use longhaul_core::{FailureCase, JobError};

/// Largest response body read from a provider or webhook receiver.
pub const MAX_RESPONSE_BYTES: usize = 1 << 20;

/// Longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// An HTTP client whose requests, connection included, time out after `timeout`.
///
/// # Errors
/// A message when the client cannot be built.
pub fn client(timeout: Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// `e`'s message with its URL replaced by `<url>` (it may carry credentials in its query string).
pub fn message_without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if let Some(url) = e.url() {
        msg = msg.replace(url.as_str(), "<url>");
    }
    msg
}

/// Reads `response`'s body up to [`MAX_RESPONSE_BYTES`], stopping as soon as it is exceeded.
///
/// # Errors
/// [`FailureCase::ProviderRejected`] for a longer body; a transport failure as
/// [`transport_error`] maps it.
pub async fn read_body(what: &str, mut response: reqwest::Response) -> Result<Vec<u8>, JobError> {
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
                    return Err(JobError::new(
                        FailureCase::ProviderRejected,
                        format!("{what} answered more than {MAX_RESPONSE_BYTES} bytes"),
                    ));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) => return Ok(body),
            Err(e) => return Err(transport_error(what, &e)),
        }
    }
}

/// Maps a transport failure: a timeout and a connection error are retryable, a request that could
/// not be built is invalid, anything else (a reset mid-body) is retryable.
pub fn transport_error(what: &str, e: &reqwest::Error) -> JobError {
    let msg = message_without_url(e);
    if e.is_timeout() {
        JobError::new(FailureCase::ProviderTimeout, format!("{what} timed out"))
    } else if e.is_connect() {
        JobError::new(FailureCase::ProviderUnreachable, format!("{what} is unreachable: {msg}"))
    } else if e.is_builder() {
        JobError::new(FailureCase::ProviderRejected, format!("{what}: invalid request: {msg}"))
    } else {
        JobError::new(FailureCase::ProviderUnreachable, format!("{what} failed: {msg}"))
    }
}

/// Maps a non-success status onto the retry table: 429 is rate limited, 5xx and the statuses in
/// `in_progress` are unavailable (both retryable, with `retry_after` when given), any other status
/// is rejected (invalid, `retry_after` ignored). The message carries the status and the first 200
/// characters of `body`.
pub fn status_error(
    what: &str,
    status: reqwest::StatusCode,
    retry_after: Option<Duration>,
    body: &[u8],
    in_progress: &[u16],
) -> JobError {
    let excerpt: String = String::from_utf8_lossy(body).chars().take(200).collect();
    let message = format!("{what} answered {status}: {excerpt}");
    let case = if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
        FailureCase::ProviderRateLimited
    } else if status.is_server_error() || in_progress.contains(&status.as_u16()) {
        FailureCase::ProviderUnavailable
    } else {
        FailureCase::ProviderRejected
    };
    let error = JobError::new(case, message);
    match retry_after {
        Some(delay) if case != FailureCase::ProviderRejected => error.with_retry_after(delay),
        _ => error,
    }
}

/// `Retry-After` in seconds, cut to [`MAX_RETRY_AFTER`] (the HTTP-date form and anything
/// unparsable are ignored: backoff applies instead).
pub fn retry_after(response: &reqwest::Response) -> Option<Duration> {
    let value = response.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(|s| Duration::from_secs(s).min(MAX_RETRY_AFTER))
}

/// Sends `request`, checks the status (`in_progress` as in [`status_error`]), returns the body.
///
/// # Errors
/// A [`JobError`] classified as [`transport_error`], [`read_body`] and [`status_error`] say.
pub async fn send(
    what: &str,
    request: reqwest::RequestBuilder,
    in_progress: &[u16],
) -> Result<Vec<u8>, JobError> {
    let response = request.send().await.map_err(|e| transport_error(what, &e))?;
    let status = response.status();
    let delay = retry_after(&response);
    let body = read_body(what, response).await?;
    if status.is_success() { Ok(body) } else { Err(status_error(what, status, delay, &body, in_progress)) }
}

/// Checks that `url` is an absolute `http://` or `https://` URL with a host.
///
/// # Errors
/// A message saying what is wrong (without repeating the URL).
pub fn validate_http_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("is not a valid URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("must be an http:// or https:// URL, not {}://", parsed.scheme()));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err("must name a host".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_onto_the_retry_table() {
        let delay = Some(Duration::from_secs(4));
        let case = |status: u16, in_progress: &[u16]| {
            let status = reqwest::StatusCode::from_u16(status).expect("status");
            let e = status_error("edge", status, delay, b"why", in_progress);
            (e.case, e.retry_after)
        };
        assert_eq!(case(429, &[]), (FailureCase::ProviderRateLimited, delay));
        assert_eq!(case(503, &[]), (FailureCase::ProviderUnavailable, delay));
        assert_eq!(case(409, &[]), (FailureCase::ProviderRejected, None));
        assert_eq!(case(409, &[409]), (FailureCase::ProviderUnavailable, delay));
        assert_eq!(case(404, &[409]), (FailureCase::ProviderRejected, None));
        let e = status_error("edge", reqwest::StatusCode::BAD_REQUEST, None, &[b'x'; 500], &[]);
        assert_eq!(e.message, format!("edge answered 400 Bad Request: {}", "x".repeat(200)));
    }

    #[test]
    fn urls_are_checked() {
        assert!(validate_http_url("https://hooks.example.com/x?y=1").is_ok());
        assert!(validate_http_url("http://127.0.0.1:8080/").is_ok());
        assert!(validate_http_url("ftp://example.com").expect_err("scheme").contains("http://"));
        assert!(validate_http_url("example.com/hook").expect_err("relative").contains("not a valid URL"));
        assert!(validate_http_url("").is_err());
    }
}
