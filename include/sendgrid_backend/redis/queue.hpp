#pragma once

/// @file
/// A durable mail queue on Redis Streams: any process on any host `enqueue`s a message (the whole
/// EmailMessage, attachments included, as one stream entry); workers in a consumer group send
/// them through a `SendgridBackend` and record each one's status, which any process can read by
/// the message's key. Link `sendgrid_backend::redis` (hiredis).
///
/// At most once on the wire, across processes. A worker records "sending" (durably, and only
/// if the message was still "queued") before it POSTs; a worker that dies leaves its entries
/// pending, and another claims them after `visibility_timeout` (XAUTOCLAIM): those still
/// "queued" it sends, those "sending" it reports `unknown` (SendGrid may have accepted them)
/// without sending them again, unless `WorkerOptions::resend_unknown` says otherwise. Nothing
/// acknowledged to a producer is lost, and nothing is queued twice: its XADD and status go in
/// together in one script that first checks the key is new, so a producer whose connection
/// broke mid-enqueue just runs it again; the stream is never trimmed (`max_length` refuses new
/// entries instead).
///
/// @code
/// auto redis = std::make_shared<sendgrid_backend::RedisClient>(
///     sendgrid_backend::RedisOptions::from_url("redis://127.0.0.1:6379"));
/// sendgrid_backend::RedisMailQueue queue(redis);
/// const std::string key = queue.enqueue(message);       // on the web server
/// // a worker process: RedisMailWorker(backend_shared_ptr, redis).run(stop_flag);
/// auto status = queue.status(key);                      // anywhere, any time
/// @endcode

#include <unistd.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/settings.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_json.hpp"
#include "sendgrid_backend/redis/client.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Where the queue lives in Redis. Producers and workers must agree on it.
struct RedisQueueOptions {
    std::string stream = "sendgrid_backend:mail";
    std::string group = "sendgrid_backend:workers";
    std::string status_prefix = "sendgrid_backend:mail:status:";
    /// A message's status is kept this long after its last change: 1 second to
    /// `max_status_ttl` (a year).
    std::chrono::seconds status_ttl = std::chrono::hours(24 * 7);
    /// 0: unbounded. Otherwise enqueue refuses (QueueFull) while the stream holds this many
    /// entries; the stream is never trimmed, which could drop entries not yet sent.
    std::size_t max_length = 0;

    static constexpr std::chrono::seconds max_status_ttl{366 * 24 * 3600};

    /// The hash that counts, per state, the messages that ever entered it (the scripts add to
    /// it as they move a status; `RedisQueueMetrics` reads it): `<stream>:state_counts`. It
    /// never expires, unlike the statuses, so the counts only grow.
    std::string state_counts_key() const { return stream + ":state_counts"; }

    /// @throws ImproperlyConfigured naming the option that is out of range.
    void validate() const {
        // Redis deletes a key at once for an EXPIRE of 0 or less: the status would be lost.
        detail::require_within("RedisQueueOptions::status_ttl", status_ttl, std::chrono::seconds(1),
                               max_status_ttl);
        // Otherwise a message queued under the right key would overwrite the counts.
        if (state_counts_key().rfind(status_prefix, 0) == 0) {
            detail::refuse_setting("RedisQueueOptions::status_prefix",
                                   detail::quote_for_error(status_prefix) +
                                       " starts the queue's counter key " +
                                       detail::quote_for_error(state_counts_key()) +
                                       " (the stream's name + \":state_counts\"), which a "
                                       "message's status could then overwrite; give the "
                                       "statuses a prefix of their own");
        }
    }
};

/// A queued message's life: queued → sending → accepted | failed | unknown.
enum class QueuedState { queued, sending, accepted, failed, unknown };

constexpr const char* to_string(QueuedState state) noexcept {
    switch (state) {
        case QueuedState::queued:
            return "queued";
        case QueuedState::sending:
            return "sending";
        case QueuedState::accepted:
            return "accepted";
        case QueuedState::failed:
            return "failed";
        case QueuedState::unknown:
            return "unknown";
    }
    return "unknown";
}

/// What a producer can read back about a message it queued.
struct QueuedStatus {
    QueuedState state = QueuedState::queued;
    std::string message_id;  ///< SendGrid's X-Message-Id, once accepted
    int http_status = 0;
    std::string reason;  ///< why it failed, or why its outcome is unknown
    std::string worker;  ///< the consumer that sent it
};

namespace detail {

/// Every state, in the order of their life (and of `sendgrid_queue_messages_total`).
inline constexpr std::array<QueuedState, 5> queued_states{
    QueuedState::queued, QueuedState::sending, QueuedState::accepted, QueuedState::failed,
    QueuedState::unknown};

inline std::optional<QueuedState> queued_state_from(const std::string& text) {
    for (QueuedState state : queued_states) {
        if (text == to_string(state)) return state;
    }
    return std::nullopt;
}

/// The custom_arg a worker puts each message's queue key in, unless told otherwise.
inline constexpr const char* default_queue_key_arg = "sendgrid_backend_queue_key";

inline std::string unix_now_text() {
    return std::to_string(static_cast<long long>(std::time(nullptr)));
}

/// Runs `command` until Redis has answered it, reconnecting as the client does; for commands
/// that may run twice without harm (HSET of the same values, XACK, XDEL, HGETALL).
template <class Command>
auto retry_idempotent(Command&& command, int tries = 20) {
    for (int attempt = 1;; ++attempt) {
        try {
            return command();
        } catch (const RedisConnectionLost&) {
            if (attempt >= tries) throw;
        }
    }
}

/// The status transition every worker makes, as one atomic step. KEYS[1]: the status hash,
/// KEYS[2]: the state counts (RedisQueueOptions::state_counts_key). ARGV: the state it must be
/// in (a missing hash counts as "queued"), the worker that must own it ('' for any), the TTL,
/// the new state, the worker to record ('' for none), then more field/value pairs. Returns 1
/// when it moved, or had moved already to the same state for the same worker (a call retried
/// after its answer was lost, which counts nothing again); 0 when the message was elsewhere.
inline constexpr const char* transition_script = R"lua(
local state = redis.call('HGET', KEYS[1], 'state') or 'queued'
local worker = redis.call('HGET', KEYS[1], 'worker') or ''
if state == ARGV[4] and ARGV[5] ~= '' and worker == ARGV[5] then return 1 end
if state ~= ARGV[1] then return 0 end
if ARGV[2] ~= '' and worker ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'state', ARGV[4])
if ARGV[5] ~= '' then redis.call('HSET', KEYS[1], 'worker', ARGV[5]) end
if #ARGV > 5 then redis.call('HSET', KEYS[1], unpack(ARGV, 6)) end
redis.call('EXPIRE', KEYS[1], ARGV[3])
redis.call('HINCRBY', KEYS[2], ARGV[4], 1)
return 1
)lua";

/// Enqueue as one atomic step. KEYS[1]: the stream, KEYS[2]: the status hash, KEYS[3]: the
/// state counts. ARGV: the key, the serialized message, the time, the status TTL, the maximum
/// length (0: none). Returns 1 when it queued the message, 0 when the key has a status already
/// (queued before: by this call, retried after its answer was lost, or by another one), -1 when
/// the stream is full.
inline constexpr const char* enqueue_script = R"lua(
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
if tonumber(ARGV[5]) > 0 and redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
redis.call('XADD', KEYS[1], '*', 'key', ARGV[1], 'message', ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'queued', 'queued_at', ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[4])
redis.call('HINCRBY', KEYS[3], 'queued', 1)
return 1
)lua";

/// A Lua script called by its SHA1 (EVALSHA), so that its text crosses the network once, not
/// with every call. Loaded on first use, and again when Redis answers NOSCRIPT (a restarted
/// Redis starts with an empty script cache); NOSCRIPT means nothing ran.
class StoredScript {
  public:
    explicit StoredScript(const char* text) : text_(text) {}

    /// Runs the script once per call (each: numkeys, keys, arguments) in one round trip. Calls
    /// must be safe to run twice: after a NOSCRIPT the whole round is sent again.
    std::vector<RedisValue> run(RedisClient& redis,
                                const std::vector<std::vector<std::string>>& calls) {
        for (bool reload = false;; reload = true) {
            const std::string sha = load(redis, reload);
            std::vector<std::vector<std::string>> commands;
            commands.reserve(calls.size());
            for (const auto& call : calls) {
                std::vector<std::string> command{"EVALSHA", sha};
                command.insert(command.end(), call.begin(), call.end());
                commands.push_back(std::move(command));
            }
            std::vector<RedisValue> answers = redis.pipeline(commands);
            bool forgotten = false;
            for (const RedisValue& answer : answers) {
                forgotten =
                    forgotten || (answer.is_error() && answer.text.rfind("NOSCRIPT", 0) == 0);
            }
            if (!forgotten || reload) return answers;
        }
    }

  private:
    std::string load(RedisClient& redis, bool again) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (sha_.empty() || again) {
            const RedisValue answer = redis.command({"SCRIPT", "LOAD", text_});
            if (answer.is_error())
                throw RedisError("Redis refused the queue's script: " + answer.text);
            sha_ = answer.text;
        }
        return sha_;
    }

    const char* text_;
    std::mutex mutex_;
    std::string sha_;
};

inline StoredScript& stored_enqueue_script() {
    static StoredScript script(enqueue_script);
    return script;
}

inline StoredScript& stored_transition_script() {
    static StoredScript script(transition_script);
    return script;
}

}  // namespace detail

/// The producer's side, and the status reader. Thread-safe as its RedisClient.
class RedisMailQueue {
  public:
    /// @throws ImproperlyConfigured when `redis` is null or an option is out of range.
    explicit RedisMailQueue(std::shared_ptr<RedisClient> redis, RedisQueueOptions options = {})
        : redis_(std::move(redis)), options_(std::move(options)) {
        if (!redis_) throw ImproperlyConfigured("redis", "is null; pass a RedisClient");
        options_.validate();
    }

    /// Queues `message` durably and returns its key (`key`, or a fresh random one). Once this
    /// returns, the message is in Redis. A key that has a status already (within `status_ttl`)
    /// is not queued again: a request retried with the same key (say "order-42-confirmation")
    /// sends one mail. When the connection breaks on the way, the step is simply run again:
    /// it is atomic, and it queues nothing twice.
    /// @throws InvalidMessage naming the field when no worker could send the message (what
    ///         `send_messages` refuses, checked before anything is stored; repeated recipients
    ///         pass, since a worker's backend may drop them) or it cannot be stored; QueueFull
    ///         when `max_length` entries are waiting; RedisError when Redis stays out of reach.
    std::string enqueue(const EmailMessage& message, std::string key = "") {
        return enqueue_once(message, std::move(key)).first;
    }

    /// As enqueue(), and also says whether this call queued it (false: the key was queued
    /// before, and nothing was added).
    std::pair<std::string, bool> enqueue_once(const EmailMessage& message, std::string key = "") {
        if (key.empty()) key = random_key();
        check_sendable(message, key);
        const std::string entry = serialize_message(message);
        const std::vector<std::vector<std::string>> call{
            {"3", options_.stream, options_.status_prefix + key, options_.state_counts_key(), key,
             entry, detail::unix_now_text(), std::to_string(options_.status_ttl.count()),
             std::to_string(options_.max_length)}};
        const RedisValue answer = detail::retry_idempotent(
            [&] { return detail::stored_enqueue_script().run(*redis_, call).at(0); });
        if (answer.is_error()) throw RedisError("Redis did not queue the message: " + answer.text);
        if (answer.integer < 0) {
            throw QueueFull(std::to_string(options_.max_length) +
                            " messages are queued already (RedisQueueOptions::max_length)");
        }
        return {key, answer.integer == 1};
    }

    /// The status of the message queued under `key`; nullopt when there is none (never queued,
    /// or expired after `status_ttl`).
    std::optional<QueuedStatus> status(const std::string& key) const {
        const RedisValue fields = detail::retry_idempotent([&] {
            return redis_->command({"HGETALL", options_.status_prefix + key});
        });
        if (fields.elements.empty()) return std::nullopt;
        QueuedStatus status;
        for (std::size_t i = 0; i + 1 < fields.elements.size(); i += 2) {
            const std::string& name = fields.elements[i].text;
            const std::string& value = fields.elements[i + 1].text;
            if (name == "state") {
                status.state = detail::queued_state_from(value).value_or(QueuedState::unknown);
            } else if (name == "message_id") {
                status.message_id = value;
            } else if (name == "http_status") {
                status.http_status = static_cast<int>(detail::parse_decimal(value, 3).value_or(0));
            } else if (name == "reason") {
                status.reason = value;
            } else if (name == "worker") {
                status.worker = value;
            }
        }
        return status;
    }

    const RedisQueueOptions& options() const noexcept { return options_; }

  private:
    /// Refuses what every worker's backend would refuse, before it is durable: once queued, a
    /// message that cannot be sent only fails later, where its producer no longer hears of it.
    /// Checked as a worker sends it: with its key in the custom_arg a worker adds (under the
    /// default name; another name differs by a few bytes), which counts toward SendGrid's limits.
    static void check_sendable(const EmailMessage& message, const std::string& key) {
        EmailMessage as_sent = message;  // a copy: the producer's message stays as it gave it
        as_sent.custom_args[detail::default_queue_key_arg] = key;
        PayloadOptions lenient;
        lenient.deduplicate_recipients = true;  // a worker's backend may be set to drop repeats
        const std::size_t bytes = serialize_payload(as_sent, lenient).size();
        if (bytes > limits::max_payload_bytes) {
            throw InvalidMessage("payload", "the request would be " + std::to_string(bytes) +
                                                " bytes; SendGrid accepts at most 30 MB");
        }
    }

    static std::string random_key() {
        thread_local std::mt19937_64 random{std::random_device{}()};
        static constexpr char hex[] = "0123456789abcdef";
        std::string key(32, '0');
        for (std::size_t i = 0; i < key.size(); i += 16) {
            std::uint64_t bits = random();
            for (std::size_t k = 0; k < 16; ++k, bits >>= 4) key[i + k] = hex[bits & 15];
        }
        return key;
    }

    std::shared_ptr<RedisClient> redis_;
    RedisQueueOptions options_;
};

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
        const auto longest = longest_send(backend_->settings());
        if (options_.visibility_timeout.count() == 0) {
            options_.visibility_timeout = longest + std::chrono::minutes(1);
        }
        if (options_.visibility_timeout <= longest) {
            throw ImproperlyConfigured(
                "WorkerOptions::visibility_timeout",
                "is " + std::to_string(options_.visibility_timeout.count()) +
                    " ms; a send may take up to " + std::to_string(longest.count()) +
                    " ms with these settings, and a slow worker's messages would be claimed "
                    "while it still sends them");
        }
        create_group();
    }

    /// One round: claims entries a dead worker left behind, reads new ones (waiting up to
    /// `block`), sends them and records their statuses. Returns how many entries it finished.
    std::size_t run_once() {
        std::vector<Entry> entries = claim();
        if (entries.empty()) entries = read_new();
        if (entries.empty()) return 0;
        handle(entries);
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

    const std::string& consumer() const noexcept { return options_.consumer; }
    std::chrono::milliseconds visibility_timeout() const noexcept {
        return options_.visibility_timeout;
    }

    /// How long a send can take with `settings` (validated: their bounds keep this product far
    /// from overflow): every try at the full timeout, and the longest waits between them.
    static std::chrono::milliseconds longest_send(const Settings& settings) {
        const auto tries = std::max(1, settings.retry.max_attempts);
        const auto wait = std::max(settings.retry.max_backoff, settings.retry.max_retry_after);
        return settings.timeout * tries + wait * (tries - 1);
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

    std::vector<Entry> read_new() {
        const RedisValue read =
            group_command({"XREADGROUP", "GROUP", queue_.group, options_.consumer, "COUNT",
                           std::to_string(options_.batch), "BLOCK",
                           std::to_string(options_.block.count()), "STREAMS", queue_.stream, ">"});
        if (read.is_error()) throw RedisError("XREADGROUP failed: " + read.text);
        if (read.is_nil() || read.elements.empty()) return {};
        return entries_of(read.elements[0].elements.at(1));
    }

    std::string status_key(const Entry& entry) const { return queue_.status_prefix + entry.key; }

    /// A status change: from `from` (owned by `owner`, or anyone when empty) to `to`, recorded
    /// as this worker's, with more `fields`.
    struct Move {
        const Entry* entry;
        std::string from;
        std::string owner;
        std::string_view to;  ///< one of the state names, which are literals
        std::vector<std::string> fields;
    };

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
                                             move.from,
                                             move.owner,
                                             std::to_string(queue_.status_ttl.count()),
                                             std::string(move.to),
                                             options_.consumer};
            for (auto& field : move.fields) command.push_back(std::move(field));
            commands.push_back(std::move(command));
        }
        const auto answers = detail::retry_idempotent(
            [&] { return detail::stored_transition_script().run(*redis_, commands); });
        for (const RedisValue& answer : answers) {
            if (answer.is_error()) throw RedisError("a status transition failed: " + answer.text);
            moved.push_back(answer.integer == 1);
        }
        return moved;
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

    /// A round in four round trips whatever its size: every entry's state; the moves to
    /// "sending" (and to "failed"/"unknown" for what cannot be sent); the outcomes; XACK.
    void handle(std::vector<Entry>& entries) {
        std::vector<std::vector<std::string>> reads;
        for (const Entry& entry : entries) reads.push_back({"HGET", status_key(entry), "state"});
        const auto states = detail::retry_idempotent([&] { return redis_->pipeline(reads); });

        std::vector<const Entry*> done;
        std::vector<Move> moves;
        std::vector<EmailMessage> messages;  // for each move: the message, if it decoded
        for (std::size_t i = 0; i < entries.size(); ++i) {
            const Entry& entry = entries[i];
            if (states[i].is_error())
                throw RedisError("reading a status failed: " + states[i].text);
            const std::string state = states[i].is_nil() ? "queued" : states[i].text;
            if (state == "accepted" || state == "failed" || state == "unknown") {
                done.push_back(&entry);  // its worker stopped between the status and XACK
                continue;
            }
            EmailMessage message;
            try {
                message = deserialize_message(entry.message);
            } catch (const InvalidMessage& invalid) {
                moves.push_back({&entry,
                                 state,
                                 "",
                                 "failed",
                                 {"reason", "the queued entry is not a message: " +
                                                std::string(invalid.what())}});
                messages.emplace_back();
                continue;
            }
            if (state == "sending" && !options_.resend_unknown) {
                // A worker died after it marked the message, and maybe after it POSTed it.
                moves.push_back(
                    {&entry,
                     "sending",
                     "",
                     "unknown",
                     {"reason", unknown_reason(), "finished_at", detail::unix_now_text()}});
            } else {
                // Marked "sending" before anything goes out: from then on no other worker sends it.
                moves.push_back(
                    {&entry, state, "", "sending", {"started_at", detail::unix_now_text()}});
            }
            messages.push_back(std::move(message));
        }
        const std::vector<bool> moved = apply(moves);

        std::vector<EmailMessage> to_send;
        std::vector<const Entry*> sending;
        for (std::size_t i = 0; i < moves.size(); ++i) {
            const Entry* entry = moves[i].entry;
            if (!moved[i] || moves[i].to != "sending") {
                // Not ours to send (someone else moved it meanwhile), or finished here.
                if (moved[i] && moves[i].to == "unknown") {
                    messages[i].outcome.status = SendStatus::unknown;
                    messages[i].outcome.failure_reason = unknown_reason();
                    backend_->emit_outcome(messages[i]);
                }
                done.push_back(entry);
                continue;
            }
            if (!options_.key_custom_arg.empty()) {
                messages[i].custom_args[options_.key_custom_arg] = entry->key;
            }
            to_send.push_back(std::move(messages[i]));
            sending.push_back(entry);
        }
        if (!to_send.empty()) {
            try {
                backend_->send_messages(to_send);
            } catch (...) {
                // Every message has its outcome and its emission (the backend sees to that).
            }
            std::vector<Move> outcomes;
            for (std::size_t i = 0; i < to_send.size(); ++i) {
                const SendOutcome& outcome = to_send[i].outcome;
                const char* state = outcome.accepted()          ? "accepted"
                                    : outcome.maybe_delivered() ? "unknown"
                                                                : "failed";
                outcomes.push_back(
                    {sending[i],
                     "sending",
                     options_.consumer,
                     state,
                     {"message_id", outcome.message_id, "http_status",
                      std::to_string(outcome.http_status), "reason", outcome.failure_reason,
                      "finished_at", detail::unix_now_text()}});
                done.push_back(sending[i]);
            }
            apply(outcomes);
        }
        finish_entries(done);
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
};

SENDGRID_BACKEND_NAMESPACE_END
