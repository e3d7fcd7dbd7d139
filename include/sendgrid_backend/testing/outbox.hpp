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
#include "sendgrid_backend/detail/json/parse.hpp"
#include "sendgrid_backend/testing/sent_mail.hpp"
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
            index = seen_++;
            records_.push_back(Record{request, index, 0, ""});
        }
        HttpResponse response = responder_ ? responder_(request, index) : accepted(index);
        std::lock_guard<std::mutex> lock(mutex_);
        // Found by index: clear() may have run meanwhile.
        for (auto it = records_.rbegin(); it != records_.rend(); ++it) {
            if (it->index != index) continue;
            it->status = response.status;
            it->message_id = std::string(response.header("X-Message-Id"));
            break;
        }
        return response;
    }

    /// The JSON payload of every request so far, in the order they were sent.
    std::vector<nlohmann::json> outbox() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<nlohmann::json> payloads;
        payloads.reserve(records_.size());
        for (const auto& record : records_) {
            payloads.push_back(sendgrid_backend::detail::parse_json_text(record.request.body));
        }
        return payloads;
    }

    /// The mail answered 2xx, in the order it was sent, for assertions (see sent_mail.hpp).
    SentMails sent() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<SentMail> mails;
        for (const auto& record : records_) {
            if (record.status < 200 || record.status >= 300) continue;
            mails.push_back(SentMail{sendgrid_backend::detail::parse_json_text(record.request.body),
                                     record.request.headers, record.message_id});
        }
        return SentMails(std::move(mails));
    }

    /// Every request as sent, headers included (the Authorization header holds the key).
    std::vector<HttpRequest> requests() const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::vector<HttpRequest> requests;
        requests.reserve(records_.size());
        for (const auto& record : records_) requests.push_back(record.request);
        return requests;
    }

    std::size_t size() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return records_.size();
    }

    /// Forgets the requests kept so far (indexes keep counting).
    void clear() {
        std::lock_guard<std::mutex> lock(mutex_);
        records_.clear();
    }

    /// The default answer: 202 Accepted with X-Message-Id "outbox-<index>".
    static HttpResponse accepted(std::size_t index) {
        HttpResponse response;
        response.status = 202;
        response.headers = {{"X-Message-Id", "outbox-" + std::to_string(index)}};
        return response;
    }

  private:
    struct Record {
        HttpRequest request;
        std::size_t index;
        int status;  ///< the answer's status; 0 while it is being answered
        std::string message_id;
    };

    Responder responder_;
    mutable std::mutex mutex_;
    std::vector<Record> records_;
    std::size_t seen_ = 0;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
