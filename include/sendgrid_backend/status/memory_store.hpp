#pragma once

/// @file
/// `MemoryStatusStore`: the in-process `StatusStore`, the default. Bounded: past `max_messages`
/// records, the one whose facts (new or copies) came least recently is forgotten, with its
/// fingerprints.

#include <cstddef>
#include <cstdint>
#include <iterator>
#include <list>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/status/record_ops.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/status/store.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// A `StatusStore` in this process's memory. Thread-safe (one lock).
class MemoryStatusStore : public StatusStore {
  public:
    /// @throws ImproperlyConfigured for a bound of 0.
    explicit MemoryStatusStore(std::size_t max_messages = 100'000) : max_messages_(max_messages) {
        if (max_messages_ == 0) {
            throw ImproperlyConfigured("MemoryStatusStore::max_messages",
                                       "is 0; a store must keep at least one message");
        }
    }

    std::vector<AppliedFact> apply(const std::vector<PreparedFact>& facts) override {
        std::vector<AppliedFact> results;
        results.reserve(facts.size());
        std::lock_guard<std::mutex> lock(mutex_);
        for (const PreparedFact& fact : facts) {
            Entry& entry = touch(fact.key);
            if (!entry.fingerprints.insert(fact.fingerprint).second) {
                results.emplace_back();
                continue;
            }
            results.push_back(detail::apply_ops(entry.record, fact));
            ++applied_;
        }
        return results;
    }

    std::optional<StatusRecord> read(const std::string& key) override {
        std::lock_guard<std::mutex> lock(mutex_);
        auto found = entries_.find(key);
        if (found == entries_.end() || found->second.record.empty()) return std::nullopt;
        return found->second.record;
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

  private:
    struct Entry {
        StatusRecord record;
        std::unordered_set<std::string> fingerprints;
        std::list<std::string>::iterator position;  ///< in recency_
    };

    /// The entry of `key`, made the most recent; a new one may push out the least recent.
    Entry& touch(const std::string& key) {
        auto found = entries_.find(key);
        if (found != entries_.end()) {
            recency_.splice(recency_.end(), recency_, found->second.position);
            return found->second;
        }
        if (entries_.size() >= max_messages_) {
            entries_.erase(recency_.front());
            recency_.pop_front();
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

    std::size_t max_messages_;
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> recency_;  ///< keys, least recently given a fact first
    std::uint64_t applied_ = 0;
};

SENDGRID_BACKEND_NAMESPACE_END
