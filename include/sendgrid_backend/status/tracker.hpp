#pragma once

/// @file
/// `StatusTracker`: the status of every tracked message, from send to delivered. It turns sends
/// (`BackendOptions::statuses`), queue moves and Event Webhook events
/// (`WebhookOptions::statuses`) into facts by the rules (status/rules.hpp), applies them to a
/// store (memory, SQLite or Redis), and sends `sendgrid_status_changed` once per real change, in
/// the process that applied it.
///
/// @code
/// auto statuses = std::make_shared<sendgrid_backend::StatusTracker>();
/// backend_options.statuses = statuses;  // each send's outcome
/// webhook_options.statuses = statuses;  // each event SendGrid reports
/// sendgrid_backend::sendgrid_status_changed.connect(
///     [](const std::string& key, const std::string& recipient, auto before, auto after,
///        const sendgrid_backend::StatusEvent&) { ... });
/// statuses->status(message.outcome.tracking_key)->summary();  // "accepted; delivered to 2 of 3;
/// ..."
/// @endcode

#include <cstddef>
#include <cstdint>
#include <ctime>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/json/event_keys.hpp"
#include "sendgrid_backend/detail/signals/handler_errors.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/status/memory_store.hpp"
#include "sendgrid_backend/status/recorder.hpp"
#include "sendgrid_backend/status/rules.hpp"
#include "sendgrid_backend/status/state.hpp"
#include "sendgrid_backend/status/store.hpp"
#include "sendgrid_backend/webhook_events.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// What changed a status: a send's outcome, a queue move or an Event Webhook event.
struct StatusEvent {
    enum class Source { send, queue, webhook };
    Source source = Source::send;
    const EmailMessage* message = nullptr;        ///< the send's message (source send)
    const WebhookEvent* event = nullptr;          ///< the event (source webhook)
    DeliveryState implies = DeliveryState::none;  ///< the state this fact implies
    std::int64_t time = 0;                        ///< unix seconds
};

/// Sent once per real change of a recipient's `RecipientState` (an empty `recipient`: the send's
/// state), by the process that applied the fact; never for a copy of a fact applied before.
/// Sent on the thread that applied it (the sending thread, a webhook request's thread), after
/// the store's lock: changes applied on two threads can reach handlers at once and in either
/// order, so a handler that keeps a "latest" state should keep the greatest, as the rules do,
/// or read `StatusTracker::status`.
inline BasicSignal<void(const std::string& key, const std::string& recipient,
                        const RecipientState& before, const RecipientState& after,
                        const StatusEvent& event)>
    sendgrid_status_changed;

/// How a `StatusTracker` works.
struct StatusTrackerOptions {
    /// Where statuses are kept; null: a `MemoryStatusStore` of its default bound.
    std::shared_ptr<StatusStore> store;
    /// The custom_arg holding the tracking key: the backend's `Settings::tracking_arg`.
    std::string tracking_arg = default_tracking_arg;
    /// Unix seconds, the time a send or queue move is recorded at; replace it in tests.
    std::function<std::int64_t()> now;
    /// Receives exceptions thrown by sendgrid_status_changed handlers; null: one line on stderr.
    std::function<void(const std::string& key, std::exception_ptr)> on_handler_error;
};

/// See the file comment. Thread-safe (as its store).
class StatusTracker : public StatusRecorder {
  public:
    /// @throws ImproperlyConfigured for an empty tracking_arg, or one named like a key SendGrid's
    ///         events have of their own (e.g. "category").
    explicit StatusTracker(StatusTrackerOptions options = {}) : options_(std::move(options)) {
        if (options_.tracking_arg.empty()) {
            throw ImproperlyConfigured("StatusTrackerOptions::tracking_arg",
                                       "is empty; name the custom_arg that carries the key");
        }
        const std::string problem = detail::tracking_arg_problem(options_.tracking_arg);
        if (!problem.empty()) {
            throw ImproperlyConfigured("StatusTrackerOptions::tracking_arg", problem);
        }
        if (!options_.store) options_.store = std::make_shared<MemoryStatusStore>();
        if (!options_.now) {
            options_.now = [] { return static_cast<std::int64_t>(std::time(nullptr)); };
        }
    }

    /// Records `message`'s outcome under `message.outcome.tracking_key` (nothing without one).
    /// @throws what the store throws (e.g. RedisError).
    void record(const EmailMessage& message) override {
        const SendOutcome& outcome = message.outcome;
        if (outcome.tracking_key.empty() || outcome.status == SendStatus::not_attempted) return;
        const std::int64_t now = options_.now();
        std::vector<PreparedFact> facts;
        std::vector<StatusEvent> events;  // one per fact: the state that fact's outcome implies
        const auto add = [&](PreparedFact fact, SendStatus status) {
            facts.push_back(std::move(fact));
            StatusEvent& event = events.emplace_back();
            event.message = &message;
            event.implies = state_of(status);
            event.time = now;
        };
        if (outcome.parts.empty()) {
            add(fact_from_outcome(outcome.tracking_key, outcome, message.recipients(), now),
                outcome.status);
        } else {
            // Sent in parts: the message's state from the whole outcome, and each recipient's
            // from its own part's (part 1 accepted and part 2 refused is not "all refused").
            add(fact_from_outcome(outcome.tracking_key, outcome, {}, now), outcome.status);
            for (std::size_t i = 0; i < outcome.parts.size(); ++i) {
                add(fact_from_outcome(outcome.tracking_key, outcome.parts[i].outcome,
                                      outcome.parts[i].recipients, now,
                                      "part " + std::to_string(i + 1)),
                    outcome.parts[i].outcome.status);
            }
        }
        apply(facts, [&](std::size_t i) -> const StatusEvent& { return events[i]; });
    }

    /// Records that the queue moved message `key` to `state` (queued, sending, or failed with
    /// `reason` "cancelled").
    void record_queue(const std::string& key, DeliveryState state,
                      const std::string& reason = std::string()) {
        const std::int64_t now = options_.now();
        std::vector<PreparedFact> facts{fact_from_queue(key, state, now, reason)};
        StatusEvent event;
        event.source = StatusEvent::Source::queue;
        event.implies = state;
        event.time = now;
        apply(facts, [&](std::size_t) -> const StatusEvent& { return event; });
    }

    /// Applies the tracked ones of `events` in one store call; returns how many were new.
    /// @throws what the store throws: then nothing was applied by this call (a store applies a
    ///         batch at once) and the events can be offered again; except RedisConnectionLost,
    ///         thrown when the connection broke in every try of the Redis store's call: the
    ///         batch may have been applied, and offered again its facts are applied once but not
    ///         signalled (RedisStatusStore::apply).
    std::size_t record(const std::vector<WebhookEvent>& events) {
        std::vector<PreparedFact> facts;
        std::vector<StatusEvent> sources;
        facts.reserve(events.size());
        sources.reserve(events.size());
        for (const WebhookEvent& event : events) {
            auto fact = fact_from_event(event, options_.tracking_arg);
            if (!fact) continue;
            StatusEvent source;
            source.source = StatusEvent::Source::webhook;
            source.event = &event;
            source.implies = rule_for(event)->implies;
            source.time = event.timestamp;
            facts.push_back(std::move(*fact));
            sources.push_back(source);
        }
        if (facts.empty()) return 0;
        return apply(facts, [&](std::size_t i) -> const StatusEvent& { return sources[i]; });
    }

    /// The status of the message with tracking key `key`; nullopt when nothing is known of it.
    std::optional<MessageStatus> status(const std::string& key) const {
        auto record = options_.store->read(key);
        if (!record) return std::nullopt;
        return status_from_record(key, *record);
    }

    const std::string& tracking_arg() const noexcept { return options_.tracking_arg; }
    StatusStore& store() const noexcept { return *options_.store; }

  private:
    template <class SourceOf>
    std::size_t apply(const std::vector<PreparedFact>& facts, SourceOf&& source_of) const {
        const std::vector<AppliedFact> results = options_.store->apply(facts);
        std::size_t applied = 0;
        for (std::size_t i = 0; i < facts.size() && i < results.size(); ++i) {
            if (!results[i].applied) continue;
            ++applied;
            signal_changes(facts[i], results[i], source_of(i));
        }
        return applied;
    }

    /// A target's state from its `width` watched values at `at` (see detail::watch_target).
    static RecipientState state_from(const std::vector<std::int64_t>& values, std::size_t at,
                                     std::size_t width) {
        RecipientState state;
        const std::int64_t rank = values[at];
        if (rank >= 0 && rank <= static_cast<std::int64_t>(DeliveryState::dropped)) {
            state.state = static_cast<DeliveryState>(rank);
        }
        for (std::size_t k = 1; k < width; ++k) {
            if (values[at + k] > 0) state.engagement |= 1u << (k - 1);
        }
        return state;
    }

    void signal_changes(const PreparedFact& fact, const AppliedFact& result,
                        const StatusEvent& event) const {
        if (result.before.size() != fact.watch.size() || result.after.size() != fact.watch.size())
            return;  // a store that broke its contract: nothing reliable to say
        for (std::size_t at = 0, width = 0; at < fact.watch.size(); at += width) {
            const std::string& field = fact.watch[at];  // "<recipient>|s.rank"
            const std::string_view target = std::string_view(field).substr(0, field.rfind('|'));
            width = detail::watched_fields(target);
            if (at + width > fact.watch.size()) return;
            const RecipientState before = state_from(result.before, at, width);
            const RecipientState after = state_from(result.after, at, width);
            if (before == after || !sendgrid_status_changed.has_listeners()) continue;
            const std::string recipient(target);
            for (const auto& error :
                 sendgrid_status_changed.send_robust(fact.key, recipient, before, after, event)) {
                detail::report_handler_error(options_.on_handler_error, fact.key, error,
                                             "sendgrid_status_changed handler");
            }
        }
    }

    StatusTrackerOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END
