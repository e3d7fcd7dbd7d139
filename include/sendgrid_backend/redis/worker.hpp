#pragma once

/// @file
/// `RedisMailWorker`: takes messages off the durable queue (redis/queue.hpp, whose file comment
/// has the protocol) as one consumer of its group, sends them through a `SendgridBackend` and
/// records each one's status. Link `sendgrid_backend::redis` (hiredis). Each round starts by
/// moving the scheduled messages that are due to the stream (RedisScheduleMover, redis/
/// schedule.hpp, whose file comment says how late they can go out).

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <list>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_json.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/dead_letter_scripts.hpp"
#include "sendgrid_backend/redis/queue.hpp"
#include "sendgrid_backend/redis/schedule.hpp"
#include "sendgrid_backend/redis/scripts.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// How a worker takes messages off the queue.
struct WorkerOptions {
    /// This worker's name in the consumer group; empty: "<hostname>-<pid>".
    std::string consumer;
    /// Entries taken per round, at most `max_batch`; 0: the backend's max_in_flight.
    std::size_t batch = 0;
    /// An entry another worker took and has not finished this long after is claimed. Must be
    /// longer than any send can take (the backend's timeout times its tries, plus waits); the
    /// constructor refuses a shorter one, since a slow worker's entries would be claimed.
    /// At most `max_visibility_timeout`. 0: the longest send with the backend's settings plus a
    /// minute.
    std::chrono::milliseconds visibility_timeout{0};
    /// How long one read waits for new entries: 1 ms to `max_block` (Redis reads 0 as forever,
    /// and `run` looks at its stop flag between reads).
    std::chrono::milliseconds block{1'000};
    /// Send a claimed message again although a dead worker may have sent it already (its state
    /// was "sending"). Off: reported `unknown`. On: a duplicate is possible.
    bool resend_unknown = false;
    /// Each sent message carries its queue key in this custom_arg (so SendGrid's Event Webhook
    /// events carry it back); empty: none is added.
    std::string key_custom_arg = detail::default_queue_key_arg;
    /// Move the scheduled messages that are due to the stream at the start of each round (and
    /// wait for new entries no longer than until the next is due). Off: another worker or a
    /// RedisScheduleMover of their own must, or scheduled messages wait for ever.
    bool move_scheduled = true;

    static constexpr std::size_t max_batch = 10'000;
    /// Longer than the longest send the backend's settings allow (100 tries of a day each).
    static constexpr std::chrono::milliseconds max_visibility_timeout =
        std::chrono::hours(24 * 366);
    static constexpr std::chrono::milliseconds max_block = std::chrono::hours(1);
};

/// A worker: reads the queue as one consumer of the group and sends through `backend`, which
/// emits `sendgrid_email_sent` on the worker's thread. Use one per thread or process. The worker
/// shares ownership of its backend, which lives as long as the worker.
class RedisMailWorker {
  public:
    /// @throws ImproperlyConfigured when `backend` or `redis` is null, an option is out of
    ///         range, or the visibility timeout is shorter than a send can take.
    RedisMailWorker(std::shared_ptr<const SendgridBackend> backend,
                    std::shared_ptr<RedisClient> redis, RedisQueueOptions queue = {},
                    WorkerOptions options = {})
        : backend_(std::move(backend)),
          redis_(std::move(redis)),
          queue_(std::move(queue)),
          options_(std::move(options)) {
        if (!backend_) throw ImproperlyConfigured("backend", "is null; pass a SendgridBackend");
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        queue_.validate();
        const Settings& settings = backend_->settings();
        if (queue_.statuses && settings.tracking_keys &&
            queue_.statuses->tracking_arg() != settings.tracking_arg) {
            // Else sends would carry one argument and the tracker look for another.
            throw ImproperlyConfigured(
                "RedisQueueOptions::statuses",
                "tracks the custom_arg " +
                    detail::quote_for_error(queue_.statuses->tracking_arg()) +
                    ", the backend's Settings::tracking_arg is " +
                    detail::quote_for_error(settings.tracking_arg) + "; make them the same");
        }
        detail::require_at_most("WorkerOptions::batch", options_.batch, WorkerOptions::max_batch);
        detail::require_within("WorkerOptions::block", options_.block, std::chrono::milliseconds(1),
                               WorkerOptions::max_block, " (Redis reads 0 as forever)");
        // A read waits up to `block` for Redis' answer, so the connection's own timeout must be
        // longer, or every idle read is a lost connection (and an entry Redis hands over in the
        // moment after is left pending until it is claimed).
        const auto redis_timeout = redis_->options().timeout;
        if (options_.block + std::chrono::seconds(1) > redis_timeout) {
            detail::refuse_setting(
                "WorkerOptions::block",
                "is " + std::to_string(options_.block.count()) +
                    " ms; it must be at least 1 s shorter than RedisOptions::timeout (" +
                    std::to_string(redis_timeout.count()) +
                    " ms), which a read waiting for new entries must not reach");
        }
        detail::require_within("WorkerOptions::visibility_timeout", options_.visibility_timeout,
                               std::chrono::milliseconds(0), WorkerOptions::max_visibility_timeout,
                               " (0: the longest send plus a minute)");
        if (options_.consumer.empty()) options_.consumer = default_consumer();
        if (options_.batch == 0) options_.batch = backend_->settings().max_in_flight;
        const auto longest =
            longest_round(backend_->settings(), options_.batch, backend_->rate_limit() != nullptr);
        if (options_.visibility_timeout.count() == 0) {
            options_.visibility_timeout = longest + std::chrono::minutes(1);
        }
        if (options_.visibility_timeout <= longest) {
            throw ImproperlyConfigured(
                "WorkerOptions::visibility_timeout",
                "is " + std::to_string(options_.visibility_timeout.count()) + " ms; a round of " +
                    std::to_string(options_.batch) + " may take up to " +
                    std::to_string(longest.count()) +
                    " ms with these settings, and a slow worker's messages would be claimed "
                    "while it still sends them");
        }
        // A "sending" status that expired before the entry is claimed would read as never sent.
        if (queue_.status_ttl <= options_.visibility_timeout) {
            throw ImproperlyConfigured(
                "RedisQueueOptions::status_ttl",
                "is " + std::to_string(queue_.status_ttl.count()) +
                    " s; it must be longer than the worker's visibility timeout (" +
                    std::to_string(options_.visibility_timeout.count()) +
                    " ms), or a message's status could expire before a dead worker's entry is "
                    "claimed");
        }
        create_group();
        if (options_.move_scheduled) mover_.emplace(redis_, queue_);
    }

    /// One round: moves due scheduled messages to the stream, claims entries a dead worker left
    /// behind, reads new ones (waiting up to `block`, or until the next scheduled message is
    /// due), sends them and records their statuses. Returns how many entries it finished.
    /// @throws RedisError when Redis stays out of reach; outcomes it could not record then are
    ///         recorded first in the next round, before this worker takes any entry.
    std::size_t run_once() {
        record_unrecorded();
        const std::chrono::milliseconds block = move_scheduled();
        std::vector<Entry> entries = claim();
        const bool claimed = !entries.empty();
        if (!claimed) entries = read_new(block);
        if (entries.empty()) return 0;
        handle(entries, claimed);
        return entries.size();
    }

    /// Runs rounds until `stop` is set (check between rounds: the round in progress finishes).
    void run(const std::atomic<bool>& stop) {
        while (!stop.load()) {
            try {
                run_once();
            } catch (const RedisError&) {
                // Redis is out of reach: the client reconnects with backoff on the next round.
            }
        }
    }

    /// This worker's name in the consumer group (WorkerOptions::consumer, or the default).
    const std::string& consumer() const noexcept { return options_.consumer; }
    /// The visibility timeout in effect (WorkerOptions::visibility_timeout, or the default).
    std::chrono::milliseconds visibility_timeout() const noexcept {
        return options_.visibility_timeout;
    }

    /// How long a round of `batch` messages can take: a send's longest for each wave of
    /// `max_in_flight` requests (`batch` is bounded by max_batch, so this stays far from
    /// overflow).
    static std::chrono::milliseconds longest_round(const Settings& settings, std::size_t batch,
                                                   bool rate_limited = false) {
        const std::size_t in_flight = std::max<std::size_t>(1, settings.max_in_flight);
        const auto waves =
            static_cast<long long>((std::max<std::size_t>(1, batch) + in_flight - 1) / in_flight);
        return longest_send(settings, rate_limited) * waves;
    }

    /// How long a send can take with `settings` (validated: their bounds keep this product far
    /// from overflow): every try at the full timeout, and the longest waits between them; with
    /// a rate limit, each try may first wait as long again for its permit (rate_limit.hpp).
    static std::chrono::milliseconds longest_send(const Settings& settings,
                                                  bool rate_limited = false) {
        const auto tries = std::max(1, settings.retry.max_tries);
        const auto wait = std::max(settings.retry.max_backoff, settings.retry.max_retry_after);
        return settings.timeout * tries + wait * (tries - 1) +
               (rate_limited ? wait * tries : std::chrono::milliseconds(0));
    }

  private:
    struct Entry {
        std::string id;  ///< the stream entry id
        std::string key;
        std::string message;
    };

    static std::string default_consumer() {
        char host[256] = {};
        gethostname(host, sizeof host - 1);
        return std::string(host) + "-" + std::to_string(static_cast<long>(getpid()));
    }

    static std::vector<Entry> entries_of(const RedisValue& list) {
        std::vector<Entry> entries;
        for (const RedisValue& item : list.elements) {
            if (item.elements.size() != 2) continue;  // deleted meanwhile: no fields
            Entry entry;
            entry.id = item.elements[0].text;
            const auto& fields = item.elements[1].elements;
            for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
                if (fields[i].text == "key") entry.key = fields[i + 1].text;
                if (fields[i].text == "message") entry.message = fields[i + 1].text;
            }
            entries.push_back(std::move(entry));
        }
        return entries;
    }

    /// Creates the group, and the stream if need be; returns false when it exists already (made
    /// by another worker). It starts at 0 so that it delivers every entry the stream holds: when
    /// Redis lost the group with its data, those are the entries queued since, none delivered.
    bool create_group() {
        const RedisValue created =
            redis_->command({"XGROUP", "CREATE", queue_.stream, queue_.group, "0", "MKSTREAM"});
        if (!created.is_error()) return true;
        if (created.text.rfind("BUSYGROUP", 0) == 0) return false;
        throw RedisError("cannot create the consumer group: " + created.text);
    }

    /// Runs a command on the group, creating the group again when Redis no longer has it
    /// (NOGROUP: it restarted without its data, or was flushed), and then the command once
    /// more. Safe: a command answered NOGROUP did nothing. XACK answers 0, never NOGROUP.
    RedisValue group_command(const std::vector<std::string>& command) {
        const RedisValue answer = redis_->command(command);
        if (!answer.is_error() || answer.text.rfind("NOGROUP", 0) != 0) return answer;
        if (create_group()) {
            // Once per loss, by the worker that made the group again (the others get BUSYGROUP).
            std::fprintf(
                stderr,
                "[sendgrid_backend] consumer group %s of stream %s was missing: Redis lost "
                "its data (restarted without persistence, or flushed), so the messages "
                "queued before and their statuses are gone; created the group again, "
                "the messages queued since will be sent\n",
                queue_.group.c_str(), queue_.stream.c_str());
        }
        return redis_->command(command);
    }

    std::vector<Entry> claim() {
        const RedisValue claimed =
            group_command({"XAUTOCLAIM", queue_.stream, queue_.group, options_.consumer,
                           std::to_string(options_.visibility_timeout.count()), "0-0", "COUNT",
                           std::to_string(options_.batch)});
        if (claimed.is_error()) throw RedisError("XAUTOCLAIM failed: " + claimed.text);
        if (claimed.elements.size() < 2) return {};
        return entries_of(claimed.elements[1]);
    }

    /// Moves the due scheduled messages; returns how long a read may wait for new entries.
    std::chrono::milliseconds move_scheduled() {
        if (!mover_) return options_.block;
        const ScheduledMoves moves = mover_->move_due();
        // Held back by a full stream: waiting for room, not for a due time (else every round
        // would read for 1 ms and try the same moves again).
        if (!moves.next_due_in || moves.held_back > 0) return options_.block;
        // BLOCK 0 would wait for ever: at least 1 ms.
        return std::clamp(*moves.next_due_in, std::chrono::milliseconds(1), options_.block);
    }

    std::vector<Entry> read_new(std::chrono::milliseconds block) {
        const RedisValue read =
            group_command({"XREADGROUP", "GROUP", queue_.group, options_.consumer, "COUNT",
                           std::to_string(options_.batch), "BLOCK", std::to_string(block.count()),
                           "STREAMS", queue_.stream, ">"});
        if (read.is_error()) throw RedisError("XREADGROUP failed: " + read.text);
        if (read.is_nil() || read.elements.empty()) return {};
        return entries_of(read.elements[0].elements.at(1));
    }

    std::string status_key(const Entry& entry) const { return queue_.status_prefix + entry.key; }

    /// A status change: from `from` (owned by `owner`, or by anyone when empty) to `to`,
    /// recorded as this worker's, with more `fields`.
    struct Move {
        const Entry* entry;
        QueuedState from;
        std::string owner;
        QueuedState to;
        std::vector<std::string> fields;
    };

    /// What a round does with its entries before anything is sent.
    struct Plan {
        std::vector<const Entry*> done;      ///< finished: acknowledged as the round ends
        std::vector<Move> moves;             ///< to "sending", or to where a send cannot go
        std::vector<EmailMessage> messages;  ///< for each move: its message, if it decoded
    };

    /// The messages this worker moved to "sending": its own to send.
    struct Batch {
        std::vector<EmailMessage> messages;
        std::vector<const Entry*> entries;  ///< for each message
    };

    /// A round, in four round trips whatever its size: every entry's state; the moves to
    /// "sending" (and to "failed"/"unknown" for what cannot be sent); the outcomes; XACK.
    void handle(const std::vector<Entry>& entries, bool claimed) {
        Plan plan = plan_moves(entries, read_states(entries), claimed);
        Batch batch = make_moves(plan);
        if (!batch.messages.empty()) {
            send(batch.messages);
            record_outcomes(batch, plan.done);
        }
        finish_entries(plan.done);
    }

    /// Every entry's state, in one round trip; nullopt when its status is gone (expired).
    std::vector<std::optional<QueuedState>> read_states(const std::vector<Entry>& entries) {
        std::vector<std::vector<std::string>> reads;
        for (const Entry& entry : entries) reads.push_back({"HGET", status_key(entry), "state"});
        const auto answers = detail::retry_idempotent([&] { return redis_->pipeline(reads); });
        std::vector<std::optional<QueuedState>> states;
        for (const RedisValue& answer : answers) {
            if (answer.is_error()) throw RedisError("reading a status failed: " + answer.text);
            states.push_back(answer.is_nil() ? std::nullopt
                                             : std::optional(detail::stored_state(answer)));
        }
        return states;
    }

    /// For each entry in `states[i]`: nothing to send (finished already: only acknowledged),
    /// or a move. `claimed`: the entries were another read's (a worker that stopped).
    Plan plan_moves(const std::vector<Entry>& entries,
                    const std::vector<std::optional<QueuedState>>& states, bool claimed) const {
        Plan plan;
        for (std::size_t i = 0; i < entries.size(); ++i) {
            // A missing status reads as "queued" (the scripts read it so too).
            const QueuedState state = states[i].value_or(QueuedState::queued);
            if (is_finished(state)) {
                plan.done.push_back(&entries[i]);  // its worker stopped between the status and XACK
                continue;
            }
            EmailMessage message;
            plan.moves.push_back(
                plan_move(entries[i], state, claimed && !states[i].has_value(), message));
            plan.messages.push_back(std::move(message));
        }
        return plan;
    }

    /// The move for an entry in `state` (not finished), decoding its message into `message`.
    /// `expired`: a claimed entry whose status is gone, so whether it was sent is not known.
    Move plan_move(const Entry& entry, QueuedState state, bool expired,
                   EmailMessage& message) const {
        try {
            message = deserialize_message(entry.message);
        } catch (const InvalidMessage& invalid) {
            return {
                &entry,
                state,
                "",
                QueuedState::failed,
                {"reason", "the queued entry is not a message: " + std::string(invalid.what())}};
        }
        if ((state == QueuedState::sending || expired) && !options_.resend_unknown) {
            // A worker died after it marked the message, and maybe after it POSTed it; or its
            // status expired while its entry waited to be claimed, "sending" maybe.
            return {&entry,
                    state,
                    "",
                    QueuedState::unknown,
                    {"reason", expired ? expired_reason() : unknown_reason(), "finished_at",
                     detail::unix_now_text()}};
        }
        // Marked "sending" before anything goes out: from then on no other worker sends it.
        return {&entry, state, "", QueuedState::sending, {"started_at", detail::unix_now_text()}};
    }

    /// Makes the plan's moves and takes what moved to "sending"; the rest is finished here
    /// (reported when it moved to "unknown") or was moved by someone else meanwhile.
    Batch make_moves(Plan& plan) {
        const std::vector<bool> moved = apply(plan.moves);
        Batch batch;
        for (std::size_t i = 0; i < plan.moves.size(); ++i) {
            const Move& move = plan.moves[i];
            EmailMessage& message = plan.messages[i];
            if (moved[i] && move.to == QueuedState::sending) {
                if (!options_.key_custom_arg.empty()) {
                    message.custom_args[options_.key_custom_arg] = move.entry->key;
                }
                // The queue key is the tracking key, unless the message brought its own.
                const Settings& settings = backend_->settings();
                if (settings.tracking_keys) {
                    message.custom_args.emplace(settings.tracking_arg, move.entry->key);
                }
                record_sending(message, move.entry->key);
                batch.messages.push_back(std::move(message));
                batch.entries.push_back(move.entry);
                continue;
            }
            if (moved[i] && move.to == QueuedState::unknown) {
                message.outcome.tracking_key = tracking_key_of(message, move.entry->key);
                report_unknown(message);
            }
            plan.done.push_back(move.entry);
        }
        return batch;
    }

    void send(std::vector<EmailMessage>& messages) const {
        try {
            backend_->send_messages(messages);
        } catch (...) {
            // Every message has its outcome and its emission (the backend sees to that).
        }
    }

    /// Moves each sent message from "sending" (still this worker's) to its outcome's state.
    void record_outcomes(const Batch& batch, std::vector<const Entry*>& done) {
        std::vector<Move> outcomes;
        for (std::size_t i = 0; i < batch.messages.size(); ++i) {
            const SendOutcome& outcome = batch.messages[i].outcome;
            outcomes.push_back({batch.entries[i],
                                QueuedState::sending,
                                options_.consumer,
                                state_after(outcome),
                                {"message_id", outcome.message_id, "http_status",
                                 std::to_string(outcome.http_status), "reason",
                                 outcome.failure_reason, "finished_at", detail::unix_now_text()}});
            done.push_back(batch.entries[i]);
        }
        try {
            apply(outcomes);
        } catch (const RedisError&) {
            // Sent and emitted, not recorded: kept, and recorded before this worker takes
            // anything more. Else the entries, still "sending", would be claimed (by this worker
            // too) as a dead worker's, reported a second time as unknown.
            for (Move& move : outcomes) keep_unrecorded(std::move(move));
            throw;
        }
    }

    /// Keeps `move` (an outcome Redis did not take) with a copy of its entry.
    void keep_unrecorded(Move move) {
        Unrecorded& kept = unrecorded_.emplace_back(Unrecorded{*move.entry, std::move(move)});
        kept.move.entry = &kept.entry;
    }

    /// Records the outcomes an earlier round could not, and acknowledges their entries.
    /// @throws RedisError when Redis is still out of reach (they stay kept).
    void record_unrecorded() {
        if (unrecorded_.empty()) return;
        std::vector<Move> moves;  // copies: apply() takes their fields
        std::vector<const Entry*> done;
        for (const Unrecorded& kept : unrecorded_) {
            moves.push_back(kept.move);
            done.push_back(&kept.entry);
        }
        apply(moves);  // a move made before (its answer lost) is answered as made
        finish_entries(done);
        unrecorded_.clear();
    }

    /// Makes `moves` in one round trip, each atomically (see the script, which also makes a
    /// retried move harmless). Returns for each whether it moved.
    std::vector<bool> apply(std::vector<Move>& moves) {
        std::vector<bool> moved;
        if (moves.empty()) return moved;
        std::vector<std::vector<std::string>> commands;
        for (Move& move : moves) {
            std::vector<std::string> command{"2",
                                             status_key(*move.entry),
                                             queue_.state_counts_key(),
                                             to_string(move.from),
                                             move.owner,
                                             std::to_string(queue_.status_ttl.count()),
                                             to_string(move.to),
                                             options_.consumer};
            for (auto& field : move.fields) command.push_back(std::move(field));
            if (queue_.dead_letters) command = dead_letter_call(std::move(command), *move.entry);
            commands.push_back(std::move(command));
        }
        detail::StoredScript& script = queue_.dead_letters
                                           ? detail::stored_dead_letter_transition_script()
                                           : detail::stored_transition_script();
        const auto answers =
            detail::retry_idempotent([&] { return script.run(*redis_, commands); });
        for (const RedisValue& answer : answers) {
            if (answer.is_error()) throw RedisError("a status transition failed: " + answer.text);
            moved.push_back(answer.integer == 1);
        }
        return moved;
    }

    /// `transition` as the same move that also keeps the message as a dead letter, should it
    /// move to "failed" or "unknown" (redis/dead_letter_scripts.hpp).
    std::vector<std::string> dead_letter_call(std::vector<std::string> transition,
                                              const Entry& entry) const {
        const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
            std::chrono::system_clock::now().time_since_epoch());
        const auto ttl =
            std::chrono::duration_cast<std::chrono::milliseconds>(queue_.dead_letter_ttl);
        return detail::dead_letter_transition_call(
            std::move(transition), queue_.stream, queue_.dead_letter_key(),
            queue_.dead_letter_index_key(), entry.key, entry.id, now.count(), ttl.count());
    }

    void finish_entries(const std::vector<const Entry*>& done) {
        if (done.empty()) return;
        std::vector<std::string> ack{"XACK", queue_.stream, queue_.group};
        std::vector<std::string> del{"XDEL", queue_.stream};
        for (const Entry* entry : done) {
            ack.push_back(entry->id);
            del.push_back(entry->id);
        }
        detail::retry_idempotent([&] { return redis_->pipeline({ack, del}); });
    }

    /// Whether a message in `state` has its outcome (then its entry only needs XACK). An entry
    /// whose message is "scheduled" or "cancelled" is never sent: only the mover queues one
    /// (status "queued" as it adds the entry), so such an entry is not this message's to send.
    static bool is_finished(QueuedState state) noexcept {
        return state == QueuedState::accepted || state == QueuedState::failed ||
               state == QueuedState::unknown || state == QueuedState::scheduled ||
               state == QueuedState::cancelled;
    }

    static QueuedState state_after(const SendOutcome& outcome) noexcept {
        if (outcome.accepted()) return QueuedState::accepted;
        return outcome.maybe_delivered() ? QueuedState::unknown : QueuedState::failed;
    }

    /// The key a message's status is tracked by: its own tracking_arg, or its queue key.
    std::string tracking_key_of(const EmailMessage& message, const std::string& queue_key) const {
        const Settings& settings = backend_->settings();
        if (!settings.tracking_keys) return "";
        auto found = message.custom_args.find(settings.tracking_arg);
        return found != message.custom_args.end() && !found->second.empty() ? found->second
                                                                            : queue_key;
    }

    /// Records "sending" in the queue's status tracker, if it has one: best effort, as the move
    /// itself is what keeps other workers off the message.
    void record_sending(const EmailMessage& message, const std::string& queue_key) const {
        if (!queue_.statuses) return;
        const std::string key = tracking_key_of(message, queue_key);
        if (key.empty()) return;
        try {
            queue_.statuses->record_queue(key, DeliveryState::sending);
        } catch (...) {
        }
    }

    /// Emits `sendgrid_email_sent` for a message a dead worker may have sent: its one emission.
    void report_unknown(EmailMessage& message) const {
        message.outcome.status = SendStatus::unknown;
        message.outcome.failure_reason = unknown_reason();
        backend_->emit_outcome(message);
    }

    std::string expired_reason() const {
        return "outcome unknown: its status expired (RedisQueueOptions::status_ttl) before its "
               "entry was claimed from a worker that stopped; SendGrid may have accepted it, so "
               "it was not sent again";
    }

    std::string unknown_reason() const {
        return "outcome unknown: the worker sending it stopped (claimed after " +
               std::to_string(options_.visibility_timeout.count()) +
               " ms); SendGrid may have accepted it, so it was not sent again";
    }

    std::shared_ptr<const SendgridBackend> backend_;
    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions queue_;
    WorkerOptions options_;
    std::optional<RedisScheduleMover> mover_;  ///< when options_.move_scheduled
    /// Outcomes sent and emitted whose move Redis did not take (see record_outcomes).
    struct Unrecorded {
        Entry entry;
        Move move;  ///< its entry is `entry`
    };
    std::list<Unrecorded> unrecorded_;  // a list: each move points at its node's entry
};

SENDGRID_BACKEND_NAMESPACE_END
