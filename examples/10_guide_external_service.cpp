// 10 — the signals guide, 5 of 8: external services. Each send becomes a JSON event POSTed to
// ANALYTICS_WEBHOOK_URL, off the sending thread: the handler only queues the event (a bounded
// queue; when it is full the event is dropped and counted, never waited for), one worker posts
// them with a 5 s timeout, failures are logged and never raised, and shutdown drains the queue.
// A slow analytics service never slows email.
//
// Without ANALYTICS_WEBHOOK_URL the example runs its own collector on 127.0.0.1 that holds every
// answer until the batch of email has been sent (a service as slow as can be), refuses one event
// with a 500, and checks what it received.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;

namespace {

/// Posts JSON events to one URL from a worker thread. Thread-safe.
class AnalyticsForwarder {
  public:
    AnalyticsForwarder(std::string url, std::size_t capacity)
        : url_(std::move(url)), capacity_(capacity), http_(options()) {
        worker_ = std::thread([this] { run(); });
    }

    /// Stops taking events and waits until the queued ones were posted.
    ~AnalyticsForwarder() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stopping_ = true;
        }
        wake_.notify_one();
        worker_.join();
    }

    /// Queues an event; never blocks. Returns false (and counts it) when the queue is full.
    bool post(nlohmann::json event) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (stopping_ || queue_.size() >= capacity_) {
                ++dropped_;
                return false;
            }
            queue_.push_back(event.dump());
        }
        wake_.notify_one();
        return true;
    }

    std::size_t dropped() const {
        std::lock_guard<std::mutex> lock(mutex_);
        return dropped_;
    }

  private:
    static sg::TransportOptions options() {
        sg::TransportOptions options;
        options.timeout = 5s;  // the guide's 5 s
        return options;
    }

    void run() {
        for (;;) {
            std::string body;
            {
                std::unique_lock<std::mutex> lock(mutex_);
                wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
                if (queue_.empty()) return;  // stopping, and drained
                body = std::move(queue_.front());
                queue_.pop_front();
            }
            sg::HttpRequest request;
            request.url = url_;
            request.headers = {{"Content-Type", "application/json"}};
            request.body = std::move(body);
            const sg::HttpResponse response = http_.send(request);  // never throws for the network
            if (response.error != sg::TransportError::none || response.status >= 300) {
                std::cerr << "[analytics] event not delivered: "
                          << (response.status != 0 ? "HTTP " + std::to_string(response.status)
                                                   : response.error_message)
                          << '\n';
            }
        }
    }

    std::string url_;
    std::size_t capacity_;
    sg::CurlTransport http_;  // the library's HTTP client, reused for the analytics service
    mutable std::mutex mutex_;
    std::condition_variable wake_;
    std::deque<std::string> queue_;
    std::size_t dropped_ = 0;
    bool stopping_ = false;
    std::thread worker_;
};

/// The local analytics service: it answers nothing until `open()`, and refuses the event about
/// "refuse me".
struct Collector {
    httplib::Server server;
    std::thread thread;
    int port = 0;
    std::mutex mutex;
    std::condition_variable opened;
    bool open_ = false;
    std::vector<nlohmann::json> events;

    Collector() {
        server.Post("/events",
                    [this](const httplib::Request& request, httplib::Response& response) {
                        const auto event = nlohmann::json::parse(request.body);
                        std::unique_lock<std::mutex> lock(mutex);
                        events.push_back(event);
                        opened.wait_for(lock, 10s, [this] { return open_; });
                        response.status = event["subject"] == "refuse me" ? 500 : 204;
                    });
        port = server.bind_to_any_port("127.0.0.1");
        thread = std::thread([this] { server.listen_after_bind(); });
        while (!server.is_running()) std::this_thread::sleep_for(1ms);
    }
    ~Collector() {
        server.stop();
        thread.join();
    }
    void open() {
        std::lock_guard<std::mutex> lock(mutex);
        open_ = true;
        opened.notify_all();
    }
    std::size_t received() {
        std::lock_guard<std::mutex> lock(mutex);
        return events.size();
    }
};

}  // namespace

int main() {
    std::unique_ptr<Collector> collector;
    std::string url;
    if (const char* configured = std::getenv("ANALYTICS_WEBHOOK_URL"); configured && *configured) {
        url = configured;
    } else {
        collector = std::make_unique<Collector>();
        url = "http://127.0.0.1:" + std::to_string(collector->port) + "/events";
    }

    sg::testing::FakeSendgridServer sendgrid;
    sendgrid.push_fault(sg::testing::Fault(400).for_recipient("bounce@example.com"));
    sg::BackendOptions options;
    options.fail_silently = true;
    const sg::SendgridBackend backend(sendgrid.settings(), options);

    std::chrono::steady_clock::duration sending{};
    std::size_t dropped = 0;
    std::size_t received_while_sending = 0;
    const int count = 10;
    {
        AnalyticsForwarder analytics(url, 1000);
        // The guide's send_to_analytics_service handler: builds the event, queues it, returns.
        sg::ScopedConnection forwarding = sg::sendgrid_email_sent.connect(
            "send_to_analytics_service",
            [&](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
                analytics.post({{"event", "email_sent"},
                                {"success", !fail_flag},
                                {"subject", message.subject},
                                {"recipients", message.recipients()},
                                {"message_id", message.outcome.message_id},
                                {"status", sg::to_string(message.outcome.status)},
                                {"template_id", message.template_id},
                                {"categories", message.categories},
                                {"timestamp", static_cast<std::int64_t>(std::time(nullptr))}});
            });
        std::vector<sg::EmailMessage> batch;
        for (int i = 0; i < count - 2; ++i) {
            batch.emplace_back("Order " + std::to_string(i), "Shipped.", "shop@example.com",
                               std::vector<std::string>{"jane@example.com"});
        }
        batch.emplace_back("Bounced", "Hi", "shop@example.com",
                           std::vector<std::string>{"bounce@example.com"});
        batch.emplace_back("refuse me", "Hi", "shop@example.com",
                           std::vector<std::string>{"bob@example.com"});
        const auto started = std::chrono::steady_clock::now();
        backend.send_messages(batch);
        sending = std::chrono::steady_clock::now() - started;
        dropped = analytics.dropped();
        if (collector) {
            // The batch is sent although the service has not answered a single event.
            received_while_sending = collector->received();
            collector->open();
        }
    }  // the forwarder drains here: every queued event is posted before it is gone

    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(sending).count();
    std::cout << count << " emails sent in " << ms << " ms while the analytics service had "
              << "answered no event; " << dropped << " events dropped\n";
    if (!collector) return 0;
    std::size_t failures_reported = 0;
    std::size_t with_ids = 0;
    for (const auto& event : collector->events) {
        if (!event["success"].get<bool>()) ++failures_reported;
        if (!event["message_id"].get<std::string>().empty()) ++with_ids;
    }
    // The worker holds one event at the service while the batch is sent; nothing was answered.
    const bool ok = collector->events.size() == static_cast<std::size_t>(count) &&
                    failures_reported == 1 && with_ids == count - 1 && dropped == 0 &&
                    received_while_sending <= 1;
    std::cout << collector->events.size() << " events received by the collector"
              << (ok ? ", as expected\n" : ", NOT as expected\n");
    return ok ? 0 : 1;
}
