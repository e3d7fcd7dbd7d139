// RedisQueueMetrics against the fixture's redis-server: a worker killed while holding entries,
// then a live one taking them over, each step scraped over HTTP from prometheus-cpp's Exposer
// with exact values and passed through `promtool check metrics`; the oldest pending age after a
// partial claim; a scrape while Redis is down; and sendgrid-worker --metrics scraped as a
// process.
#include <sendgrid_backend/prometheus.hpp>
#include <sendgrid_backend/redis/prometheus.hpp>
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <httplib.h>
#include <prometheus/exposer.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/prometheus_text.hpp"
#include "support/redis_fixture.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace queue_metrics_test {

using namespace std::chrono_literals;
using test_support::fresh_queue;
using test_support::OwnRedis;
using test_support::promtool_findings;
using test_support::redis_fixture_url;
using test_support::samples_of;
namespace sg = sendgrid_backend;

extern char** environ;

namespace {

std::shared_ptr<sg::RedisClient> redis(const std::string& url = redis_fixture_url()) {
    sg::RedisOptions options = sg::RedisOptions::from_url(url);
    options.reconnect_for = 0ms;  // a scrape of a Redis that is down answers at once
    return std::make_shared<sg::RedisClient>(options);
}

sg::EmailMessage mail(int i) {
    return sg::EmailMessage("m" + std::to_string(i), "Body", "shop@example.com",
                            {"user" + std::to_string(i) + "@example.com"});
}

/// The series of `text` whose name starts with `prefix`.
std::map<std::string, double> family(const std::string& text, const std::string& prefix) {
    std::map<std::string, double> found;
    for (const auto& [series, value] : samples_of(text)) {
        if (series.rfind(prefix, 0) == 0) found[series] = value;
    }
    return found;
}

/// GET /metrics from `port` on loopback; fails the test unless it answers 200.
std::string scrape(int port) {
    httplib::Client client("127.0.0.1", port);
    client.set_read_timeout(5, 0);
    const auto answer = client.Get("/metrics");
    REQUIRE(answer);
    REQUIRE(answer->status == 200);
    return answer->body;
}

/// The queue's series in a scrape with the constant label queue="q", by short name.
struct QueueScrape {
    std::map<std::string, double> series;
    explicit QueueScrape(const std::string& text) : series(family(text, "sendgrid_queue_")) {}
    double at(const std::string& name) const {
        const auto found = series.find(name);
        INFO(name);
        REQUIRE(found != series.end());
        return found->second;
    }
    double state(const char* state) const {
        return at(std::string("sendgrid_queue_messages_total{queue=\"q\",state=\"") + state +
                  "\"}");
    }
};

/// A backend for the fake server that gives up on a send after one try, so that its longest
/// send is the timeout: ample for a loopback answer on a busy machine under a sanitizer, and
/// shorter than `visibility_timeout`.
std::shared_ptr<sg::SendgridBackend> quick_backend(const sg::testing::FakeSendgridServer& server) {
    sg::Settings settings = server.settings();
    settings.timeout = 5s;
    settings.retry.max_tries = 1;
    sg::BackendOptions options;
    options.fail_silently = true;
    return std::make_shared<sg::SendgridBackend>(settings, options);
}

constexpr std::chrono::milliseconds visibility_timeout = 10s;

/// Makes the entries `read` (an XREADGROUP answer) look delivered to `consumer` `idle` ago, as
/// if it had held them that long (XCLAIM's IDLE; JUSTID leaves their delivery counts alone).
void backdate(sg::RedisClient& client, const sg::RedisQueueOptions& names,
              const sg::RedisValue& read, const std::string& consumer,
              std::chrono::milliseconds idle) {
    const auto& entries = read.elements.at(0).elements.at(1).elements;
    std::vector<std::string> command{"XCLAIM", names.stream, names.group, consumer, "0"};
    for (const sg::RedisValue& entry : entries) command.push_back(entry.elements.at(0).text);
    command.insert(command.end(), {"IDLE", std::to_string(idle.count()), "JUSTID"});
    REQUIRE(client.command(command).elements.size() == entries.size());
}

}  // namespace

TEST_CASE("a killed worker's entries, then a live worker taking them: exact values over HTTP",
          "[queue_metrics][redis]") {
    auto client = redis();
    const auto names = fresh_queue("killed");
    sg::RedisMailQueue queue(client, names);
    for (int i = 0; i < 5; ++i) CHECK(queue.enqueue_once(mail(i), "k" + std::to_string(i)).second);
    CHECK_FALSE(queue.enqueue_once(mail(0), "k0").second);  // queued once, counted once

    auto metrics = std::make_shared<sg::RedisQueueMetrics>(
        client, names, std::vector<std::pair<std::string, std::string>>{{"queue", "q"}});
    prometheus::Exposer exposer("127.0.0.1:0");
    exposer.RegisterCollectable(metrics);
    REQUIRE(exposer.GetListeningPorts().size() == 1);
    const int port = exposer.GetListeningPorts()[0];

    // Before any worker: no group yet, everything waits.
    {
        const std::string text = scrape(port);
        CHECK(promtool_findings(text).empty());
        const QueueScrape before(text);
        CHECK(before.at("sendgrid_queue_up{queue=\"q\"}") == 1);
        CHECK(before.at("sendgrid_queue_waiting_entries{queue=\"q\"}") == 5);
        CHECK(before.at("sendgrid_queue_oldest_pending_age_seconds{queue=\"q\"}") == 0);
        CHECK(before.state("queued") == 5);
    }

    // A worker takes three entries, marks the third "sending" (through the queue's own script,
    // as a worker does) and is killed before it acknowledges anything.
    client->command({"XGROUP", "CREATE", names.stream, names.group, "0", "MKSTREAM"});
    const sg::RedisValue taken = client->command({"XREADGROUP", "GROUP", names.group, "dead-worker",
                                                  "COUNT", "3", "STREAMS", names.stream, ">"});
    REQUIRE(taken.elements.size() == 1);
    REQUIRE(taken.elements[0].elements.at(1).elements.size() == 3);
    const std::vector<std::string> to_sending{"2",
                                              names.status_prefix + "k2",
                                              names.state_counts_key(),
                                              "queued",
                                              "",
                                              "3600",
                                              "sending",
                                              "dead-worker",
                                              "started_at",
                                              "0"};
    auto& transition = sg::detail::stored_transition_script();
    CHECK(transition.run(*client, {to_sending}).at(0).integer == 1);
    // Its call retried after a lost answer moves nothing, and counts nothing, again.
    CHECK(transition.run(*client, {to_sending}).at(0).integer == 1);
    // Held past the visibility timeout, without waiting for it.
    const std::chrono::milliseconds held = visibility_timeout + 1s;
    backdate(*client, names, taken, "dead-worker", held);

    {
        const std::string text = scrape(port);
        INFO(text);
        CHECK(promtool_findings(text).empty());
        const QueueScrape dead(text);
        CHECK(dead.at("sendgrid_queue_up{queue=\"q\"}") == 1);
        CHECK(dead.at("sendgrid_queue_waiting_entries{queue=\"q\"}") == 2);
        CHECK(dead.at("sendgrid_queue_pending_entries{queue=\"q\",consumer=\"dead-worker\"}") == 3);
        CHECK(dead.at("sendgrid_queue_oldest_pending_age_seconds{queue=\"q\"}") >=
              held.count() / 1000.0);
        CHECK(dead.state("queued") == 5);
        CHECK(dead.state("sending") == 1);
        CHECK(dead.state("accepted") == 0);
        CHECK(dead.state("failed") == 0);
        CHECK(dead.state("unknown") == 0);
    }

    // A live worker claims them: the two still "queued" it sends, the "sending" one it reports
    // unknown without sending; then it reads the two nobody took.
    sg::testing::FakeSendgridServer server;
    sg::WorkerOptions options;
    options.consumer = "live-worker";
    options.visibility_timeout = visibility_timeout;
    options.block = 50ms;
    sg::RedisMailWorker live(quick_backend(server), client, names, options);
    CHECK(live.run_once() == 3);
    CHECK(live.run_once() == 2);
    CHECK(live.run_once() == 0);
    CHECK(server.received_count() == 4);  // k0, k1, k3, k4; never k2

    {
        const std::string text = scrape(port);
        INFO(text);
        CHECK(promtool_findings(text).empty());
        const QueueScrape after(text);
        CHECK(after.at("sendgrid_queue_up{queue=\"q\"}") == 1);
        CHECK(after.at("sendgrid_queue_waiting_entries{queue=\"q\"}") == 0);
        CHECK(family(text, "sendgrid_queue_pending_entries").empty());  // no consumer holds any
        CHECK(after.at("sendgrid_queue_oldest_pending_age_seconds{queue=\"q\"}") == 0);
        CHECK(after.state("queued") == 5);
        CHECK(after.state("sending") == 5);  // the dead worker's one, the live worker's four
        CHECK(after.state("accepted") == 4);
        CHECK(after.state("failed") == 0);
        CHECK(after.state("unknown") == 1);
        CHECK(text.find("# HELP sendgrid_queue_pending_entries ") != std::string::npos);
    }
}

TEST_CASE("the oldest pending age counts what a dead worker still holds after a partial claim",
          "[queue_metrics][redis]") {
    auto client = redis();
    const auto names = fresh_queue("partial");
    sg::RedisMailQueue queue(client, names);
    for (int i = 0; i < 3; ++i) queue.enqueue(mail(i));
    client->command({"XGROUP", "CREATE", names.stream, names.group, "0", "MKSTREAM"});
    const sg::RedisValue taken = client->command({"XREADGROUP", "GROUP", names.group, "dead-worker",
                                                  "COUNT", "3", "STREAMS", names.stream, ">"});
    REQUIRE(taken.elements.size() == 1);
    REQUIRE(taken.elements[0].elements.at(1).elements.size() == 3);
    const std::chrono::milliseconds held = 400ms;
    std::this_thread::sleep_for(held);
    // A worker's XAUTOCLAIM with room for one takes the lowest ID and resets its idle time.
    const sg::RedisValue claimed =
        client->command({"XAUTOCLAIM", names.stream, names.group, "live-worker", "0", "0-0",
                         "COUNT", "1", "JUSTID"});
    REQUIRE(claimed.elements.size() >= 2);
    REQUIRE(claimed.elements[1].elements.size() == 1);
    // The group's lowest-ID pending entry is now the fresh one (what the metric read before).
    const sg::RedisValue lowest =
        client->command({"XPENDING", names.stream, names.group, "-", "+", "1"});
    REQUIRE(lowest.elements.size() == 1);
    CHECK(lowest.elements[0].elements.at(1).text == "live-worker");

    const std::string text = sg::RedisQueueMetrics(client, names).text();
    INFO(text);
    const auto samples = samples_of(text);
    CHECK(samples.at("sendgrid_queue_up") == 1);
    CHECK(samples.at("sendgrid_queue_pending_entries{consumer=\"dead-worker\"}") == 2);
    CHECK(samples.at("sendgrid_queue_pending_entries{consumer=\"live-worker\"}") == 1);
    CHECK(samples.at("sendgrid_queue_oldest_pending_age_seconds") >= held.count() / 1000.0);
    CHECK(promtool_findings(text).empty());
}

TEST_CASE("labels and names that would clash are refused", "[queue_metrics][redis]") {
    auto client = redis();
    using Labels = std::vector<std::pair<std::string, std::string>>;
    for (const char* name : {"state", "consumer", "__name", "9lives", ""}) {
        INFO(name);
        CHECK_THROWS_AS(sg::RedisQueueMetrics(client, fresh_queue("labels"), Labels{{name, "x"}}),
                        sg::ImproperlyConfigured);
    }
    CHECK_THROWS_AS(sg::RedisQueueMetrics(nullptr), sg::ImproperlyConfigured);
    // A status prefix that starts the counter key: a message's status could overwrite it.
    sg::RedisQueueOptions names = fresh_queue("clash");
    names.status_prefix = names.stream + ":";
    try {
        sg::RedisMailQueue queue(client, names);
        FAIL("a status prefix starting the counter key was accepted");
    } catch (const sg::ImproperlyConfigured& error) {
        CHECK(error.setting() == "RedisQueueOptions::status_prefix");
        CHECK(std::string(error.what()).find(":state_counts") != std::string::npos);
    }
    names.status_prefix = "";
    CHECK_THROWS_AS(sg::RedisQueueMetrics(client, names), sg::ImproperlyConfigured);
}

TEST_CASE("a scrape while Redis is down says sendgrid_queue_up 0 and throws nothing",
          "[queue_metrics][redis]") {
    const OwnRedis own;
    const sg::RedisQueueMetrics metrics(redis(own.url()), fresh_queue("down"));
    CHECK(metrics.text().find("\nsendgrid_queue_up 1\n") != std::string::npos);

    REQUIRE(own.run("stop") == 0);
    std::vector<prometheus::MetricFamily> families;
    CHECK_NOTHROW(families = metrics.Collect());
    REQUIRE(families.size() == 1);  // the others are left out, not reported as 0
    CHECK(families[0].name == "sendgrid_queue_up");
    REQUIRE(families[0].metric.size() == 1);
    CHECK(families[0].metric[0].gauge.value == 0);
    const std::string text = metrics.text();  // again: now no connection can be made at all
    CHECK(text.find("\nsendgrid_queue_up 0\n") != std::string::npos);
    CHECK(promtool_findings(text).empty());

    REQUIRE(own.run("restart") == 0);
    CHECK(metrics.text().find("\nsendgrid_queue_up 1\n") != std::string::npos);
}

TEST_CASE("sendgrid-worker --metrics serves its sends and its queue", "[queue_metrics][redis]") {
    sg::testing::FakeSendgridServer server;
    const auto names = fresh_queue("program");
    sg::RedisMailQueue queue(redis(), names);
    for (int i = 0; i < 3; ++i) queue.enqueue(mail(i));

    test_support::Running worker(SENDGRID_BACKEND_WORKER_PROGRAM,
                                 {"--redis", redis_fixture_url(), "--stream", names.stream,
                                  "--group", names.group, "--status-prefix", names.status_prefix,
                                  "--consumer", "metrics-worker", "--metrics", "127.0.0.1:0"},
                                 {"SENDGRID_API_KEY=" + server.api_key(),
                                  "SENDGRID_HOST_URL=" + server.url(), "SENDGRID_TIMEOUT=5"});
    // Its URL on stderr, port 0 having become a free one.
    const std::string marker = "sendgrid-worker: metrics on http://127.0.0.1:";
    int port = 0;
    for (auto until = std::chrono::steady_clock::now() + 10s;
         port == 0 && std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(10ms)) {
        const std::string log = worker.err();
        const std::size_t at = log.find(marker);
        if (at != std::string::npos && log.find("/metrics\n", at) != std::string::npos) {
            port = std::stoi(log.substr(at + marker.size()));
        }
    }
    INFO(worker.err());
    REQUIRE(port > 0);

    REQUIRE(server.wait_for_requests(3, 10s));
    std::string text;
    for (auto until = std::chrono::steady_clock::now() + 10s;
         std::chrono::steady_clock::now() < until; std::this_thread::sleep_for(20ms)) {
        text = scrape(port);
        const auto samples = samples_of(text);
        // Both counts: a scrape reads the process's counters and the queue's (from Redis) one
        // after the other, so one scrape can fall between the last send and its state's move.
        const auto accepted = samples.find("sendgrid_queue_messages_total{state=\"accepted\"}");
        const auto sent = samples.find("sendgrid_messages_total{outcome=\"accepted\"}");
        if (accepted != samples.end() && accepted->second == 3 && sent != samples.end() &&
            sent->second == 3) {
            break;
        }
    }
    INFO(text);
    const auto samples = samples_of(text);
    CHECK(samples.at("sendgrid_queue_up") == 1);
    CHECK(samples.at("sendgrid_queue_messages_total{state=\"queued\"}") == 3);
    CHECK(samples.at("sendgrid_queue_messages_total{state=\"accepted\"}") == 3);
    CHECK(samples.at("sendgrid_queue_waiting_entries") == 0);
    CHECK(samples.at("sendgrid_messages_total{outcome=\"accepted\"}") == 3);  // its own sends
    CHECK(samples.at("sendgrid_requests_total{status=\"202\"}") == 3);
    CHECK(server.received_count() == 3);
    CHECK(promtool_findings(text).empty());
    CHECK(worker.stop() == 0);
}

}  // namespace queue_metrics_test
