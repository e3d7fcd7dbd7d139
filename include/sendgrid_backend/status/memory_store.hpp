#pragma once

/// @file
/// `MemoryStatusStore`: the in-process `StatusStore`, the default. Bounded: past `max_messages`
/// messages, or past `max_facts` facts kept in all (a few messages with many recipients and
/// events weigh as much as many small ones), the messages whose facts (new or copies) came
/// least recently are forgotten, with their facts, once a call is applied. The messages a call
/// names are kept for it: one message alone may hold more than `max_facts`, and one call may name
/// more than `max_messages`.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// A `StatusStore` in this process's memory. Thread-safe (one lock).
class MemoryStatusStore : public StatusStore {
  public:
    /// @throws ImproperlyConfigured for a bound of 0.
    explicit MemoryStatusStore(std::size_t max_messages = 100'000,
                               std::size_t max_facts = 1'000'000)
        : max_messages_(max_messages), max_facts_(max_facts) {
        if (max_messages_ == 0) {
            throw ImproperlyConfigured("MemoryStatusStore::max_messages",
                                       "is 0; a store must keep at least one message");
        }
        if (max_facts_ == 0) {
            throw ImproperlyConfigured("MemoryStatusStore::max_facts",
                                       "is 0; a store must keep at least one fact");
        }
    }

    AppliedFacts apply(const std::vector<PreparedFact>& facts) override {
        const detail::TargetGroups groups = detail::target_groups(facts);
        AppliedFacts result;
        result.applied.reserve(facts.size());
        result.before.resize(groups.first.size());
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::size_t i = 0; i < facts.size(); ++i) {
            const PreparedFact& fact = facts[i];
            Entry& entry = touch(fact.key);
            auto& target = entry.targets[fact.target];
            const std::size_t group = groups.of_fact[i];
            if (groups.first[group] == i) {  // the target's first fact: what it held before
                result.before[group].reserve(target.size());
                for (const auto& stored : target) result.before[group].push_back(stored.second);
            }
            if (!target.emplace(fact.fingerprint, fact.body).second) {
                result.applied.push_back(false);
                continue;
            }
            result.applied.push_back(true);
            ++facts_;
            ++applied_;
        }
        // Bounds once the call is applied: a message forgotten halfway would take a later copy
        // of its fact for new. The call's messages are the most recent, and stay.
        std::unordered_set<std::string_view> named;
        for (const PreparedFact& fact : facts) named.insert(fact.key);
        while ((entries_.size() > max_messages_ || facts_ > max_facts_) &&
               named.count(recency_.front()) == 0) {
            forget_least_recent();
        }
        return result;
    }

    std::optional<StatusRecord> read(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        auto found = entries_.find(key);
        if (found == entries_.end() || found->second.targets.empty()) return std::nullopt;
        StatusRecord record;
        for (const auto& [target, stored] : found->second.targets) {
            auto& bodies = record[target];
            bodies.reserve(stored.size());
            for (const auto& fact : stored) bodies.push_back(fact.second);
        }
        return record;
    }

    std::uint64_t applied_facts() override {
        std::lock_guard<std::mutex> lock(mutex_);
        return applied_;
    }

    /// How many messages are kept now.
    std::size_t size() {
        std::lock_guard<std::mutex> lock(mutex_);
        return entries_.size();
    }

    /// How many facts are kept now, over all messages.
    std::size_t facts() {
        std::lock_guard<std::mutex> lock(mutex_);
        return facts_;
    }

  private:
    struct Entry {
        /// Per target, its facts: fingerprint -> body.
        std::unordered_map<std::string, std::unordered_map<std::string, std::string>> targets;
        std::list<std::string>::iterator position;  ///< in recency_
    };

    /// The entry of `key`, made the most recent.
    Entry& touch(const std::string& key) {
        auto found = entries_.find(key);
        if (found != entries_.end()) {
            recency_.splice(recency_.end(), recency_, found->second.position);
            return found->second;
        }
        Entry& entry = entries_[key];
        try {
            recency_.push_back(key);
        } catch (...) {
            entries_.erase(key);
            throw;
        }
        entry.position = std::prev(recency_.end());
        return entry;
    }

    void forget_least_recent() {
        auto found = entries_.find(recency_.front());
        for (const auto& target : found->second.targets) facts_ -= target.second.size();
        entries_.erase(found);
        recency_.pop_front();
    }

    std::size_t max_messages_;
    std::size_t max_facts_;
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> recency_;  ///< keys, least recently given a fact first
    std::uint64_t applied_ = 0;
    std::size_t facts_ = 0;  ///< facts kept, over all entries
};

SENDGRID_BACKEND_NAMESPACE_END
