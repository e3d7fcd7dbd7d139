#pragma once

/// @file
/// `RetryPolicy`: when and how often delivery tries a request again. The rule it encodes is the
/// library's first promise, at most once on the wire: by default only what provably did not
/// reach SendGrid is retried (a 429, a connection refused, DNS or a TLS handshake that failed
/// before the request was written). Beside it, the arithmetic that applies it to an answer:
/// `may_retry`, `retry_delay`, a 429's wait (`rate_limit_wait`), the jittered backoff.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <thread>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// When and how often a send is tried again. See the file comment. `Settings::validate` refuses
/// values outside the ranges below (ImproperlyConfigured naming the field).
struct RetryPolicy {
    /// Tries in all, the first included: 1 (retries off) to 100.
    int max_tries = 4;
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

namespace detail {

/// No wait or backoff is longer than a day, whatever a header or a setting says.
inline constexpr std::chrono::milliseconds longest_wait{24LL * 60 * 60 * 1000};

/// `seconds` as milliseconds, saturating at `longest_wait` (a header may say 10^18 seconds).
inline std::chrono::milliseconds seconds_capped(std::int64_t seconds) noexcept {
    const std::int64_t cap = longest_wait.count() / 1000;
    return std::chrono::milliseconds(std::clamp<std::int64_t>(seconds, 0, cap) * 1000);
}

/// A uniform number in [0, 1) for jitter: splitmix64 per thread, seeded from the clock and the
/// thread. Jitter only spreads clients out; it needs no cryptographic quality.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE inline double jitter_fraction() noexcept {
    thread_local std::uint64_t state =
        static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
        static_cast<std::uint64_t>(std::hash<std::thread::id>{}(std::this_thread::get_id()));
    std::uint64_t z = (state += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z ^= z >> 31;
    return static_cast<double>(z >> 11) * 0x1.0p-53;
}

}  // namespace detail

/// How long a 429 asks to wait: Retry-After in seconds, else X-RateLimit-Reset (a Unix time)
/// minus `unix_now`; nullopt when it says neither. A reset in the past means no wait. Huge
/// values saturate at a day (the policy's max_retry_after then cuts them further).
inline std::optional<std::chrono::milliseconds> rate_limit_wait(const HttpResponse& response,
                                                                std::int64_t unix_now) noexcept {
    if (auto seconds = detail::parse_decimal(detail::trim(response.header("Retry-After")))) {
        return detail::seconds_capped(*seconds);
    }
    if (auto reset = detail::parse_decimal(detail::trim(response.header("X-RateLimit-Reset")))) {
        // Both fit in 18 digits and unix_now is a real clock's, so the difference cannot overflow.
        return detail::seconds_capped(*reset > unix_now ? *reset - unix_now : 0);
    }
    return std::nullopt;
}

/// The capped exponential backoff before try number `tries + 1`: initial_backoff *
/// multiplier^(tries-1), at most max_backoff, then jittered down by up to `jitter` of itself
/// (`fraction` in [0, 1) picks where: 0 gives the shortest wait).
inline std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int tries,
                                               double fraction) noexcept {
    const double cap = static_cast<double>(
        std::clamp(policy.max_backoff, std::chrono::milliseconds(0), detail::longest_wait).count());
    double backoff = std::clamp(static_cast<double>(policy.initial_backoff.count()), 0.0, cap);
    for (int i = 1; i < tries && backoff < cap; ++i) backoff *= policy.multiplier;
    backoff = std::min(backoff, cap);
    const double jitter = std::clamp(policy.jitter, 0.0, 1.0);
    const double wait = backoff * (1.0 - jitter * (1.0 - std::clamp(fraction, 0.0, 1.0)));
    return std::chrono::milliseconds(static_cast<std::int64_t>(wait));
}

/// Whether the request that got `response` may be tried again after `tries` tries. See the
/// file comment for what is retried.
inline bool may_retry(const RetryPolicy& policy, const HttpResponse& response, int tries) noexcept {
    if (tries >= policy.max_tries) return false;
    const int status = response.status;
    const bool answered = status != 0;
    const bool not_sent =
        !answered && response.error != TransportError::none && !response.request_sent;
    const bool server_error = status == 500 || status == 502 || status == 503 || status == 504;
    const bool unknown = !answered && !not_sent;
    return status == 429 || not_sent || (server_error && policy.retry_server_errors) ||
           (unknown && policy.retry_unknown_outcome);
}

/// How long to wait before trying the request that got `response` again, after `tries` tries;
/// nullopt when it must not be tried again (`may_retry`).
inline std::optional<std::chrono::milliseconds> retry_delay(const RetryPolicy& policy,
                                                            const HttpResponse& response, int tries,
                                                            std::int64_t unix_now,
                                                            double fraction) noexcept {
    if (!may_retry(policy, response, tries)) return std::nullopt;
    if (response.status == 429) {
        if (auto asked = rate_limit_wait(response, unix_now)) {
            return std::min(*asked, std::max(policy.max_retry_after, std::chrono::milliseconds(0)));
        }
    }
    return backoff_delay(policy, tries, fraction);
}

SENDGRID_BACKEND_NAMESPACE_END
