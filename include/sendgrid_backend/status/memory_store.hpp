#pragma once

/// @file
/// `MemoryStatusStore`: the in-process `StatusStore`, the default. Bounded: past `max_messages`
/// records, or past `max_facts` facts kept in all (a message keeps each fact's fingerprint, so a
/// few messages with many recipients and events weigh as much as many small ones), the messages
/// whose facts (new or copies) came least recently are forgotten, with their fingerprints. The
/// message a fact is being applied to is never forgotten for it: one message alone may hold
/// more than `max_facts`.

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
            ++facts_;
            results.push_back(detail::apply_ops(entry.record, fact));
            ++applied_;
            // The entry is the most recent: the others go first, and it stays.
            while (facts_ > max_facts_ && recency_.front() != fact.key) forget_least_recent();
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

    /// How many facts (fingerprints) are kept now, over all messages.
    std::size_t facts() {
        std::lock_guard<std::mutex> lock(mutex_);
        return facts_;
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
        if (entries_.size() >= max_messages_) forget_least_recent();
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
        facts_ -= found->second.fingerprints.size();
        entries_.erase(found);
        recency_.pop_front();
    }

    std::size_t max_messages_;
    std::size_t max_facts_;
    std::mutex mutex_;
    std::unordered_map<std::string, Entry> entries_;
    std::list<std::string> recency_;  ///< keys, least recently given a fact first
    std::uint64_t applied_ = 0;
    std::size_t facts_ = 0;  ///< fingerprints kept, over all entries
};

SENDGRID_BACKEND_NAMESPACE_END
