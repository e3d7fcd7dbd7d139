#pragma once

/// @file
/// The observers of a signal (BasicSignal::observe): noexcept handlers called on every send with
/// no lock taken per handler. A send copies the shared_ptr of an immutable list; observe and
/// disconnect publish a new list. A send that copied the old list keeps it, and with it each
/// observer's state, alive until it returns: nothing is freed under a running call. The copy is
/// guarded by a spin lock held for one reference-count increment (std::atomic_load of a
/// shared_ptr takes one of libstdc++'s pool of mutexes instead, which a send pays for). A list
/// replaced by a writer is released after the writer's lock: releasing it may destroy an
/// observer, whose captures may disconnect other observers of the same signal.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

template <class... Args>
class ObserverList {
  public:
    using Handler = std::function<void(Args...)>;

    /// Adds `handler` at the end; returns its id for `remove`.
    std::uint64_t add(Handler handler) {
        auto entry = std::make_shared<Entry>(Entry{0, std::move(handler)});
        std::shared_ptr<const Entries> replaced;  // released after the lock (see the file comment)
        std::lock_guard<std::mutex> lock(write_mutex_);
        auto next = std::make_shared<Entries>(current_locked());
        const std::uint64_t id = ++last_id_;
        entry->id = id;
        next->push_back(std::move(entry));
        replaced = publish(std::move(next));
        return id;
    }

    /// Removes the observer `id`; returns whether it was there.
    bool remove(std::uint64_t id) {
        std::shared_ptr<const Entries> replaced;  // released after the lock
        std::lock_guard<std::mutex> lock(write_mutex_);
        auto next = std::make_shared<Entries>(current_locked());
        const std::size_t before = next->size();
        next->erase(std::remove_if(next->begin(), next->end(),
                                   [id](const auto& entry) { return entry->id == id; }),
                    next->end());
        if (next->size() == before) return false;
        replaced = publish(std::move(next));
        return true;
    }

    /// Removes every observer (BasicSignal::disconnect_all).
    void clear() {
        std::shared_ptr<const Entries> replaced;  // released after the lock
        std::lock_guard<std::mutex> lock(write_mutex_);
        replaced = publish(std::make_shared<Entries>());
    }

    void call(Args... args) const noexcept {
        const std::shared_ptr<const Entries> entries = snapshot();
        if (!entries) return;
        for (const auto& entry : *entries) entry->handler(args...);
    }

    std::size_t size() const noexcept {
        const auto entries = snapshot();
        return entries ? entries->size() : 0;
    }

  private:
    struct Entry {
        std::uint64_t id;
        Handler handler;
    };
    /// Shared, so that a writer copies pointers, never a handler (which could throw).
    using Entries = std::vector<std::shared_ptr<const Entry>>;

    class SpinGuard {
      public:
        explicit SpinGuard(std::atomic_flag& flag) noexcept : flag_(flag) {
            while (flag_.test_and_set(std::memory_order_acquire)) std::this_thread::yield();
        }
        ~SpinGuard() { flag_.clear(std::memory_order_release); }
        SpinGuard(const SpinGuard&) = delete;
        SpinGuard& operator=(const SpinGuard&) = delete;

      private:
        std::atomic_flag& flag_;
    };

    std::shared_ptr<const Entries> snapshot() const noexcept {
        const SpinGuard guard(entries_lock_);
        return entries_;
    }

    /// The list as it is; only a writer (holding write_mutex_) calls it.
    Entries current_locked() const {
        const auto entries = snapshot();
        return entries ? *entries : Entries{};
    }

    /// Makes `next` the list; returns the one it replaced, for the caller to release once it
    /// holds no lock.
    [[nodiscard]] std::shared_ptr<const Entries> publish(std::shared_ptr<Entries> next) noexcept {
        std::shared_ptr<const Entries> replaced(std::move(next));
        const SpinGuard guard(entries_lock_);
        entries_.swap(replaced);
        return replaced;
    }

    std::mutex write_mutex_;  ///< one writer at a time: each copies the list it replaces
    mutable std::atomic_flag entries_lock_ = ATOMIC_FLAG_INIT;
    std::shared_ptr<const Entries> entries_;
    std::uint64_t last_id_ = 0;
};

}  // namespace detail

/// Removes its observer when disconnected or destroyed (RAII, move-only). Outliving its signal
/// is safe: disconnecting then does nothing.
class ObserverConnection {
  public:
    ObserverConnection() = default;
    explicit ObserverConnection(std::function<bool()> remove) : remove_(std::move(remove)) {}
    ObserverConnection(ObserverConnection&& other) noexcept
        : remove_(std::exchange(other.remove_, {})) {}
    ObserverConnection& operator=(ObserverConnection&& other) noexcept {
        if (this != &other) {
            disconnect();
            remove_ = std::exchange(other.remove_, {});
        }
        return *this;
    }
    ObserverConnection(const ObserverConnection&) = delete;
    ObserverConnection& operator=(const ObserverConnection&) = delete;
    ~ObserverConnection() { disconnect(); }

    /// Removes the observer; returns whether it was still there. A send already running may
    /// still call it once (it keeps the observer alive until it returns).
    bool disconnect() noexcept {
        auto remove = std::exchange(remove_, {});
        if (!remove) return false;
        try {
            return remove();
        } catch (...) {
            return false;  // out of memory copying the list: the observer stays, harmlessly
        }
    }

  private:
    std::function<bool()> remove_;
};

SENDGRID_BACKEND_NAMESPACE_END
