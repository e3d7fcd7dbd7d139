#pragma once

/// @file
/// The durable queue's Lua scripts (part of its data format: producers and workers of every
/// version run them on the same keys) and `StoredScript`, which runs one by its SHA1.

#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/redis/client.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

/// A Lua function the transition scripts define: move_status(status, counts, from, owner, ttl,
/// to, worker, first) moves the status hash `status` from state `from` (a missing hash counts as
/// "queued"), owned by worker `owner` ('' for any), to `to`, recording `worker` ('' for none)
/// and the field/value pairs ARGV[first...], refreshing its TTL and counting the move in the
/// hash `counts`. Returns 1, true when it moved; 1, false when it had moved already to the same
/// state for the same worker (a call retried after its answer was lost: nothing is counted
/// again); 0 when the message was elsewhere.
inline constexpr const char* move_status_lua = R"lua(
local function move_status(status, counts, from, owner, ttl, to, worker, first)
    local state = redis.call('HGET', status, 'state') or 'queued'
    local current = redis.call('HGET', status, 'worker') or ''
    if state == to and worker ~= '' and current == worker then return 1, false end
    if state ~= from then return 0, false end
    if owner ~= '' and current ~= owner then return 0, false end
    redis.call('HSET', status, 'state', to)
    if worker ~= '' then redis.call('HSET', status, 'worker', worker) end
    if #ARGV >= first then redis.call('HSET', status, unpack(ARGV, first)) end
    redis.call('EXPIRE', status, ttl)
    redis.call('HINCRBY', counts, to, 1)
    return 1, true
end
)lua";

/// The status transition every worker makes, as one atomic step (after move_status_lua).
/// KEYS[1]: the status hash, KEYS[2]: the state counts (RedisQueueOptions::state_counts_key).
/// ARGV: the state it must be in, the worker that must own it, the TTL, the new state, the
/// worker to record, then more field/value pairs (move_status's arguments). Returns 1 when it
/// moved or had moved already, 0 when the message was elsewhere.
inline constexpr const char* transition_lua = R"lua(
return (move_status(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], 6))
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

// The scheduled messages (RedisMailQueue::enqueue with a not_before): each key waits in a sorted
// set scored by its due time in Unix milliseconds, its message in a hash beside it, its status
// "scheduled" with a `not_before` field (ms). Due means score <= Redis' own TIME, so the
// producers' and movers' clocks never decide. A key leaves the set once: moved to the stream
// (status "queued") or cancelled (status "cancelled"), each in one script that first takes it out
// of the set, so that the other, a second mover, or the same call run again finds nothing.

/// Schedule as one atomic step: enqueue_script's, except that a message not yet due waits in the
/// set. KEYS[1]: the stream, KEYS[2]: the status hash, KEYS[3]: the state counts, KEYS[4]: the
/// scheduled set, KEYS[5]: the scheduled messages. ARGV: the key, the serialized message, the
/// time (Unix seconds), the status TTL, the maximum length (0: none), the due time (Unix ms).
/// A due time already past queues the message at once, as enqueue_script does. The status of a
/// waiting message lives the wait (rounded up to a second) plus the status TTL. Returns as
/// enqueue_script (1 queued or scheduled, 0 the key has a status, -1 the stream is full).
inline constexpr const char* schedule_script = R"lua(
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local due = tonumber(ARGV[6])
if due <= now then
  if tonumber(ARGV[5]) > 0 and redis.call('XLEN', KEYS[1]) >= tonumber(ARGV[5]) then return -1 end
  redis.call('XADD', KEYS[1], '*', 'key', ARGV[1], 'message', ARGV[2])
  redis.call('HSET', KEYS[2], 'state', 'queued', 'queued_at', ARGV[3], 'not_before', ARGV[6])
  redis.call('EXPIRE', KEYS[2], ARGV[4])
  redis.call('HINCRBY', KEYS[3], 'queued', 1)
  return 1
end
redis.call('ZADD', KEYS[4], ARGV[6], ARGV[1])
redis.call('HSET', KEYS[5], ARGV[1], ARGV[2])
redis.call('HSET', KEYS[2], 'state', 'scheduled', 'scheduled_at', ARGV[3], 'not_before', ARGV[6])
local ttl = tonumber(ARGV[4]) + math.ceil((due - now) / 1000)
redis.call('EXPIRE', KEYS[2], string.format('%.0f', ttl))
redis.call('HINCRBY', KEYS[3], 'scheduled', 1)
return 1
)lua";

/// Which scheduled keys are due (read only). KEYS[1]: the scheduled set. ARGV[1]: how many at
/// most. Returns {ms until the next key not yet due is (-1: none), {due keys, earliest first}}.
inline constexpr const char* due_script = R"lua(
local time = redis.call('TIME')
local now = tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000)
local now_text = string.format('%.0f', now)
local due = redis.call('ZRANGE', KEYS[1], '-inf', now_text, 'BYSCORE', 'LIMIT', 0, ARGV[1])
local later = redis.call('ZRANGE', KEYS[1], '(' .. now_text, '+inf', 'BYSCORE', 'LIMIT', 0, 1,
                         'WITHSCORES')
local wait = -1
if #later == 2 then wait = tonumber(later[2]) - now end
return {wait, due}
)lua";

/// Moves one due key to the stream, as one atomic step. KEYS[1]: the scheduled set, KEYS[2]: the
/// scheduled messages, KEYS[3]: the stream, KEYS[4]: the status hash, KEYS[5]: the state counts.
/// ARGV: the key, the time (Unix seconds), the status TTL, the maximum length (0: none).
/// Returns 1 when it moved the message (XADD with enqueue_script's fields; status "queued"); 0
/// when the key is not in the set (moved by another mover or by this call before its answer was
/// lost, or cancelled) or not due, or its message is missing (status "failed"), or its status
/// is in a state other than "scheduled" (a later use of the key: it is dropped from the set);
/// -1 when the stream is full (it stays scheduled).
inline constexpr const char* move_due_script = R"lua(
local due = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not due then return 0 end
local time = redis.call('TIME')
if tonumber(due) > tonumber(time[1]) * 1000 + math.floor(tonumber(time[2]) / 1000) then
  return 0
end
if tonumber(ARGV[4]) > 0 and redis.call('XLEN', KEYS[3]) >= tonumber(ARGV[4]) then return -1 end
local message = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[2], ARGV[1])
-- A status in another state belongs to a later use of the key (its scheduled status expired,
-- and a dead letter under the key was retried): that one is the key's now.
local state = redis.call('HGET', KEYS[4], 'state')
if state and state ~= 'scheduled' then return 0 end
if not message then
  redis.call('HSET', KEYS[4], 'state', 'failed', 'reason', 'its scheduled message was missing')
  redis.call('EXPIRE', KEYS[4], ARGV[3])
  redis.call('HINCRBY', KEYS[5], 'failed', 1)
  return 0
end
redis.call('XADD', KEYS[3], '*', 'key', ARGV[1], 'message', message)
redis.call('HSET', KEYS[4], 'state', 'queued', 'queued_at', ARGV[2])
redis.call('EXPIRE', KEYS[4], ARGV[3])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
return 1
)lua";

/// Cancels a scheduled key, as one atomic step. KEYS[1]: the scheduled set, KEYS[2]: the
/// scheduled messages, KEYS[3]: the status hash, KEYS[4]: the state counts. ARGV: the key, a
/// token of the cancelling call, the status TTL, the time (Unix seconds). Returns 1 when this
/// call cancelled it (also when run again after its answer was lost: the token says so), 0 when
/// the key was not waiting (never scheduled, moved already, or cancelled by another call).
inline constexpr const char* cancel_script = R"lua(
if redis.call('HGET', KEYS[3], 'cancelled_by') == ARGV[2] then return 1 end
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('HSET', KEYS[3], 'state', 'cancelled', 'cancelled_by', ARGV[2], 'finished_at', ARGV[4])
redis.call('EXPIRE', KEYS[3], ARGV[3])
redis.call('HINCRBY', KEYS[4], 'cancelled', 1)
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
            if (detail::is_redis_error(answer, "NOSCRIPT")) {
                return run_as(redis, calls, {"EVAL", text_});
            }
        }
        return answers;
    }

  private:
    static std::vector<RedisValue> run_as(RedisClient& redis,
                                          const std::vector<std::vector<std::string>>& calls,
                                          const std::vector<std::string>& head) {
        // Views: a status batch's call is a few hundred kilobytes, not worth a copy.
        std::vector<std::vector<std::string_view>> commands;
        commands.reserve(calls.size());
        for (const auto& call : calls) {
            std::vector<std::string_view>& command = commands.emplace_back();
            command.reserve(head.size() + call.size());
            command.insert(command.end(), head.begin(), head.end());
            command.insert(command.end(), call.begin(), call.end());
        }
        return redis.pipeline_views(commands);
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

/// The process's one StoredScript of the script constants `*Texts` one after the other, e.g.
/// `stored_script<&enqueue_script>()`: its SHA1 is loaded once, and shared by every caller.
template <const char* const*... Texts>
StoredScript& stored_script() {
    static const std::string text = (std::string() + ... + *Texts);
    static StoredScript script(text.c_str());
    return script;
}

/// The worker's status transition (move_status_lua, transition_lua).
inline StoredScript& stored_transition_script() {
    return stored_script<&move_status_lua, &transition_lua>();
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
