// 14 — send later, from many hosts: a "web" process queues mail in Redis and returns at once, a
// worker process sends it (sendgrid_email_sent fires there), and a third process reads back how
// each message ended (redis/queue.hpp). Each role is one run of this program; run them as three
// processes, on as many hosts as you like, against one Redis:
//
//   14_queue_web_worker_status web    --redis URL --queue NAME --keys FILE --signups N
//   14_queue_web_worker_status worker --redis URL --queue NAME
//   14_queue_web_worker_status status --redis URL --queue NAME --keys FILE
//                                     [--expect-accepted A --expect-failed F]
//
// The worker sends to SendGrid with SENDGRID_API_KEY set, and otherwise to a FakeSendgridServer
// of its own that refuses bounce@example.org. It stops once the queue stays empty for a second
// (a real worker runs until told to stop; the sendgrid-worker program does that).
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;

namespace {

struct Arguments {
    std::string role, redis = "redis://127.0.0.1:6379", queue = "example14", keys;
    int signups = 5, expect_accepted = -1, expect_failed = -1;
};

sg::RedisQueueOptions queue_named(const std::string& name) {
    sg::RedisQueueOptions options;
    options.stream = name + ":mail";
    options.group = name + ":workers";
    options.status_prefix = name + ":status:";
    return options;
}

/// The web process: a sign-up handler queues its confirmation mail and answers the request.
int web(const Arguments& args, sg::RedisMailQueue& queue) {
    std::ofstream keys(args.keys);
    for (int i = 0; i < args.signups; ++i) {
        const std::string user = i == 2 ? "bounce@example.org"  // one the fake server refuses
                                        : "user" + std::to_string(i) + "@example.com";
        sg::EmailMessage confirmation("Confirm your account", "Click the link to confirm.",
                                      "Shop <shop@example.com>", {user});
        confirmation.categories = {"signup"};
        // The key makes the hand-off idempotent: a retried request queues nothing new.
        const std::string key = queue.enqueue(confirmation, "signup-confirmation-" + user);
        keys << key << '\n';
        std::cout << "[web]    queued " << key << " and answered the request\n";
    }
    return 0;
}

/// The worker process: sends what is queued; the handlers run here.
int worker(const Arguments&, const std::shared_ptr<sg::RedisClient>& redis,
           const sg::RedisQueueOptions& names) {
    std::unique_ptr<sg::testing::FakeSendgridServer> fake;
    sg::Settings settings = sg::Settings::from_env();
    if (settings.api_key.empty()) {
        fake = std::make_unique<sg::testing::FakeSendgridServer>();
        sg::testing::Fault refuse(400);
        refuse.times = 1000;
        fake->push_fault(refuse.for_recipient("bounce@example.org"));
        settings.api_key = fake->api_key();
        settings.host_url = fake->url();
    }
    sg::ScopedConnection log = sg::sendgrid_email_sent.connect(
        [](const sg::SendgridBackend&, const sg::EmailMessage& message, bool fail_flag) {
            std::cout << "[worker] sendgrid_email_sent: " << message.to.front() << ' '
                      << (fail_flag ? "FAILED: " + message.outcome.failure_reason
                                    : "accepted as " + message.outcome.message_id)
                      << '\n';
        });
    sg::BackendOptions options;
    options.fail_silently = true;  // failures are recorded in the status, not thrown
    const auto backend = std::make_shared<const sg::SendgridBackend>(settings, options);
    sg::WorkerOptions worker_options;
    worker_options.consumer = "example-worker";
    worker_options.block = 250ms;
    sg::RedisMailWorker worker(backend, redis, names, worker_options);
    int idle_rounds = 0;
    while (idle_rounds < 4) idle_rounds = worker.run_once() == 0 ? idle_rounds + 1 : 0;
    return 0;
}

/// Anyone, any time: how did each message end?
int status(const Arguments& args, sg::RedisMailQueue& queue) {
    std::ifstream keys(args.keys);
    std::map<sg::QueuedState, int> counts;
    for (std::string key; std::getline(keys, key);) {
        const auto found = queue.status(key);
        if (!found) {
            std::cout << "[status] " << key << ": no status (never queued, or expired)\n";
            continue;
        }
        ++counts[found->state];
        std::cout << "[status] " << key << ": " << sg::to_string(found->state);
        if (!found->message_id.empty()) std::cout << ", message id " << found->message_id;
        if (!found->reason.empty()) std::cout << ", " << found->reason;
        std::cout << '\n';
    }
    if (args.expect_accepted >= 0 && (counts[sg::QueuedState::accepted] != args.expect_accepted ||
                                      counts[sg::QueuedState::failed] != args.expect_failed)) {
        std::cerr << "expected " << args.expect_accepted << " accepted and " << args.expect_failed
                  << " failed\n";
        return 1;
    }
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    Arguments args;
    if (argc > 1) args.role = argv[1];
    for (int i = 2; i + 1 < argc; i += 2) {
        const std::string name = argv[i], value = argv[i + 1];
        if (name == "--redis")
            args.redis = value;
        else if (name == "--queue")
            args.queue = value;
        else if (name == "--keys")
            args.keys = value;
        else if (name == "--signups")
            args.signups = std::atoi(value.c_str());
        else if (name == "--expect-accepted")
            args.expect_accepted = std::atoi(value.c_str());
        else if (name == "--expect-failed")
            args.expect_failed = std::atoi(value.c_str());
    }
    if (args.role != "worker" && args.keys.empty()) args.role.clear();
    try {
        auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(args.redis));
        const sg::RedisQueueOptions names = queue_named(args.queue);
        sg::RedisMailQueue queue(redis, names);
        if (args.role == "web") return web(args, queue);
        if (args.role == "worker") return worker(args, redis, names);
        if (args.role == "status") return status(args, queue);
    } catch (const std::exception& error) {
        std::cerr << error.what() << '\n';
        return 1;
    }
    std::cerr << "usage: 14_queue_web_worker_status web|worker|status --redis URL --queue NAME "
                 "[--keys FILE] [--signups N] [--expect-accepted A --expect-failed F]\n";
    return 2;
}
