#pragma once

/// @file
/// `RedisMetricsStore`: the metrics counters of metrics.hpp in Redis, shared by every process on
/// every host that points at the same Redis (what the signals guide's Django cache is in
/// production). Each day is one hash, `<prefix><YYYY-MM-DD>`; a send's counters go in with
/// HINCRBY inside MULTI/EXEC, so they count together or not at all, and the hash expires `ttl`
/// after its last update (24 hours, as in the guide). Link `sendgrid_backend::redis`.

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/metrics.hpp"
#include "sendgrid_backend/redis/client.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// See the file comment. Thread-safe (the client serializes commands).
class RedisMetricsStore : public MetricsStore {
  public:
    RedisMetricsStore(std::shared_ptr<RedisClient> redis,
                      std::string prefix = "sendgrid_backend:email_metrics:",
                      std::chrono::seconds ttl = std::chrono::hours(24))
        : redis_(std::move(redis)), prefix_(std::move(prefix)), ttl_(ttl) {}

    /// @throws RedisError when Redis refuses or cannot be reached (a handler error then).
    void add(const std::string& day,
             const std::vector<std::pair<std::string, std::int64_t>>& counts) override {
        const std::string key = prefix_ + day;
        std::vector<std::vector<std::string>> commands{{"MULTI"}};
        for (const auto& [name, count] : counts) {
            commands.push_back({"HINCRBY", key, name, std::to_string(count)});
        }
        commands.push_back({"EXPIRE", key, std::to_string(ttl_.count())});
        commands.push_back({"EXEC"});
        const std::vector<RedisValue> answers = redis_->pipeline(commands);
        const RedisValue& exec = answers.back();
        if (exec.type != RedisValue::Type::array) {
            throw RedisError("Redis did not apply the metrics transaction: " +
                             (exec.is_error() ? exec.text : std::string("EXEC returned nil")));
        }
    }

    std::map<std::string, std::int64_t> counters(const std::string& day) override {
        const RedisValue all = redis_->command({"HGETALL", prefix_ + day});
        if (all.is_error()) throw RedisError("HGETALL failed: " + all.text);
        std::map<std::string, std::int64_t> counters;
        for (std::size_t i = 0; i + 1 < all.elements.size(); i += 2) {
            const auto value = detail::parse_decimal(all.elements[i + 1].text);
            counters[all.elements[i].text] = value.value_or(0);
        }
        return counters;
    }

  private:
    std::shared_ptr<RedisClient> redis_;
    std::string prefix_;
    std::chrono::seconds ttl_;
};

SENDGRID_BACKEND_NAMESPACE_END
