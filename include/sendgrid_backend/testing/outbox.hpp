#pragma once

/// @file
/// `testing::OutboxTransport`: an in-memory transport for users' own tests, like Django's
/// `mail.outbox`. Nothing leaves the process; every request is kept and answered 202 with a
/// fresh X-Message-Id, or as a responder function says.
///
/// @code
/// auto outbox = std::make_shared<sendgrid_backend::testing::OutboxTransport>();
/// sendgrid_backend::BackendOptions options;
/// options.transport = outbox;
/// sendgrid_backend::SendgridBackend backend(settings, options);
/// backend.send_message(message);
/// assert(outbox->outbox().at(0)["subject"] == "Welcome");
/// @endcode

#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// Thread-safe in-memory transport. See the file comment.
class OutboxTransport : public Transport {
  public:
    /// Answers a request; `index` counts the requests this transport has seen, from 0.
    using Responder = std::function<HttpResponse(const HttpRequest& request, std::size_t index)>;

    explicit OutboxTransport(Responder responder = nullptr) : responder_(std::move(responder)) {}

    HttpResponse send(const HttpRequest& request) override {
        std::size_t index = 0;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            index = requests_.size();
            requests_.push_back(request);
        }
        return responder_ ? responder_(request, index) : accepted(index);
    }

    /// The JSON payload of every request so far, in the order they were sent.
    std::vector<nlohmann::json> outbox() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<nlohmann::json> payloads;
        payloads.reserve(requests_.size());
        for (const auto& request : requests_) {
            payloads.push_back(nlohmann::json::parse(request.body, nullptr, false));
        }
        return payloads;
    }

    /// Every request as sent, headers included (the Authorization header holds the key).
    std::vector<HttpRequest> requests() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_;
    }

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return requests_.size();
    }

    void clear() {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.clear();
    }

    /// The default answer: 202 Accepted with X-Message-Id "outbox-<index>".
    static HttpResponse accepted(std::size_t index) {
        HttpResponse response;
        response.status = 202;
        response.headers = {{"X-Message-Id", "outbox-" + std::to_string(index)}};
        return response;
    }

  private:
    Responder responder_;
    mutable std::mutex mutex_;
    std::vector<HttpRequest> requests_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
