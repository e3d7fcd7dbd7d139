#pragma once

/// @file
/// `BackgroundSender`: hand a message off and return at once (Rails' deliver_later, Laravel's
/// queued mailables), in this process. A bounded queue in front of worker threads that send
/// what is waiting in batches through a `SendgridBackend`; each `submit` gets a future of the
/// message's final outcome (or a callback). `sendgrid_email_sent` fires once per message, on the
/// worker thread that sent it. Nothing accepted is dropped: `drain` waits for every submitted
/// message, and the destructor sends every one that was accepted before it returns.
///
/// The sender shares ownership of its backend, so the backend lives as long as any message
/// may still go through it. A `submit` made on any BackgroundSender's worker thread (a
/// completion callback, or a `sendgrid_email_sent` handler sending an alert through a sender)
/// never waits for room: a worker that waited on a queue only workers empty could wait forever.
///
/// @code
/// auto backend = std::make_shared<sendgrid_backend::SendgridBackend>(settings);
/// sendgrid_backend::BackgroundSender mailer(backend);            // keeps backend alive
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
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/signals.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// How a BackgroundSender queues and sends. The constructor refuses values out of range
/// (ImproperlyConfigured naming the field).
struct BackgroundOptions {
    /// Messages waiting at most (0: 1); a full queue blocks submit() or refuses (QueueFull).
    /// Any size: the queue only holds what was submitted. Submits made on a worker thread are
    /// taken past it when `when_full` is `block` (see the file comment).
    std::size_t capacity = 10'000;
    enum class WhenFull { block, refuse };
    WhenFull when_full = WhenFull::block;
    /// Worker threads, each sending one batch at a time: 1 to `max_workers` (0: 1).
    std::size_t workers = 1;
    /// A worker takes up to this many waiting messages per batch, at most `max_batch`; 0: the
    /// backend's max_in_flight (so a batch keeps its requests in flight together).
    std::size_t batch = 0;

    static constexpr std::size_t max_workers = 256;
    static constexpr std::size_t max_batch = 10'000;
};

/// See the file comment. Thread-safe: submit from any thread.
class BackgroundSender {
  public:
    /// Called on the worker thread once the message's outcome is final (after the emission).
    /// An exception it throws goes to the backend's `on_handler_error`, as a handler's does.
    using Done = std::function<void(const EmailMessage&)>;

    /// The sender keeps `backend` alive until its last message is sent.
    /// @throws ImproperlyConfigured when `backend` is null or an option is out of range.
    explicit BackgroundSender(std::shared_ptr<const SendgridBackend> backend,
                              BackgroundOptions options = {}) {
        if (!backend) throw ImproperlyConfigured("backend", "is null; pass a SendgridBackend");
        if (options.capacity == 0) options.capacity = 1;
        if (options.workers == 0) options.workers = 1;
        detail::require_at_most("BackgroundOptions::workers", options.workers,
                                BackgroundOptions::max_workers);
        detail::require_at_most("BackgroundOptions::batch", options.batch,
                                BackgroundOptions::max_batch);
        state_ = std::make_shared<State>(std::move(backend), options);
        try {
            for (std::size_t i = 0; i < options.workers; ++i) {
                // Each worker shares the state: one left running by a destructor that ran on a
                // worker (see there) finishes with it.
                workers_.emplace_back([state = state_] { state->work(); });
            }
        } catch (...) {
            stop_and_join();  // the threads that did start
            throw;
        }
    }

    /// Stops taking messages, sends every one already accepted (and those its own callbacks
    /// submit meanwhile), then joins the workers. Run on one of its own workers (a callback
    /// held the last owner of the sender), it cannot wait for that worker: the worker finishes
    /// the remaining messages after the destructor returned.
    ~BackgroundSender() { stop_and_join(); }

    BackgroundSender(const BackgroundSender&) = delete;
    BackgroundSender& operator=(const BackgroundSender&) = delete;

    /// Queues `message`; the future holds its final outcome. Waits for room when the queue is
    /// full and `when_full` is `block`, except on a worker thread (see the file comment).
    /// @throws QueueFull when the queue is full and `when_full` is `refuse`; SenderStopped (a
    ///         QueueFull) when the sender is being destroyed (a submit from its own worker is
    ///         still taken then).
    std::future<SendOutcome> submit(EmailMessage message) {
        std::promise<SendOutcome> promise;
        std::future<SendOutcome> future = promise.get_future();
        state_->enqueue(Item{std::move(message), std::move(promise), nullptr});
        return future;
    }

    /// Queues `message`; `done` is called with it, outcome recorded, on the worker thread.
    void submit(EmailMessage message, Done done) {
        state_->enqueue(Item{std::move(message), std::nullopt, std::move(done)});
    }

    /// Waits until every message submitted so far has its final outcome, or `deadline`;
    /// returns whether they all have.
    /// @throws WouldDeadlock on one of this sender's worker threads (it would wait for itself).
    bool drain(std::chrono::steady_clock::time_point deadline) {
        state_->refuse_on_worker("drain(deadline)", State::Workers::own);
        std::unique_lock<std::mutex> lock(state_->mutex);
        return state_->changed.wait_until(lock, deadline, [this] { return state_->idle(); });
    }

    /// Waits until every message submitted so far has its final outcome.
    /// @throws WouldDeadlock on any BackgroundSender's worker thread: on its own it would wait
    ///         for itself, on another's it could wait forever for a sender whose worker waits
    ///         for this one (use the deadline form there).
    void drain() {
        state_->refuse_on_worker("drain()", State::Workers::any);
        std::unique_lock<std::mutex> lock(state_->mutex);
        state_->changed.wait(lock, [this] { return state_->idle(); });
    }

    /// Messages waiting to be sent.
    std::size_t waiting() const {
        std::lock_guard<std::mutex> lock(state_->mutex);
        return state_->queue.size();
    }

  private:
    struct Item {
        EmailMessage message;
        std::optional<std::promise<SendOutcome>> promise;
        Done done;
    };

    /// What the workers work on; shared with them, so it outlives the sender when it must.
    struct State {
        State(std::shared_ptr<const SendgridBackend> backend_, BackgroundOptions options_)
            : backend(std::move(backend_)), options(options_) {}

        std::shared_ptr<const SendgridBackend> backend;
        BackgroundOptions options;
        mutable std::mutex mutex;
        std::condition_variable changed;
        std::deque<Item> queue;
        std::size_t busy = 0;  ///< taken from the queue, outcome not yet final
        bool stopping = false;

        bool idle() const { return queue.empty() && busy == 0; }

        /// The sender state whose worker this thread is, or null: a worker must never wait for
        /// room in a queue that only workers empty, its own or another sender's.
        static const State*& worker_of_this_thread() noexcept {
            thread_local const State* owner = nullptr;
            return owner;
        }

        enum class Workers { own, any };

        void refuse_on_worker(const char* what, Workers which) const {
            const State* worker_of = worker_of_this_thread();
            if (worker_of == this) {
                throw WouldDeadlock(std::string("BackgroundSender::") + what +
                                    " called on the sender's own worker thread (from a callback "
                                    "or a handler) would wait for itself");
            }
            if (worker_of != nullptr && which == Workers::any) {
                throw WouldDeadlock(std::string("BackgroundSender::") + what +
                                    " called on another sender's worker thread could wait "
                                    "forever (each sender's worker waiting for the other's); "
                                    "use drain(deadline)");
            }
        }

        void enqueue(Item item) {
            const State* worker_of = worker_of_this_thread();
            {
                std::unique_lock<std::mutex> lock(mutex);
                // Our own worker is still running, so it will send what it adds while stopping.
                if (stopping && worker_of != this) {
                    throw SenderStopped("the BackgroundSender is stopping");
                }
                if (queue.size() >= options.capacity) {
                    if (options.when_full == BackgroundOptions::WhenFull::refuse) {
                        throw QueueFull(
                            std::to_string(options.capacity) +
                            " messages are waiting already (BackgroundOptions::capacity)");
                    }
                    if (worker_of == nullptr) {
                        changed.wait(
                            lock, [this] { return stopping || queue.size() < options.capacity; });
                        if (stopping) throw SenderStopped("the BackgroundSender is stopping");
                    }
                }
                queue.push_back(std::move(item));
            }
            changed.notify_all();
        }

        void work() {
            worker_of_this_thread() = this;
            for (;;) {
                std::vector<Item> batch;
                {
                    std::unique_lock<std::mutex> lock(mutex);
                    changed.wait(lock, [this] { return stopping || !queue.empty(); });
                    if (queue.empty()) break;  // stopping, and nothing is left
                    const std::size_t limit =
                        options.batch != 0 ? options.batch : backend->settings().max_in_flight;
                    while (!queue.empty() && batch.size() < limit) {
                        batch.push_back(std::move(queue.front()));
                        queue.pop_front();
                    }
                    busy += batch.size();
                }
                changed.notify_all();  // room in the queue for blocked submitters
                send(batch);
                const std::size_t finished = batch.size();
                batch.clear();  // callbacks' captures go now, while this worker is still busy
                {
                    std::lock_guard<std::mutex> lock(mutex);
                    busy -= finished;
                }
                changed.notify_all();
            }
            worker_of_this_thread() = nullptr;
        }

        /// Sends one batch; every item gets its outcome, whatever happens.
        void send(std::vector<Item>& batch) {
            std::vector<EmailMessage> messages;
            messages.reserve(batch.size());
            for (auto& item : batch) messages.push_back(std::move(item.message));
            try {
                backend->send_messages(messages);
            } catch (...) {
                // SendError, BrokenTransport, even out of memory: every message has its outcome
                // and its emission already (the backend sees to that); the futures carry them.
            }
            for (std::size_t i = 0; i < batch.size(); ++i) {
                Item& item = batch[i];
                if (item.promise) item.promise->set_value(messages[i].outcome);
                if (item.done) {
                    try {
                        item.done(messages[i]);
                    } catch (...) {
                        // A callback that throws must not stop the worker; it is reported as a
                        // handler's exception is.
                        backend->report_handler_error(messages[i], std::current_exception(),
                                                      "BackgroundSender::submit callback");
                    }
                }
            }
        }
    };

    void stop_and_join() noexcept {
        {
            std::lock_guard<std::mutex> lock(state_->mutex);
            state_->stopping = true;
        }
        state_->changed.notify_all();
        for (auto& worker : workers_) {
            // A worker cannot join itself; it holds the state and exits once the queue is empty.
            if (worker.get_id() == std::this_thread::get_id()) {
                worker.detach();
            } else {
                worker.join();
            }
        }
    }

    std::shared_ptr<State> state_;
    std::vector<std::thread> workers_;
};

SENDGRID_BACKEND_NAMESPACE_END
