#pragma once

/// @file
/// The durable queue's Lua scripts (part of its data format: producers and workers of every
/// version run them on the same keys) and `StoredScript`, which runs one by its SHA1.

#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/redis/client.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

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
/// with every call. Loaded on first use; when Redis answers NOSCRIPT (a restarted Redis, or
/// SCRIPT FLUSH, empties its script cache; NOSCRIPT means nothing ran) the round is sent again
/// with EVAL and the text, which cannot be refused so and caches the script under the same SHA1
/// for the next round (a second flush between a reload and its EVALSHA cannot fail a call).
class StoredScript {
  public:
    explicit StoredScript(const char* text) : text_(text) {}

    /// Runs the script once per call (each: numkeys, keys, arguments) in one round trip. Calls
    /// must be safe to run twice: after a NOSCRIPT the whole round is sent again.
    std::vector<RedisValue> run(RedisClient& redis,
                                const std::vector<std::vector<std::string>>& calls) {
        std::vector<RedisValue> answers = run_as(redis, calls, {"EVALSHA", sha(redis)});
        for (const RedisValue& answer : answers) {
            if (answer.is_error() && answer.text.rfind("NOSCRIPT", 0) == 0) {
                return run_as(redis, calls, {"EVAL", text_});
            }
        }
        return answers;
    }

  private:
    static std::vector<RedisValue> run_as(RedisClient& redis,
                                          const std::vector<std::vector<std::string>>& calls,
                                          const std::vector<std::string>& head) {
        std::vector<std::vector<std::string>> commands;
        commands.reserve(calls.size());
        for (const auto& call : calls) {
            std::vector<std::string> command = head;
            command.insert(command.end(), call.begin(), call.end());
            commands.push_back(std::move(command));
        }
        return redis.pipeline(commands);
    }

    std::string sha(RedisClient& redis) {
        std::lock_guard<std::mutex> lock(mutex_);
        if (sha_.empty()) {
            const RedisValue answer = redis.command({"SCRIPT", "LOAD", text_});
            if (answer.is_error())
                throw RedisError("Redis refused a script of sendgrid_backend: " + answer.text);
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

SENDGRID_BACKEND_NAMESPACE_END
