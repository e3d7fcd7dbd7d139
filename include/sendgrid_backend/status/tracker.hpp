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

#include <algorithm>
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
#include <unordered_map>
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
        std::vector<StatusEvent> events;  // one per fact: the state its outcome implies
        const auto add = [&](std::vector<PreparedFact> more, SendStatus status) {
            StatusEvent event;
            event.message = &message;
            event.implies = state_of(status);
            event.time = now;
            events.insert(events.end(), more.size(), event);
            facts.insert(facts.end(), std::make_move_iterator(more.begin()),
                         std::make_move_iterator(more.end()));
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

    /// Applies the tracked ones of `events`, made into facts a part at a time
    /// (`StatusStore::apply_in_parts`: the Redis store applies a part while the next is made, in
    /// one round trip); returns how many were new.
    /// @throws what the store throws: then the parts it had applied are signalled, and the
    ///         events can be offered again (no fact is applied twice); RedisConnectionLost when
    ///         the connection broke in every try of the Redis store's call: the batch may have
    ///         been applied, and offered again its facts are applied once but not signalled
    ///         (RedisStatusStore::apply).
    std::size_t record(const std::vector<WebhookEvent>& events) {
        return record_events(
            events, events.size(), [](std::size_t) { return std::size_t{0}; }, no_digests);
    }

    /// Reads more events into `events` with `read_more`: `read_more(events, most)` appends at
    /// most `most` and returns how many (0: none left).
    using EventReader =
        std::function<std::size_t(std::vector<WebhookEvent>& events, std::size_t most)>;

    /// As `record(events)`, the events read with `read_more` as they are applied (after any
    /// already in `events`): a part's facts are made as soon as its events are read, so the
    /// Redis store applies one part while the next is read (EventWebhook reads a body so).
    /// `events` may grow past its capacity (reserve room for them all: the facts are reserved
    /// for it). `read_more` runs while the store works, under its locks: it must not use the
    /// store (nor the Redis store's client). @throws also what `read_more` throws, after the
    /// parts applied before are signalled.
    std::size_t record(std::vector<WebhookEvent>& events, const EventReader& read_more) {
        return record_events(
            events, events.capacity(), [&](std::size_t most) { return read_more(events, most); },
            no_digests);
    }

    /// EventWebhook's: as `record(events, read_more)`, the events read from `reader`, which
    /// hashes each event's members as it reads them (detail::MemberDigests), so that the facts'
    /// fingerprints are made without reading the events' text again.
    std::size_t record(std::vector<WebhookEvent>& events, detail::WebhookBodyReader& reader) {
        detail::MemberDigests digests;  // of the events read last
        std::size_t first_read = 0;     // the index of the first of them
        return record_events(
            events, events.capacity(),
            [&](std::size_t most) {
                digests.clear();
                first_read = events.size();
                return reader.read(&events, most, &digests);
            },
            [&](std::size_t event) {
                return event >= first_read ? std::make_pair(&digests, event - first_read)
                                           : no_digests(event);
            });
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
    /// Events made into facts a part at a time: parts of a batch this size (the Redis store
    /// sends each as it is made).
    static constexpr std::size_t events_per_part = 250;
    static constexpr std::size_t first_part_events = 50;

    /// For events read without digests of their members.
    static std::pair<const detail::MemberDigests*, std::size_t> no_digests(std::size_t) {
        return {nullptr, 0};
    }

    /// `record`'s work: `read_more(most)` appends at most `most` events to `events`; room is
    /// reserved for the facts of `expected` events. `digests_of(i)` gives the digests of
    /// event i's members and its object there (null: its text is read for them).
    template <class ReadMore, class DigestsOf>
    std::size_t record_events(const std::vector<WebhookEvent>& events, std::size_t expected,
                              ReadMore&& read_more, DigestsOf&& digests_of) {
        std::vector<PreparedFact> facts;
        std::vector<StatusEvent> sources;   // per fact; the events' places set once all are read
        std::vector<std::size_t> event_of;  // per fact, its event's index
        std::vector<bool> is_event;  // per fact: an event's own fact (counted), or its send's
        facts.reserve(2 * expected);
        sources.reserve(2 * expected);
        event_of.reserve(2 * expected);
        is_event.reserve(2 * expected);
        // A message's events all say the same of its send: that fact is made and goes to the
        // store once. By its fingerprint's hash (the fact's index, as `facts` may grow).
        std::unordered_map<std::uint64_t, std::size_t> sends;
        sends.reserve(expected);
        std::size_t next = 0;
        const auto more = [&] {
            // The first part small: the store (Redis) waits for it, and works on it while the
            // next is read and made.
            const std::size_t part = next == 0 ? first_part_events : events_per_part;
            if (next == events.size() && read_more(part) == 0) return false;
            const std::size_t end = std::min(events.size(), next + part);
            for (; next < end; ++next) {
                const WebhookEvent& event = events[next];
                const auto [digests, object] = digests_of(next);
                auto made = detail::recipient_fact(event, options_.tracking_arg, digests, object);
                if (!made) continue;
                StatusEvent source;
                source.source = StatusEvent::Source::webhook;
                source.implies = made->implies;
                source.time = event.timestamp;
                facts.push_back(std::move(made->fact));
                sources.push_back(source);
                event_of.push_back(next);
                is_event.push_back(true);
                const auto [known, added] = sends.emplace(
                    detail::send_fact_hash(made->message_id, made->key_hash), facts.size());
                // The same hash and key: the same fingerprint, so the same fact.
                if (!added && facts[known->second].key == facts.back().key) continue;
                facts.push_back(
                    detail::send_fact(facts.back().key, made->message_id, made->key_hash));
                source.implies = DeliveryState::accepted;
                sources.push_back(source);
                event_of.push_back(next);
                is_event.push_back(false);
            }
            return true;
        };
        struct Part {
            std::size_t first;
            std::size_t end;
            FoldedPart folded;
        };
        std::vector<Part> parts;
        std::exception_ptr failed;       // the store's
        std::exception_ptr fold_failed;  // a part the store answered wrongly (or no memory)
        try {
            // A part is folded as the store reports it (the Redis store: while Redis works on
            // the later ones); handlers are called once the store is done, outside its locks.
            options_.store->apply_in_parts(
                facts, more, [&](std::size_t first, std::size_t end, AppliedFacts result) {
                    if (fold_failed) return;
                    try {
                        if (first > end || end > facts.size()) {
                            throw std::logic_error(
                                "sendgrid_backend: the status store answered for facts it was "
                                "not given (it breaks StatusStore's contract)");
                        }
                        parts.push_back(
                            {first, end,
                             fold_changes(detail::FactSpan(facts.data() + first, end - first),
                                          std::move(result))});
                    } catch (...) {
                        fold_failed = std::current_exception();
                    }
                });
        } catch (...) {
            failed = std::current_exception();  // after the changes of what was applied
        }
        for (std::size_t i = 0; i < sources.size(); ++i) sources[i].event = &events[event_of[i]];
        std::size_t count = 0;
        for (const Part& part : parts) {
            emit_changes(detail::FactSpan(facts.data() + part.first, part.end - part.first),
                         part.folded.changes, [&](std::size_t i) -> const StatusEvent& {
                             return sources[part.first + i];
                         });
            for (std::size_t i = 0; i < part.folded.applied.size(); ++i) {
                count += part.folded.applied[i] && is_event[part.first + i] ? 1 : 0;
            }
        }
        if (fold_failed) std::rethrow_exception(fold_failed);
        if (failed) std::rethrow_exception(failed);
        return count;
    }

    /// Applies `facts` and signals each real change; returns which were applied.
    template <class SourceOf>
    std::vector<bool> apply(const std::vector<PreparedFact>& facts, SourceOf&& source_of) const {
        return signal_changes(facts, options_.store->apply(facts), source_of);
    }

    /// A real change a fact made: its index among the facts, and the recipient's state
    /// before and after it.
    struct Change {
        std::size_t fact;
        RecipientState before;
        RecipientState after;
    };
    /// What a store's answer for some facts says: which were applied, and the changes they made
    /// (none worked out when no handler listens).
    struct FoldedPart {
        std::vector<bool> applied;
        std::vector<Change> changes;
    };

    /// Signals each real change `result` (a store's answer for `facts`) holds; returns which
    /// facts were applied.
    template <class SourceOf>
    std::vector<bool> signal_changes(detail::FactSpan facts, AppliedFacts result,
                                     SourceOf&& source_of) const {
        FoldedPart folded = fold_changes(facts, std::move(result));
        emit_changes(facts, folded.changes, source_of);
        return std::move(folded.applied);
    }

    /// Sends sendgrid_status_changed for each of `changes` (of `facts`).
    template <class SourceOf>
    void emit_changes(detail::FactSpan facts, const std::vector<Change>& changes,
                      SourceOf&& source_of) const {
        for (const Change& change : changes) {
            const PreparedFact& fact = facts[change.fact];
            for (const auto& error : sendgrid_status_changed.send_robust(
                     fact.key, fact.target, change.before, change.after, source_of(change.fact))) {
                detail::report_handler_error(options_.on_handler_error, fact.key, error,
                                             "sendgrid_status_changed handler");
            }
        }
    }

    /// Works out the real changes `result` (a store's answer for `facts`) holds: each target's
    /// status folded from what it held, then from each fact applied now. Calls no user code.
    /// @throws std::logic_error when the answer does not fit the facts.
    FoldedPart fold_changes(detail::FactSpan facts, AppliedFacts result) const {
        std::optional<detail::TargetGroups> told;
        if (!result.target_of.empty()) {
            told = detail::told_target_groups(facts, std::move(result.target_of));
        }
        const detail::TargetGroups groups = told ? std::move(*told) : detail::target_groups(facts);
        if (result.applied.size() != facts.size() || result.before.size() != groups.first.size()) {
            throw std::logic_error("sendgrid_backend: the status store answered for " +
                                   std::to_string(result.applied.size()) + " facts and " +
                                   std::to_string(result.before.size()) + " targets, not " +
                                   std::to_string(facts.size()) + " and " +
                                   std::to_string(groups.first.size()) +
                                   " (it breaks StatusStore's contract)");
        }
        FoldedPart folded;
        folded.applied = std::move(result.applied);
        if (!sendgrid_status_changed.has_listeners()) return folded;
        std::vector<std::optional<StatusFold>> folds(groups.first.size());
        for (std::size_t i = 0; i < facts.size(); ++i) {
            if (!folded.applied[i]) continue;
            const std::size_t group = groups.of_fact[i];
            std::optional<StatusFold>& fold = folds[group];
            if (!fold) {
                fold.emplace(facts[i].target);
                for (const std::string& body : result.before[group]) fold->add(body);
            }
            RecipientState before = fold->status().summary();
            fold->add(facts[i].body);
            RecipientState after = fold->status().summary();
            if (before == after) continue;
            folded.changes.push_back({i, std::move(before), std::move(after)});
        }
        return folded;
    }

    StatusTrackerOptions options_;
};

SENDGRID_BACKEND_NAMESPACE_END
