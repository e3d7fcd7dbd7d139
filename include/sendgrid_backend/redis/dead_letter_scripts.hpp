#pragma once

/// @file
/// The dead letters' Lua scripts (part of the queue's data format, beside redis/scripts.hpp):
/// a status transition that also keeps a message ending `failed` or `unknown` as a dead letter,
/// and retry and drop by queue key. Each is one atomic step, safe to run again after a lost
/// answer. The store: a stream (RedisQueueOptions::dead_letter_key) whose entries hold `key`,
/// `state`, `reason`, `http_status`, `worker`, `at` (unix seconds) and `message` (the queue
/// entry's, as queued), with IDs from the recording caller's clock (milliseconds, kept
/// increasing); and a hash (dead_letter_index_key) from each key to its one entry.

#include <cstddef>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/redis/scripts.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

namespace detail {

/// A Lua function the recording script defines: trim(dead, index, now_ms, ttl_ms) removes up to
/// 1000 of the oldest entries older than ttl_ms at now_ms, and their index fields when they still
/// point at them (a key recorded again points elsewhere). Bounded work per call: a burst that
/// ages out together is removed over the following recordings.
inline constexpr const char* dead_letter_trim_lua = R"lua(
local function trim(dead, index, now, ttl)
    local oldest = now - ttl
    if oldest <= 0 then return end
    local expired = redis.call('XRANGE', dead, '-', string.format('%.0f', oldest - 1),
                               'COUNT', 1000)
    for _, entry in ipairs(expired) do
        redis.call('XDEL', dead, entry[1])
        local fields = entry[2]
        for i = 1, #fields, 2 do
            if fields[i] == 'key' and redis.call('HGET', index, fields[i + 1]) == entry[1] then
                redis.call('HDEL', index, fields[i + 1])
            end
        end
    end
end
)lua";

/// The status transition (scripts.hpp's move_status), which also records a dead letter when the
/// status moves to "failed" or "unknown" (not when a call retried after its answer was lost
/// finds it moved already: that call recorded it). KEYS[1]: the status hash, KEYS[2]: the state
/// counts, KEYS[3]: the queue stream, KEYS[4]: the dead-letter stream, KEYS[5]: its index.
/// ARGV[1-5]: the transition's (from, owner, status TTL, to, worker), ARGV[6]: the queue key,
/// ARGV[7]: the queue entry's ID (its `message` is kept; '' when the entry is gone), ARGV[8]:
/// now in unix milliseconds, ARGV[9]: the dead letters' TTL in milliseconds, then field/value
/// pairs for the status. A key recorded again replaces its earlier dead letter. Returns what
/// the transition returns.
inline constexpr const char* dead_letter_transition_lua = R"lua(
local result, moved = move_status(KEYS[1], KEYS[2], ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5], 10)
if not moved or (ARGV[4] ~= 'failed' and ARGV[4] ~= 'unknown') then return result end

local message = ''
local queued = redis.call('XRANGE', KEYS[3], ARGV[7], ARGV[7])
if queued[1] then
    local fields = queued[1][2]
    for i = 1, #fields, 2 do
        if fields[i] == 'message' then message = fields[i + 1] end
    end
end
-- The ID: the caller's time, after the last one the stream gave (deleted entries included).
local now = tonumber(ARGV[8])
local ms, seq = now, 0
if redis.call('EXISTS', KEYS[4]) == 1 then
    local info = redis.call('XINFO', 'STREAM', KEYS[4])
    for i = 1, #info, 2 do
        if info[i] == 'last-generated-id' then
            local last_ms, last_seq = string.match(info[i + 1], '^(%d+)-(%d+)$')
            if tonumber(last_ms) > ms or (tonumber(last_ms) == ms and #last_seq > 15) then
                ms, seq = tonumber(last_ms) + 1, 0
            elseif tonumber(last_ms) == ms then
                seq = tonumber(last_seq) + 1
            end
        end
    end
end
local id = string.format('%.0f-%.0f', ms, seq)
local earlier = redis.call('HGET', KEYS[5], ARGV[6])
if earlier then redis.call('XDEL', KEYS[4], earlier) end
redis.call('XADD', KEYS[4], id, 'key', ARGV[6], 'state', ARGV[4],
           'reason', redis.call('HGET', KEYS[1], 'reason') or '',
           'http_status', redis.call('HGET', KEYS[1], 'http_status') or '',
           'worker', ARGV[5], 'at', string.format('%.0f', math.floor(now / 1000)),
           'message', message, 'entry', ARGV[7])
redis.call('HSET', KEYS[5], ARGV[6], id)
trim(KEYS[4], KEYS[5], now, tonumber(ARGV[9]))
redis.call('PEXPIRE', KEYS[4], ARGV[9])
redis.call('PEXPIRE', KEYS[5], ARGV[9])
return 1
)lua";

/// Re-queues a dead letter under its key, as one atomic step. KEYS[1]: the dead-letter stream,
/// KEYS[2]: its index, KEYS[3]: the status hash, KEYS[4]: the queue stream, KEYS[5]: the state
/// counts, KEYS[6]: the scheduled set (a key waiting there again is refused as scheduled). ARGV[1]:
/// the key, ARGV[2]: '1' to re-queue one whose outcome is unknown, ARGV[3]: a token new for each
/// call, ARGV[4]: now (unix seconds), ARGV[5]: the status TTL, ARGV[6]: the queue's maximum length
/// (0: none), ARGV[7]: the consumer group. The status must be "failed" or "unknown" (or expired):
/// one in another state was queued again since. On success the entry is added to the queue, the
/// status reads "queued" again (its outcome fields removed; `retried_at`, `retries` and the token
/// recorded) and the dead letter is removed. The queue entry it was recorded from is acknowledged
/// and deleted first, should a worker have stopped before it did so: else another worker would
/// claim that old entry and send it beside the new one. Returns {code, text}: {1, entry ID}
/// re-queued (also for a call run again with the same token after its answer was lost, which adds
/// nothing: {1, ''}); {0, ''} no dead letter under the key; {-1, ''} unknown and ARGV[2] not '1';
/// {-2, state} the status is in another state; {-3, ''} the queue is full; {-4, ''} the dead
/// letter has no message (its queue entry was gone when it was recorded).
inline constexpr const char* dead_letter_retry_script = R"lua(
if redis.call('HGET', KEYS[3], 'retry_token') == ARGV[3] then return {1, ''} end
local id = redis.call('HGET', KEYS[2], ARGV[1])
local entry = id and redis.call('XRANGE', KEYS[1], id, id)[1]
if not entry then
    if id then redis.call('HDEL', KEYS[2], ARGV[1]) end
    return {0, ''}
end
local dead = {}
for i = 1, #entry[2], 2 do dead[entry[2][i]] = entry[2][i + 1] end
local state = redis.call('HGET', KEYS[3], 'state')
if state and state ~= 'failed' and state ~= 'unknown' then return {-2, state} end
if redis.call('ZSCORE', KEYS[6], ARGV[1]) then return {-2, 'scheduled'} end
if (dead['state'] == 'unknown' or state == 'unknown') and ARGV[2] ~= '1' then return {-1, ''} end
if (dead['message'] or '') == '' then return {-4, ''} end
if tonumber(ARGV[6]) > 0 and redis.call('XLEN', KEYS[4]) >= tonumber(ARGV[6]) then
    return {-3, ''}
end
if (dead['entry'] or '') ~= '' then
    redis.pcall('XACK', KEYS[4], ARGV[7], dead['entry'])  -- no group yet: nothing to acknowledge
    redis.call('XDEL', KEYS[4], dead['entry'])
end
local queued = redis.call('XADD', KEYS[4], '*', 'key', ARGV[1], 'message', dead['message'])
redis.call('HDEL', KEYS[3], 'worker', 'message_id', 'http_status', 'reason', 'started_at',
           'finished_at')
redis.call('HSET', KEYS[3], 'state', 'queued', 'queued_at', ARGV[4], 'retried_at', ARGV[4],
           'retry_token', ARGV[3])
redis.call('HINCRBY', KEYS[3], 'retries', 1)
redis.call('EXPIRE', KEYS[3], ARGV[5])
redis.call('HINCRBY', KEYS[5], 'queued', 1)
redis.call('XDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], ARGV[1])
return {1, queued}
)lua";

/// Removes a dead letter; the status is left as it is. KEYS[1]: the dead-letter stream,
/// KEYS[2]: its index. ARGV[1]: the key. Returns 1 when it removed one, 0 when there was none
/// (or only an index field left by an entry trimmed or expired, which it removes).
inline constexpr const char* dead_letter_drop_script = R"lua(
local id = redis.call('HGET', KEYS[2], ARGV[1])
if not id then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
return redis.call('XDEL', KEYS[1], id)
)lua";

/// `transition` (a call of the transition script: "2", its two keys, its five arguments, then
/// field/value pairs) as a call of the dead-letter transition script, for the message queued
/// under `key` in entry `entry_id` of `stream`.
inline std::vector<std::string> dead_letter_transition_call(
    std::vector<std::string> transition, const std::string& stream, const std::string& dead,
    const std::string& index, const std::string& key, const std::string& entry_id, long long now_ms,
    long long ttl_ms) {
    std::vector<std::string> call{
        "5", std::move(transition.at(1)), std::move(transition.at(2)), stream, dead, index};
    for (std::size_t i = 3; i < 8; ++i) call.push_back(std::move(transition.at(i)));
    call.insert(call.end(), {key, entry_id, std::to_string(now_ms), std::to_string(ttl_ms)});
    for (std::size_t i = 8; i < transition.size(); ++i) call.push_back(std::move(transition[i]));
    return call;
}

inline StoredScript& stored_dead_letter_transition_script() {
    return stored_script<&dead_letter_trim_lua, &move_status_lua, &dead_letter_transition_lua>();
}

}  // namespace detail

SENDGRID_BACKEND_NAMESPACE_END
