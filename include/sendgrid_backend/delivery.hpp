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
/// `retry_unknown_outcome`, both off by default). The rules are retry_policy.hpp's; what an
/// answer means for the outcome is outcome_recording.hpp's.
///
/// With a `RateLimit` (rate_limit.hpp), every try waits for a permit first, and a 429 that says
/// how long to wait pauses the limit for everyone sharing it.
///
/// Time comes from a `Clock` (clock.hpp), so schedules are tested without sockets or sleeping.

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/outcome_recording.hpp"
#include "sendgrid_backend/rate_limit.hpp"
#include "sendgrid_backend/retry_policy.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

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
    /// Null: no limit. Otherwise each try takes a permit first; one that waited
    /// `max_permit_wait` for it goes without (rate_limit.hpp says why). Not owned: it must
    /// outlive the Delivery (the backend's BackendOptions::rate_limit owns it).
    RateLimit* rate_limit = nullptr;
    std::chrono::milliseconds max_permit_wait{60'000};
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
        Clock::time_point due{};  ///< when a retry is due
    };

    /// The state of one run. `go` is the loop: release the retries that fell due, start what is
    /// ready while the transport has room, then wait for answers and collect them (or sleep until
    /// the next retry when nothing is in flight), until every request is final.
    struct Run {
        Delivery& delivery;
        const std::vector<HttpRequest>& requests;
        const std::vector<SendOutcome*>& outcomes;
        const OnFinal& on_final;
        std::vector<Slot> slots;
        std::size_t next_fresh = 0;  ///< requests [next_fresh, n) were never started
        /// Retries whose wait is over, in order: [due_front, size) are still to start. A vector
        /// and an index, and below a scan rather than std::deque and a heap: their code would be
        /// compiled in every file that sends (benchmarks/compile_cost.sh, docs/benchmarks.md),
        /// and a scan is bounded by the batch, whose requests each wait on the network.
        std::vector<std::size_t> due_again;
        std::size_t due_front = 0;
        /// Requests waiting for their retry, in the order they began to wait.
        std::vector<std::size_t> waiting;
        /// In flight, oldest start first (started in order with a steady clock; landing keeps
        /// the order), so that the first is the one due to be given up first.
        std::vector<std::size_t> flying;
        std::size_t unfinished;
        DeliveryReport report;
        /// Permits taken and not used yet; when none are left and the limit gave none, the next
        /// request waits until `no_permit_until`.
        std::size_t permits = 0;
        bool short_of_permits = false;
        Clock::time_point no_permit_until{};
        Clock::time_point begun{};  ///< when the run started: when fresh requests became ready

        Run(Delivery& d, const std::vector<HttpRequest>& r, const std::vector<SendOutcome*>& o,
            const OnFinal& f)
            : delivery(d),
              requests(r),
              outcomes(o),
              on_final(f),
              slots(r.size()),
              unfinished(r.size()) {}

        void go() {
            if (unfinished == 0) return;
            begun = delivery.clock_.now();
            const std::unique_ptr<TransportBatch> batch = open_batch();
            if (!batch) return;
            const std::size_t limit = concurrency(*batch);
            while (unfinished > 0) {
                const Clock::time_point now = delivery.clock_.now();
                release_due_retries(now);
                if (!start_ready(*batch, limit, now)) return;
                if (!flying.empty()) {
                    if (!wait_and_collect(*batch, now)) return;
                } else if (!waiting.empty() || short_of_permits) {
                    delivery.clock_.sleep_until(next_wake());
                }
            }
        }

        // --- the steps of the loop ---

        /// The transport's batch for this run; null when it threw (the run is then abandoned).
        std::unique_ptr<TransportBatch> open_batch() {
            std::unique_ptr<TransportBatch> batch;
            call_transport("open_batch", [&] {
                batch = delivery.transport_.open_batch(
                    std::min(delivery.options_.max_in_flight, requests.size()));
                if (!batch) throw std::logic_error("open_batch returned no batch");
            });
            return batch;
        }

        /// How many to keep in flight. A transport that runs fewer at once than asked must not
        /// see its queued requests counted as overdue.
        std::size_t concurrency(const TransportBatch& batch) const noexcept {
            return std::max<std::size_t>(
                1, std::min(delivery.options_.max_in_flight, batch.concurrency()));
        }

        /// Moves the retries whose wait is over to `due_again`, earliest first.
        void release_due_retries(Clock::time_point now) {
            while (!waiting.empty()) {
                const std::size_t first = first_due();
                if (slots[waiting[first]].due > now) break;
                due_again.push_back(waiting[first]);
                waiting.erase(waiting.begin() + static_cast<std::ptrdiff_t>(first));
            }
        }

        /// Starts ready requests while fewer than `limit` are in flight; false when the
        /// transport threw (the run is then abandoned).
        bool start_ready(TransportBatch& batch, std::size_t limit, Clock::time_point now) {
            while (flying.size() < limit && has_ready() && take_permit(limit, now)) {
                const std::size_t i = take_ready();
                start(i, now);
                if (!call_transport("start", [&] { batch.start(i, requests[i]); })) return false;
            }
            return true;
        }

        /// Waits for answers until the next event, records those that came and gives up the
        /// overdue; false when the transport threw (the run is then abandoned).
        bool wait_and_collect(TransportBatch& batch, Clock::time_point now) {
            std::vector<Completion> done;
            if (!call_transport("wait_any",
                                [&] { done = batch.wait_any(time_to_next_event(now)); })) {
                return false;
            }
            now = delivery.clock_.now();
            for (Completion& completion : done) collect(completion, now);
            give_up_overdue(now);
            return true;
        }

        // --- permits ---

        /// Whether the next ready request may start now, taking a permit for it when there is
        /// a limit. Permits are asked for as many as could start, in one call.
        bool take_permit(std::size_t limit, Clock::time_point now) {
            RateLimit* rate_limit = delivery.options_.rate_limit;
            if (rate_limit == nullptr) return true;
            if (permits == 0) {
                if (short_of_permits && now < no_permit_until) return waited_long_enough(now);
                const std::size_t wanted = std::min(limit - flying.size(), ready_count());
                RatePermits taken;
                try {
                    taken = rate_limit->take(wanted);
                } catch (...) {
                    taken.granted = wanted;  // a limit that fails holds no request back
                }
                permits = std::min(taken.granted, wanted);
                if (permits == 0) {
                    short_of_permits = true;
                    no_permit_until =
                        std::min(now + std::max(taken.retry_in, std::chrono::milliseconds(1)),
                                 ready_since() + delivery.options_.max_permit_wait);
                    return waited_long_enough(now);
                }
            }
            --permits;
            short_of_permits = false;
            return true;
        }

        /// A request ready for `max_permit_wait` goes without a permit: counted from when it
        /// became ready, not from when it began to wait, so that no request of a batch starts
        /// later than that for want of permits (a queue worker's visibility timeout relies on
        /// it).
        bool waited_long_enough(Clock::time_point now) {
            if (now - ready_since() < delivery.options_.max_permit_wait) return false;
            short_of_permits = false;
            return true;
        }

        /// When the next request to start became ready: the run's start for one never tried,
        /// its due time for a retry. There must be one (has_ready).
        Clock::time_point ready_since() const {
            if (next_fresh < requests.size()) return begun;
            return slots[due_again[due_front]].due;
        }

        /// SendGrid said how long to wait: so does everyone sharing the limit.
        void pause_rate_limit(const HttpResponse& response) {
            RateLimit* rate_limit = delivery.options_.rate_limit;
            if (rate_limit == nullptr || response.status != 429) return;
            const auto asked = rate_limit_wait(response, delivery.clock_.unix_now());
            if (!asked) return;
            try {
                rate_limit->pause(std::min(*asked, delivery.options_.retry.max_retry_after));
            } catch (...) {  // this request waits its own wait all the same
            }
        }

        // --- what is ready, and when the next thing happens ---

        /// Fresh requests first, in order, then retries as they fell due: the order a single
        /// queue of every request, retries pushed at the back, would give.
        bool has_ready() const noexcept {
            return next_fresh < requests.size() || due_front < due_again.size();
        }
        std::size_t ready_count() const noexcept {
            return (requests.size() - next_fresh) + (due_again.size() - due_front);
        }
        std::size_t take_ready() {
            if (next_fresh < requests.size()) return next_fresh++;
            const std::size_t i = due_again[due_front++];
            if (due_front == due_again.size()) {
                due_again.clear();
                due_front = 0;
            }
            return i;
        }
        /// The position in `waiting` of the retry due first (of equals, the one that began to
        /// wait first). It must not be empty.
        std::size_t first_due() const noexcept {
            std::size_t first = 0;
            for (std::size_t k = 1; k < waiting.size(); ++k) {
                if (slots[waiting[k]].due < slots[waiting[first]].due) first = k;
            }
            return first;
        }

        void start(std::size_t i, Clock::time_point now) {
            Slot& slot = slots[i];
            if (slot.tries++ == 0) slot.first_try = now;
            slot.started = now;
            slot.state = SlotState::in_flight;
            outcomes[i]->tries = slot.tries;
            flying.push_back(i);
        }

        /// With nothing in flight: when the next retry is due, or a permit may be had.
        Clock::time_point next_wake() const {
            Clock::time_point next = Clock::time_point::max();
            if (!waiting.empty()) next = slots[waiting[first_due()]].due;
            if (short_of_permits && has_ready()) next = std::min(next, no_permit_until);
            return next;
        }

        /// Until the next retry is due, a permit may be had, or the oldest request in flight is
        /// overdue; at least 1 ms, so that a clock between two milliseconds cannot make this
        /// spin.
        std::chrono::milliseconds time_to_next_event(Clock::time_point now) const {
            Clock::time_point next = now + delivery.options_.give_up_after;
            if (!waiting.empty()) next = std::min(next, slots[waiting[first_due()]].due);
            if (short_of_permits && has_ready()) next = std::min(next, no_permit_until);
            if (!flying.empty()) {
                next =
                    std::min(next, slots[flying.front()].started + delivery.options_.give_up_after);
            }
            const auto left = std::chrono::ceil<std::chrono::milliseconds>(next - now);
            return std::max(left, std::chrono::milliseconds(1));
        }

        // --- an answer, or none ---

        void collect(Completion& completion, Clock::time_point now) {
            const std::size_t i = completion.tag;
            if (i >= slots.size() || slots[i].state != SlotState::in_flight) {
                note("it answered a request it was not given, or one twice", nullptr);
                return;
            }
            land(i);
            const HttpResponse& response = completion.response;
            record(i, response, now);
            pause_rate_limit(response);
            if (const auto delay = retry_delay_for(i, response)) {
                wait_for_retry(i, response, now + *delay);
            } else {
                finish(i);
            }
        }

        void land(std::size_t i) { flying.erase(std::find(flying.begin(), flying.end(), i)); }

        /// What request `i` got, on its outcome.
        void record(std::size_t i, const HttpResponse& response, Clock::time_point now) {
            SendOutcome& outcome = *outcomes[i];
            outcome.attempts += std::max(0, response.requests_on_wire);
            record_outcome(outcome, response);
            scrub(outcome);
            outcome.duration = now - slots[i].first_try;
        }

        /// How long request `i`, which got `response`, waits before its next try; nullopt when
        /// it has none. The wall clock and the jitter are only read for a request that may be
        /// retried.
        std::optional<std::chrono::milliseconds> retry_delay_for(std::size_t i,
                                                                 const HttpResponse& response) {
            const RetryPolicy& policy = delivery.options_.retry;
            const int tries = slots[i].tries;
            if (!may_retry(policy, response, tries)) return std::nullopt;
            return retry_delay(policy, response, tries, delivery.clock_.unix_now(),
                               delivery.random_());
        }

        void wait_for_retry(std::size_t i, const HttpResponse& response, Clock::time_point due) {
            outcomes[i]->earlier_tries.push_back(EarlierTry{response.status, response.error});
            slots[i].state = SlotState::waiting;
            slots[i].due = due;
            waiting.push_back(i);
        }

        /// Gives up the requests in flight for longer than `give_up_after`.
        void give_up_overdue(Clock::time_point now) {
            // Oldest first: once one is not overdue, none after it is.
            while (!flying.empty() &&
                   now - slots[flying.front()].started >= delivery.options_.give_up_after) {
                give_up(flying.front(), now);
            }
        }

        void give_up(std::size_t i, Clock::time_point now) {
            land(i);
            SendOutcome& outcome = *outcomes[i];
            detail::record_unknown(
                outcome, "the transport did not answer within " +
                             std::to_string(delivery.options_.give_up_after.count()) + " ms");
            outcome.duration = now - slots[i].first_try;
            note("it did not answer a request", nullptr);
            finish(i);
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

        void scrub(SendOutcome& outcome) const {
            detail::redact(outcome, delivery.options_.secret);
        }

        // --- when the transport throws ---

        /// Calls `call`, a call into the transport; when it throws, abandons the run and
        /// returns false.
        template <class Call>
        bool call_transport(const char* name, Call&& call) {
            try {
                call();
                return true;
            } catch (...) {
                abandon(std::string("it threw from ") + name, std::current_exception());
                return false;
            }
        }

        void note(const std::string& problem, std::exception_ptr cause) {
            if (report.problem.empty()) {
                report.problem = problem;
                detail::redact(report.problem, delivery.options_.secret);  // the transport's words
                report.cause = std::move(cause);
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
                const Slot& slot = slots[i];
                if (slot.state == SlotState::final) continue;
                record_abandoned(i, what);
                if (slot.tries > 0) outcomes[i]->duration = now - slot.first_try;
                finish(i);
            }
        }

        /// The final outcome of request `i`, not final yet, when the transport threw `what`.
        void record_abandoned(std::size_t i, const std::string& what) {
            SendOutcome& outcome = *outcomes[i];
            if (slots[i].state == SlotState::in_flight) {
                detail::record_unknown(
                    outcome, "the transport threw while the request was in flight (" + what + ")");
            } else if (slots[i].tries == 0) {
                outcome.status = SendStatus::transport_failed;
                outcome.transport_error = TransportError::exception;
                outcome.failure_reason =
                    "not sent: the transport threw earlier in this batch (" + what + ")";
            } else {
                // Waiting for a retry, or due for one: the try that was to be tried again is the
                // final one, and keeps what it got.
                if (!outcome.earlier_tries.empty()) outcome.earlier_tries.pop_back();
                outcome.failure_reason += "; not tried again: the transport threw (" + what + ")";
            }
            scrub(outcome);
        }
    };

    Transport& transport_;
    DeliveryOptions options_;
    Clock& clock_;
    Random random_;
};

SENDGRID_BACKEND_NAMESPACE_END
