#pragma once

/// @file
/// Delivery: the stage between the backend and the transport. It hands each request to the
/// transport, records what came back on the message's `SendOutcome`, and decides retries, each
/// request on its own schedule (a 429 waits its own Retry-After while the others go on). It
/// reports each outcome as soon as it is final, so the backend can emit it at once.
///
/// At most once on the wire: a request is tried again only when it provably did not reach
/// SendGrid (a 429, or no connection: DNS, refused, a TLS handshake that failed before the
/// request was written), or when the policy opts into more (`retry_server_errors`,
/// `retry_unknown_outcome`, both off by default).
///
/// Time comes from a `Clock`, so schedules are tested without sockets or sleeping.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/json/scan.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/detail/vector_queue.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/retry_policy.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Time as delivery sees it; inject a fake one to test retry schedules without waiting.
class Clock {
  public:
    using time_point = std::chrono::steady_clock::time_point;
    virtual ~Clock() = default;
    virtual time_point now() = 0;
    /// Seconds since the Unix epoch (SendGrid's X-RateLimit-Reset is given in those).
    virtual std::int64_t unix_now() = 0;
    virtual void sleep_until(time_point when) = 0;
};

/// The real clock: steady_clock, time(), and the calling thread sleeps.
class SystemClock final : public Clock {
  public:
    time_point now() override { return std::chrono::steady_clock::now(); }
    std::int64_t unix_now() override { return static_cast<std::int64_t>(std::time(nullptr)); }
    void sleep_until(time_point when) override { std::this_thread::sleep_until(when); }
};

/// The process's SystemClock (it holds no state).
inline SystemClock& system_clock() noexcept {
    static SystemClock clock;
    return clock;
}

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

/// Replaces every occurrence of `secret` in `text` (the API key, should a server echo it).
inline void redact(std::string& text, const std::string& secret) {
    if (secret.empty()) return;
    for (std::size_t at = text.find(secret); at != std::string::npos; at = text.find(secret, at)) {
        text.replace(at, secret.size(), "[redacted]");
    }
}

}  // namespace detail

namespace detail {

/// One `{"message", "field", "help"}` object; a non-string value is kept as its JSON text.
inline bool read_api_error(JsonScanner& json, ApiError& error) {
    if (!json.take('{')) return false;
    if (json.take('}')) return true;
    std::string key;
    for (;;) {
        if (!json.string(key) || !json.take(':')) return false;
        std::string* target = key == "message" ? &error.message
                              : key == "field" ? &error.field
                              : key == "help"  ? &error.help
                                               : nullptr;
        std::string_view raw;
        if (target != nullptr && json.peek() == '"') {
            if (!json.string(*target)) return false;
        } else if (!json.value(&raw)) {
            return false;
        } else if (target != nullptr) {
            target->assign(raw == "null" ? std::string_view() : raw);
        }
        if (json.take('}')) return true;
        if (!json.take(',')) return false;
    }
}

inline bool read_api_errors(JsonScanner& json, std::vector<ApiError>& errors) {
    if (!json.take('[')) return false;
    if (json.take(']')) return true;
    for (;;) {
        if (json.peek() == '{') {
            ApiError error;
            if (!read_api_error(json, error)) return false;
            errors.push_back(std::move(error));
        } else if (!json.value()) {
            return false;
        }
        if (json.take(']')) return true;
        if (!json.take(',')) return false;
    }
}

}  // namespace detail

/// SendGrid's `{"errors": [{"message", "field", "help"}]}`; empty when the body is not that
/// (not JSON at all, or JSON of another shape). A `help` that is not a string is kept as its
/// JSON text; null is empty. A leading UTF-8 byte order mark is skipped (RFC 8259 allows it).
inline std::vector<ApiError> parse_api_errors(std::string_view body) {
    if (body.substr(0, 3) == "\xEF\xBB\xBF") body.remove_prefix(3);
    detail::JsonScanner json(body);
    std::vector<ApiError> errors;
    if (!json.take('{')) return {};
    if (!json.take('}')) {
        std::string key;
        for (;;) {
            if (!json.string(key) || !json.take(':')) return {};
            if (key == "errors" && json.peek() == '[') {
                std::vector<ApiError> list;
                if (!detail::read_api_errors(json, list)) return {};
                errors = std::move(list);  // a repeated key: the last one counts
            } else if (!json.value()) {
                return {};
            } else if (key == "errors") {
                errors.clear();  // ... even when it is not a list
            }
            if (json.take('}')) break;
            if (!json.take(',')) return {};
        }
    }
    return json.at_end() ? errors : std::vector<ApiError>{};
}

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
    if (tries >= policy.max_attempts) return false;
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

/// Writes what `response` says into `outcome` (everything but attempts, tries and duration).
/// A complete answer head is SendGrid's answer even when the body was cut short; without one,
/// the request was either not sent (`transport_failed`) or may have been (`unknown`).
inline void record_outcome(SendOutcome& outcome, const HttpResponse& response) {
    const int status = response.status;
    const bool cut_short = response.error != TransportError::none;
    outcome.http_status = status;
    outcome.transport_error = response.error;
    outcome.errors.clear();
    outcome.message_id.clear();
    outcome.failure_reason.clear();
    const std::string transport_words =
        cut_short ? std::string(to_string(response.error)) + ": " + response.error_message : "";
    if (status >= 200 && status < 300) {
        // A 2xx head is SendGrid's acceptance; a body cut short after it does not undo that.
        outcome.status = SendStatus::accepted;
        outcome.message_id = std::string(response.header("X-Message-Id"));
        return;
    }
    if (status >= 300 && status <= 599) {
        outcome.status = SendStatus::rejected;
        outcome.errors = parse_api_errors(response.body);
        outcome.failure_reason = "HTTP " + std::to_string(status);
        const std::size_t shown = std::min<std::size_t>(outcome.errors.size(), 10);
        for (std::size_t i = 0; i < shown; ++i) {
            outcome.failure_reason += "; " + outcome.errors[i].message;
            if (!outcome.errors[i].field.empty()) {
                outcome.failure_reason += " (" + outcome.errors[i].field + ")";
            }
        }
        if (outcome.errors.size() > shown) {
            outcome.failure_reason +=
                "; and " + std::to_string(outcome.errors.size() - shown) + " more";
        }
        if (cut_short) outcome.failure_reason += " (answer cut short: " + transport_words + ")";
        return;
    }
    outcome.status = SendStatus::unknown;
    if (status != 0) {
        outcome.failure_reason = "outcome unknown: the transport reported status " +
                                 std::to_string(status) + ", which is no final HTTP answer";
    } else if (!cut_short) {
        outcome.failure_reason =
            "outcome unknown: the transport gave neither an answer nor an error";
    } else if (!response.request_sent) {
        outcome.status = SendStatus::transport_failed;
        outcome.failure_reason = "not sent: " + transport_words;
    } else {
        outcome.failure_reason = "outcome unknown: the request was sent but no answer arrived (" +
                                 transport_words + "); SendGrid may have accepted it";
    }
}

/// How delivery behaves; the backend fills it from its Settings.
struct DeliveryOptions {
    RetryPolicy retry;
    std::size_t max_in_flight = 8;
    /// A request the transport has not answered this long after it was started is given up as
    /// `unknown` and the transport reported broken (a transport must answer within its own
    /// timeout; this only guards against one that never does).
    std::chrono::milliseconds give_up_after{40'000};
    /// Never recorded in an outcome: replaced by "[redacted]" should a server echo it back.
    std::string secret;
};

/// What went wrong with the transport in one `Delivery::run`; empty `problem` when nothing did.
struct DeliveryReport {
    std::string problem;
    std::exception_ptr cause;  ///< what the transport threw, when it threw

    bool transport_broke() const noexcept { return !problem.empty(); }
};

/// Sends a set of requests through a transport. See the file comment. One object per run is
/// cheap; it holds references to the transport and the clock, which must outlive it.
class Delivery {
  public:
    /// Called once per request, as soon as its outcome is final.
    using OnFinal = std::function<void(std::size_t index)>;
    /// A uniform number in [0, 1) for jitter.
    using Random = std::function<double()>;

    Delivery(Transport& transport, DeliveryOptions options, Clock& clock = system_clock(),
             Random random = &detail::jitter_fraction)
        : transport_(transport),
          options_(std::move(options)),
          clock_(clock),
          random_(std::move(random)) {
        if (options_.max_in_flight == 0) options_.max_in_flight = 1;
        if (!random_) random_ = &detail::jitter_fraction;
    }

    /// Sends `requests[i]`, records its outcome in `*outcomes[i]` and calls `on_final(i)` once
    /// for every i, as soon as that outcome is final, on this thread. When the transport throws
    /// or breaks its contract, every request still gets its final outcome and its call (those
    /// that may have gone out `unknown`, the others `transport_failed`), and the report says
    /// what broke. Exceptions thrown by `on_final` propagate.
    DeliveryReport run(const std::vector<HttpRequest>& requests,
                       const std::vector<SendOutcome*>& outcomes, const OnFinal& on_final) {
        Run state(*this, requests, outcomes, on_final);
        state.go();
        return std::move(state.report);
    }

  private:
    enum class SlotState { ready, in_flight, waiting, final };

    struct Slot {
        SlotState state = SlotState::ready;
        int tries = 0;
        Clock::time_point first_try{};
        Clock::time_point started{};
        Clock::time_point due{};  ///< when waiting: when it may be tried again
    };

    /// The state of one run.
    struct Run {
        Delivery& delivery;
        const std::vector<HttpRequest>& requests;
        const std::vector<SendOutcome*>& outcomes;
        const OnFinal& on_final;
        std::vector<Slot> slots;
        std::size_t next_fresh = 0;  ///< requests [next_fresh, n) were never started
        detail::VectorQueue<std::size_t> due_again;  ///< retries whose wait is over, in order
        /// Waiting for a retry, in no order. Retries are few: a scan for the earliest costs
        /// less than a heap, whose code (~100 functions at -O0) every sending file compiled.
        std::vector<std::size_t> waiting;
        /// In flight, oldest start first (started in order with a steady clock; landing keeps
        /// the order), so that the first is the one due to be given up first.
        std::vector<std::size_t> flying;
        std::size_t unfinished;
        DeliveryReport report;

        Run(Delivery& d, const std::vector<HttpRequest>& r, const std::vector<SendOutcome*>& o,
            const OnFinal& f)
            : delivery(d),
              requests(r),
              outcomes(o),
              on_final(f),
              slots(r.size()),
              unfinished(r.size()) {}

        /// Fresh requests first, in order, then retries as they fell due: the order a single
        /// queue of every request, retries pushed at the back, would give.
        bool has_ready() const noexcept {
            return next_fresh < requests.size() || !due_again.empty();
        }
        std::size_t take_ready() {
            return next_fresh < requests.size() ? next_fresh++ : due_again.pop();
        }

        /// The waiting request due first (the first of equals). `waiting` must not be empty.
        std::vector<std::size_t>::const_iterator earliest_waiting() const {
            auto earliest = waiting.begin();
            for (auto it = waiting.begin() + 1; it != waiting.end(); ++it) {
                if (slots[*it].due < slots[*earliest].due) earliest = it;
            }
            return earliest;
        }

        void go() {
            if (unfinished == 0) return;
            std::unique_ptr<TransportBatch> batch;
            try {
                batch = delivery.transport_.open_batch(
                    std::min(delivery.options_.max_in_flight, requests.size()));
                if (!batch) throw std::logic_error("open_batch returned no batch");
            } catch (...) {
                abandon("it threw from open_batch", std::current_exception());
                return;
            }
            // A transport that runs fewer at once than asked must not see its queued requests
            // counted as overdue.
            const std::size_t limit = std::max<std::size_t>(
                1, std::min(delivery.options_.max_in_flight, batch->concurrency()));
            while (unfinished > 0) {
                Clock::time_point now = delivery.clock_.now();
                while (!waiting.empty()) {
                    const auto earliest = earliest_waiting();
                    if (slots[*earliest].due > now) break;
                    due_again.push(*earliest);
                    waiting.erase(earliest);
                }
                while (flying.size() < limit && has_ready()) {
                    const std::size_t i = take_ready();
                    start(i, now);
                    try {
                        batch->start(i, requests[i]);
                    } catch (...) {
                        abandon("it threw from start", std::current_exception());
                        return;
                    }
                }
                if (!flying.empty()) {
                    std::vector<Completion> done;
                    try {
                        done = batch->wait_any(time_to_next_event(now));
                    } catch (...) {
                        abandon("it threw from wait_any", std::current_exception());
                        return;
                    }
                    now = delivery.clock_.now();
                    for (Completion& completion : done) collect(completion, now);
                    give_up_overdue(now);
                } else if (!waiting.empty()) {
                    delivery.clock_.sleep_until(slots[*earliest_waiting()].due);
                }
            }
        }

        void start(std::size_t i, Clock::time_point now) {
            Slot& slot = slots[i];
            if (slot.tries++ == 0) slot.first_try = now;
            slot.started = now;
            slot.state = SlotState::in_flight;
            outcomes[i]->tries = slot.tries;
            flying.push_back(i);
        }

        /// Until the next retry is due or the oldest request in flight is overdue; at least
        /// 1 ms, so that a clock between two milliseconds cannot make this spin.
        std::chrono::milliseconds time_to_next_event(Clock::time_point now) const {
            Clock::time_point next = now + delivery.options_.give_up_after;
            if (!waiting.empty()) next = std::min(next, slots[*earliest_waiting()].due);
            if (!flying.empty()) {
                next =
                    std::min(next, slots[flying.front()].started + delivery.options_.give_up_after);
            }
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - now);
            return std::max(left, std::chrono::milliseconds(1));
        }

        void land(std::size_t i) { flying.erase(std::find(flying.begin(), flying.end(), i)); }

        void collect(Completion& completion, Clock::time_point now) {
            const std::size_t i = completion.tag;
            if (i >= slots.size() || slots[i].state != SlotState::in_flight) {
                note("it answered a request it was not given, or one twice", nullptr);
                return;
            }
            land(i);
            Slot& slot = slots[i];
            SendOutcome& outcome = *outcomes[i];
            HttpResponse& response = completion.response;
            outcome.attempts += std::max(0, response.requests_on_wire);
            record_outcome(outcome, response);
            scrub(outcome);
            outcome.duration = now - slot.first_try;
            // The wall clock and the jitter are only read for a request that may be retried.
            const RetryPolicy& policy = delivery.options_.retry;
            const auto delay = may_retry(policy, response, slot.tries)
                                   ? retry_delay(policy, response, slot.tries,
                                                 delivery.clock_.unix_now(), delivery.random_())
                                   : std::nullopt;
            if (delay) {
                outcome.earlier_tries.push_back(EarlierTry{response.status, response.error});
                slot.state = SlotState::waiting;
                slot.due = now + *delay;
                waiting.push_back(i);
            } else {
                finish(i);
            }
        }

        void give_up_overdue(Clock::time_point now) {
            while (!flying.empty()) {
                const std::size_t i = flying.front();
                if (now - slots[i].started < delivery.options_.give_up_after) return;  // nor later
                land(i);
                SendOutcome& outcome = *outcomes[i];
                set_unknown(outcome, "the transport did not answer within " +
                                         std::to_string(delivery.options_.give_up_after.count()) +
                                         " ms");
                outcome.duration = now - slots[i].first_try;
                note("it did not answer a request", nullptr);
                finish(i);
            }
        }

        void finish(std::size_t i) {
            Slot& slot = slots[i];
            slot.state = SlotState::final;
            --unfinished;
            SendOutcome& outcome = *outcomes[i];
            if (!outcome.accepted() && slot.tries > 1) {
                outcome.failure_reason += " (after " + std::to_string(slot.tries) + " tries)";
            }
            on_final(i);
        }

        static void set_unknown(SendOutcome& outcome, const std::string& why) {
            outcome.status = SendStatus::unknown;
            outcome.http_status = 0;
            outcome.errors.clear();
            outcome.message_id.clear();
            outcome.transport_error = TransportError::exception;
            outcome.failure_reason = "outcome unknown: " + why + "; it may have sent the request";
        }

        void note(const std::string& problem, std::exception_ptr cause) {
            if (report.problem.empty()) {
                report.problem = problem;
                report.cause = std::move(cause);
            }
        }

        void scrub(SendOutcome& outcome) const {
            const std::string& secret = delivery.options_.secret;
            if (secret.empty()) return;
            detail::redact(outcome.failure_reason, secret);
            detail::redact(outcome.message_id, secret);
            for (ApiError& error : outcome.errors) {
                detail::redact(error.message, secret);
                detail::redact(error.field, secret);
                detail::redact(error.help, secret);
            }
        }

        /// The transport threw: it is not used again in this run. Every request still gets its
        /// final outcome, in index order.
        void abandon(const std::string& problem, std::exception_ptr cause) {
            const std::string what = detail::describe_exception(cause);
            note(problem + ": " + what, cause);
            const Clock::time_point now = delivery.clock_.now();
            flying.clear();
            for (std::size_t i = 0; i < slots.size(); ++i) {
                Slot& slot = slots[i];
                SendOutcome& outcome = *outcomes[i];
                switch (slot.state) {
                    case SlotState::final:
                        continue;
                    case SlotState::in_flight:
                        set_unknown(outcome,
                                    "the transport threw while the request was in "
                                    "flight (" +
                                        what + ")");
                        scrub(outcome);
                        break;
                    case SlotState::ready:
                        if (slot.tries == 0) {
                            outcome.status = SendStatus::transport_failed;
                            outcome.transport_error = TransportError::exception;
                            outcome.failure_reason =
                                "not sent: the transport threw earlier in this batch (" + what +
                                ")";
                            scrub(outcome);
                            break;
                        }
                        [[fallthrough]];  // due for a retry: keep what the last try said
                    case SlotState::waiting:
                        // Its last try was to be tried again; now it is the final one.
                        if (!outcome.earlier_tries.empty()) outcome.earlier_tries.pop_back();
                        outcome.failure_reason +=
                            "; not tried again: the transport threw (" + what + ")";
                        scrub(outcome);
                        break;
                }
                if (slot.tries > 0) outcome.duration = now - slot.first_try;
                finish(i);
            }
        }
    };

    Transport& transport_;
    DeliveryOptions options_;
    Clock& clock_;
    Random random_;
};

SENDGRID_BACKEND_NAMESPACE_END
