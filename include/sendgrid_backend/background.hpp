#pragma once

/// @file
/// `BackgroundSender`: hand a message off and return at once (Rails' deliver_later, Laravel's
/// queued mailables), in this process. A bounded queue in front of worker threads that send
/// what is waiting in batches through a `SendgridBackend`; each `submit` gets a future of the
/// message's final outcome (or a callback). `sendgrid_email_sent` fires once per message, on the
/// worker thread that sent it. Nothing accepted is dropped: `drain` waits for every submitted
/// message, and the destructor sends every one that was accepted before it returns.
///
/// @code
/// sendgrid_backend::BackgroundSender mailer(backend);            // backend outlives mailer
/// auto outcome = mailer.submit(std::move(message));              // returns at once
/// // ... later, or never:
/// if (!outcome.get().accepted()) log(outcome.get().failure_reason);
/// @endcode
///
/// For messages that must survive this process, or be sent from other hosts, see the Redis
/// queue (redis/queue.hpp).

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/mail.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/signals.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// How a BackgroundSender queues and sends.
struct BackgroundOptions {
    /// Messages waiting at most; a full queue blocks submit() or refuses (QueueFull).
    std::size_t capacity = 10'000;
    enum class WhenFull { block, refuse };
    WhenFull when_full = WhenFull::block;
    /// Worker threads, each sending one batch at a time.
    std::size_t workers = 1;
    /// A worker takes up to this many waiting messages per batch; 0: the backend's
    /// max_in_flight (so a batch keeps its requests in flight together).
    std::size_t batch = 0;
};

/// See the file comment. Thread-safe: submit from any thread.
class BackgroundSender {
  public:
    /// Called on the worker thread once the message's outcome is final (after the emission).
    using Done = std::function<void(const EmailMessage&)>;

    /// `backend` must outlive the sender.
    explicit BackgroundSender(const SendgridBackend& backend, BackgroundOptions options = {})
        : backend_(backend), options_(options) {
        if (options_.capacity == 0) options_.capacity = 1;
        if (options_.workers == 0) options_.workers = 1;
        for (std::size_t i = 0; i < options_.workers; ++i) {
            workers_.emplace_back([this] { work(); });
        }
    }

    /// Stops taking messages, sends every one already accepted, then joins the workers.
    ~BackgroundSender() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        changed_.notify_all();
        for (auto& worker : workers_) worker.join();
    }

    BackgroundSender(const BackgroundSender&) = delete;
    BackgroundSender& operator=(const BackgroundSender&) = delete;

    /// Queues `message`; the future holds its final outcome.
    /// @throws QueueFull when the queue is full and `when_full` is `refuse`, or the sender is
    ///         being destroyed.
    std::future<SendOutcome> submit(EmailMessage message) {
        std::promise<SendOutcome> promise;
        std::future<SendOutcome> future = promise.get_future();
        enqueue(Item{std::move(message), std::move(promise), nullptr});
        return future;
    }

    /// Queues `message`; `done` is called with it, outcome recorded, on the worker thread.
    void submit(EmailMessage message, Done done) {
        enqueue(Item{std::move(message), std::nullopt, std::move(done)});
    }

    /// Waits until every message submitted so far has its final outcome, or `deadline`;
    /// returns whether they all have.
    bool drain(std::chrono::steady_clock::time_point deadline) {
        std::unique_lock<std::mutex> lock(mutex_);
        return changed_.wait_until(lock, deadline, [this] { return queue_.empty() && busy_ == 0; });
    }

    /// Waits until every message submitted so far has its final outcome.
    void drain() {
        std::unique_lock<std::mutex> lock(mutex_);
        changed_.wait(lock, [this] { return queue_.empty() && busy_ == 0; });
    }

    /// Messages waiting to be sent.
    std::size_t waiting() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return queue_.size();
    }

  private:
    struct Item {
        EmailMessage message;
        std::optional<std::promise<SendOutcome>> promise;
        Done done;
    };

    void enqueue(Item item) {
        {
            std::unique_lock<std::mutex> lock(mutex_);
            if (stopping_) throw QueueFull("the BackgroundSender is stopping");
            if (queue_.size() >= options_.capacity) {
                if (options_.when_full == BackgroundOptions::WhenFull::refuse) {
                    throw QueueFull(std::to_string(options_.capacity) +
                                    " messages are waiting already (BackgroundOptions::capacity)");
                }
                changed_.wait(lock,
                              [this] { return stopping_ || queue_.size() < options_.capacity; });
                if (stopping_) throw QueueFull("the BackgroundSender is stopping");
            }
            queue_.push_back(std::move(item));
        }
        changed_.notify_all();
    }

    void work() {
        for (;;) {
            std::vector<Item> batch;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                changed_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping, and nothing is left
                const std::size_t limit =
                    options_.batch != 0 ? options_.batch : backend_.settings().max_in_flight;
                while (!queue_.empty() && batch.size() < limit) {
                    batch.push_back(std::move(queue_.front()));
                    queue_.pop_front();
                }
                busy_ += batch.size();
            }
            changed_.notify_all();  // room in the queue for blocked submitters
            send(batch);
            {
                std::lock_guard<std::mutex> lock(mutex_);
                busy_ -= batch.size();
            }
            changed_.notify_all();
        }
    }

    /// Sends one batch; every item gets its outcome, whatever happens.
    void send(std::vector<Item>& batch) {
        std::vector<EmailMessage> messages;
        messages.reserve(batch.size());
        for (auto& item : batch) messages.push_back(std::move(item.message));
        try {
            backend_.send_messages(messages);
        } catch (...) {
            // SendError, BrokenTransport, even out of memory: every message has its outcome and
            // its emission already (the backend sees to that); the futures carry the outcomes.
        }
        for (std::size_t i = 0; i < batch.size(); ++i) {
            Item& item = batch[i];
            if (item.promise) item.promise->set_value(messages[i].outcome);
            if (item.done) {
                try {
                    item.done(messages[i]);
                } catch (...) {
                    // A callback that throws must not stop the worker.
                }
            }
        }
    }

    const SendgridBackend& backend_;
    BackgroundOptions options_;
    mutable std::mutex mutex_;
    std::condition_variable changed_;
    std::deque<Item> queue_;
    std::size_t busy_ = 0;  ///< taken from the queue, outcome not yet final
    bool stopping_ = false;
    std::vector<std::thread> workers_;
};

SENDGRID_BACKEND_NAMESPACE_END
