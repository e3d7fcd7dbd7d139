#pragma once

// What the queue's tests share: a fake SendGrid with a backend that sends to it (settings a 15 s
// visibility timeout covers), a worker that reads quickly, and what a worker that died mid-round
// leaves behind.

#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>

#include <chrono>
#include <cstddef>
#include <map>
#include <memory>
#include <string>
#include <thread>

namespace test_support {

/// A fake SendGrid and a backend (fail_silently) sending to it.
struct QueueSender {
    sendgrid_backend::testing::FakeSendgridServer server;
    std::shared_ptr<sendgrid_backend::SendgridBackend> backend;

    explicit QueueSender(std::size_t in_flight = 8) {
        sendgrid_backend::Settings settings = server.settings();
        settings.max_in_flight = in_flight;
        settings.timeout = std::chrono::seconds(2);
        // A send takes at most 4 x 2 s + 3 x 1 s: less than quick_worker's visibility timeout.
        settings.retry.max_backoff = std::chrono::seconds(1);
        settings.retry.max_retry_after = std::chrono::seconds(1);
        sendgrid_backend::BackendOptions options;
        options.fail_silently = true;
        backend = std::make_shared<sendgrid_backend::SendgridBackend>(settings, options);
    }

    /// Requests (personalizations) that reached the server, by queue key.
    std::map<std::string, int> reached() const {
        std::map<std::string, int> by_key;
        for (const auto& request : server.received()) {
            for (const auto& p : request.payload["personalizations"]) {
                ++by_key[p["custom_args"].value("sendgrid_backend_queue_key", "")];
            }
        }
        return by_key;
    }
    /// How many requests reached the server with queue key `key`.
    int requests_for(const std::string& key) const {
        const auto by_key = reached();
        const auto found = by_key.find(key);
        return found == by_key.end() ? 0 : found->second;
    }
};

/// A worker named `name` that reads for 50 ms at a time, with a visibility timeout longer than
/// a QueueSender's sends can take.
inline sendgrid_backend::WorkerOptions quick_worker(const std::string& name) {
    sendgrid_backend::WorkerOptions options;
    options.consumer = name;
    options.visibility_timeout = std::chrono::seconds(15);
    options.block = std::chrono::milliseconds(50);
    return options;
}

/// What a worker leaves when it dies mid-round: it took every queued entry (as consumer "dead")
/// and had marked the one under `sending_key` "sending". Returns once a 50 ms visibility timeout
/// has passed.
inline void worker_died_after_taking(sendgrid_backend::RedisClient& client,
                                     const sendgrid_backend::RedisQueueOptions& names,
                                     const std::string& sending_key) {
    client.command({"XGROUP", "CREATE", names.stream, names.group, "0", "MKSTREAM"});
    client.command({"XREADGROUP", "GROUP", names.group, "dead", "STREAMS", names.stream, ">"});
    client.command(
        {"HSET", names.status_prefix + sending_key, "state", "sending", "worker", "dead"});
    std::this_thread::sleep_for(std::chrono::milliseconds(60));
}

}  // namespace test_support
