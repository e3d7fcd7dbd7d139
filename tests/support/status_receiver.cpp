// One Event Webhook receiver process with its statuses in Redis, for
// tests/test_status_redis_receivers.cpp, which runs two of them at once on the same signed
// batches against one redis-server:
//
//   status_receiver --redis URL --prefix PREFIX --public-key KEY --seed N [--go FILE] BATCH...
//
// It makes a RedisStatusStore (under PREFIX) + StatusTracker + EventWebhook (verifying with KEY,
// base64 DER), waits until FILE exists (so that both processes start applying together), then
// hands each BATCH file to EventWebhook::handle once, in an order shuffled by N. A batch file is
// what SendGrid would send: the signature on the first line, the timestamp on the second, then
// the body (the rest of the file, byte for byte).
//
// It prints one line per sendgrid_status_changed signal it saw:
//   signal KEY RECIPIENT BEFORE_STATE BEFORE_ENGAGEMENT AFTER_STATE AFTER_ENGAGEMENT
// (states as numbers, RECIPIENT "-" for the send), then one line of totals:
//   totals BATCHES EVENTS APPLIED SIGNALS DUPLICATES
// (EVENTS: events in the batches; APPLIED: the sum of WebhookResult::statuses_applied;
// DUPLICATES: events dropped by sg_event_id). Exits 0, or 1 when a batch was refused or
// anything failed (the reason on stderr), 2 for a wrong command line.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <fstream>
#include <memory>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/status/tracker.hpp>
#include <sendgrid_backend/webhook.hpp>

namespace sg = sendgrid_backend;

namespace {

struct Batch {
    std::string path;
    std::string signature;
    std::string timestamp;
    std::string body;
};

Batch read_batch(const std::string& path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) throw std::runtime_error("cannot read " + path);
    Batch batch;
    batch.path = path;
    if (!std::getline(file, batch.signature) || !std::getline(file, batch.timestamp)) {
        throw std::runtime_error(path + ": no signature and timestamp lines");
    }
    std::ostringstream body;
    body << file.rdbuf();
    batch.body = body.str();
    return batch;
}

bool file_exists(const std::string& path) { return std::ifstream(path).good(); }

int usage() {
    std::fputs(
        "usage: status_receiver --redis URL --prefix PREFIX --public-key KEY --seed N "
        "[--go FILE] BATCH...\n",
        stderr);
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    std::string url, prefix, public_key, go;
    std::uint64_t seed = 0;
    std::vector<std::string> paths;
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--redis" && has_value) {
            url = argv[++i];
        } else if (arg == "--prefix" && has_value) {
            prefix = argv[++i];
        } else if (arg == "--public-key" && has_value) {
            public_key = argv[++i];
        } else if (arg == "--seed" && has_value) {
            seed = std::stoull(argv[++i]);
        } else if (arg == "--go" && has_value) {
            go = argv[++i];
        } else if (arg.rfind("--", 0) == 0) {
            return usage();
        } else {
            paths.push_back(arg);
        }
    }
    if (url.empty() || prefix.empty() || public_key.empty() || paths.empty()) return usage();

    try {
        std::vector<Batch> batches;
        for (const std::string& path : paths) batches.push_back(read_batch(path));
        std::mt19937_64 random(seed);
        std::shuffle(batches.begin(), batches.end(), random);

        auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(url));
        sg::RedisStatusStoreOptions store_options;
        store_options.prefix = prefix;
        sg::StatusTrackerOptions tracker_options;
        tracker_options.store = std::make_shared<sg::RedisStatusStore>(redis, store_options);
        sg::WebhookOptions webhook_options;
        webhook_options.public_key = public_key;
        webhook_options.tolerance.reset();  // batches signed once, offered by both processes
        webhook_options.statuses = std::make_shared<sg::StatusTracker>(tracker_options);
        const sg::EventWebhook webhook(webhook_options);

        std::string lines;
        std::size_t signals = 0;
        sg::ScopedConnection connection = sg::sendgrid_status_changed.connect(
            [&](const std::string& key, const std::string& recipient,
                const sg::RecipientState& before, const sg::RecipientState& after,
                const sg::StatusEvent&) {
                ++signals;
                lines += "signal " + key + " " + (recipient.empty() ? "-" : recipient) + " " +
                         std::to_string(static_cast<int>(before.state)) + " " +
                         std::to_string(before.engagement) + " " +
                         std::to_string(static_cast<int>(after.state)) + " " +
                         std::to_string(after.engagement) + "\n";
            });

        if (!go.empty()) {
            const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(15);
            while (!file_exists(go)) {
                if (std::chrono::steady_clock::now() > give_up) {
                    std::fprintf(stderr, "status_receiver: %s never came\n", go.c_str());
                    return 1;
                }
                std::this_thread::sleep_for(std::chrono::microseconds(200));
            }
        }

        std::size_t events = 0, applied = 0, duplicates = 0;
        for (const Batch& batch : batches) {
            const sg::HttpHeaders headers{
                {std::string(sg::webhook_signature_header), batch.signature},
                {std::string(sg::webhook_timestamp_header), batch.timestamp}};
            const sg::WebhookResult result = webhook.handle(headers, batch.body);
            if (!result.accepted() || !result.verified) {
                std::fprintf(stderr, "status_receiver: %s refused (%d): %s\n", batch.path.c_str(),
                             result.http_status, result.refusal_reason.c_str());
                return 1;
            }
            events += result.events.size() + result.duplicates;
            applied += result.statuses_applied;
            duplicates += result.duplicates;
        }
        lines += "totals " + std::to_string(batches.size()) + " " + std::to_string(events) + " " +
                 std::to_string(applied) + " " + std::to_string(signals) + " " +
                 std::to_string(duplicates) + "\n";
        std::fputs(lines.c_str(), stdout);
        return std::fflush(stdout) == 0 ? 0 : 1;
    } catch (const std::exception& error) {
        std::fprintf(stderr, "status_receiver: %s\n", error.what());
        return 1;
    }
}
