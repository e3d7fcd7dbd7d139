#pragma once

/// @file
/// Requests in flight together: the libcurl `TransportBatch`, on one pooled multi-handle
/// session. Part of `transport/curl.hpp`; include that.

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/transport/curl/pool.hpp"
#include "sendgrid_backend/transport/curl/request.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail::curl {

/// Requests in flight on one session's multi handle; used by one thread, like every batch.
class Batch : public TransportBatch {
  public:
    Batch(Pool& pool, std::size_t max_in_flight)
        : pool_(pool), session_(pool.acquire_session()), max_in_flight_(max_in_flight) {
        curl_multi_setopt(session_->multi, CURLMOPT_MAXCONNECTS, static_cast<long>(max_in_flight));
    }

    ~Batch() override {
        // Requests still in flight are abandoned: removing a handle stops its transfer.
        for (auto& transfer : active_) {
            curl_multi_remove_handle(session_->multi, transfer->easy());
            give_back_handle(*transfer);
        }
        pool_.release_session(std::move(session_));
    }

    Batch(const Batch&) = delete;
    Batch& operator=(const Batch&) = delete;

    void start(std::size_t tag, const HttpRequest& request) override {
        std::unique_ptr<Transfer> transfer = new_transfer(tag);
        prepare(*transfer, request, pool_.options());
        if (curl_multi_add_handle(session_->multi, transfer->easy()) != CURLM_OK) {
            give_back_handle(*transfer);
            throw TransportSetupError("curl_multi_add_handle failed");
        }
        active_.push_back(std::move(transfer));
    }

    std::vector<Completion> wait_any(std::chrono::milliseconds timeout) override {
        std::vector<Completion> done;
        const auto deadline = std::chrono::steady_clock::now() + timeout;
        for (;;) {
            int running = 0;
            curl_multi_perform(session_->multi, &running);
            collect_finished(done);
            if (!done.empty() || active_.empty()) return done;
            if (!poll_until(deadline)) return done;
        }
    }

    std::size_t concurrency() const noexcept override { return max_in_flight_; }

  private:
    /// A transfer for request `tag`, as made, holding an easy handle of the session.
    std::unique_ptr<Transfer> new_transfer(std::size_t tag) {
        std::unique_ptr<Transfer> transfer;
        if (spare_.empty()) {
            transfer = std::make_unique<Transfer>();
        } else {
            transfer = std::move(spare_.back());
            spare_.pop_back();
            *transfer = Transfer{};
        }
        transfer->tag = tag;
        if (session_->idle.empty()) {
            transfer->handle = pool_.new_handle();
        } else {
            transfer->handle = std::move(session_->idle.back());
            session_->idle.pop_back();
        }
        return transfer;
    }

    /// Moves the finished transfers' answers to `done`.
    void collect_finished(std::vector<Completion>& done) {
        int queued = 0;
        while (CURLMsg* message = curl_multi_info_read(session_->multi, &queued)) {
            if (message->msg != CURLMSG_DONE) continue;
            Transfer* transfer = nullptr;
            curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
            const CURLcode result = message->data.result;
            curl_multi_remove_handle(session_->multi, transfer->easy());
            finish(*transfer, result);
            give_back_handle(*transfer);
            done.push_back(Completion{transfer->tag, std::move(transfer->response)});
            forget(transfer);
        }
    }

    /// Waits for activity on the session until `deadline`; false when the deadline has passed.
    bool poll_until(std::chrono::steady_clock::time_point deadline) {
        const auto left = std::chrono::ceil<std::chrono::milliseconds>(
            deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        curl_multi_poll(session_->multi, nullptr, 0,
                        static_cast<int>(std::min<long long>(left.count(), 1'000'000)), nullptr);
        return true;
    }

    /// Returns the transfer's easy handle, and the connection it holds, to the session.
    void give_back_handle(Transfer& transfer) {
        unbind_transfer(transfer.easy());
        session_->idle.push_back(std::move(transfer.handle));
    }

    /// Puts a finished transfer aside for the next start (few are in flight: a scan finds it).
    void forget(const Transfer* transfer) {
        for (auto& held : active_) {
            if (held.get() != transfer) continue;
            std::swap(held, active_.back());
            spare_.push_back(std::move(active_.back()));
            active_.pop_back();
            return;
        }
    }

    Pool& pool_;
    std::unique_ptr<Session> session_;
    std::size_t max_in_flight_;
    std::vector<std::unique_ptr<Transfer>> active_;  ///< in flight, in no order
    std::vector<std::unique_ptr<Transfer>> spare_;   ///< finished, reused by start
};

}  // namespace detail::curl
SENDGRID_BACKEND_NAMESPACE_END
