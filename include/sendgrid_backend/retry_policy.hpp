#pragma once

/// @file
/// `RetryPolicy`: when and how often delivery tries a request again. The rule it encodes is the
/// library's first promise, at most once on the wire: by default only what provably did not
/// reach SendGrid is retried (a 429, a connection refused, DNS or a TLS handshake that failed
/// before the request was written).

#include <chrono>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// When and how often a send is tried again. See the file comment. `Settings::validate` refuses
/// values outside the ranges below (ImproperlyConfigured naming the field).
struct RetryPolicy {
    /// Tries in all, the first included: 1 (retries off) to 100.
    int max_attempts = 4;
    /// The first wait, and the longest; each 0 to 24 hours.
    std::chrono::milliseconds initial_backoff{500};
    std::chrono::milliseconds max_backoff{20'000};
    /// Each wait is the one before times this: 1 to 1000.
    double multiplier = 2.0;
    /// Each wait is drawn from [backoff * (1 - jitter), backoff] so that clients spread out:
    /// 0 to 1.
    double jitter = 0.5;
    /// A 429's Retry-After / X-RateLimit-Reset is honoured up to this long (0 to 24 hours);
    /// longer waits are cut.
    std::chrono::milliseconds max_retry_after{60'000};
    /// Retry 500/502/503/504 too. Off by default: SendGrid may have accepted the mail before
    /// failing, so a retry can deliver it twice.
    bool retry_server_errors = false;
    /// Retry a request that was sent but got no answer (`SendStatus::unknown`: a timeout, a
    /// connection closed or reset after the request went out). Off by default: SendGrid may
    /// have accepted it, and then the retry delivers the message twice. Turn it on only where a
    /// duplicate is better than a lost message.
    bool retry_unknown_outcome = false;
};

SENDGRID_BACKEND_NAMESPACE_END
