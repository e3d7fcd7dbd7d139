// The Redis mail queue against the fixture's redis-server and FakeSendgridServer, counted where
// the messages land: at the server (by the queue key each one carries in its custom_args) and
// in Redis (statuses, what is left in the stream).
//  - in one process: a message travels whole; a claimed "sending" entry is reported unknown and
//    not sent again; a claimed "queued" one is sent; enqueue never queues twice; max_length;
//  - across processes: 1 producer, 2 sendgrid-worker processes, 1000 messages, kill -9 of one
//    worker mid-run: each message accepted exactly once at the server or reported unknown;
//    none lost, none sent twice;
//  - a Redis restart while a producer enqueues loses nothing that was acknowledged; a worker
//    running when Redis loses its data sends what is queued after.
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include "catch.hpp"
#include "support/cutting_proxy.hpp"
#include "support/queue_fixture.hpp"
#include "support/redis_fixture.hpp"

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;
using test_support::fresh_queue;
using test_support::quick_worker;
using test_support::worker_died_after_taking;
using Sender = test_support::QueueSender;
using test_support::OwnRedis;
using test_support::redis_fixture_url;

extern char** environ;

namespace {

sg::BackendOptions silent() {
    sg::BackendOptions options;
    options.fail_silently = true;
    return options;
}

std::shared_ptr<sg::RedisClient> redis() {
    return std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_fixture_url()));
}

sg::EmailMessage mail(int i) {
    return sg::EmailMessage("m" + std::to_string(i), "Body", "shop@example.com",
                            {"user" + std::to_string(i) + "@example.com"});
}

/// A worker that claims what a dead one left after 50 ms.
sg::WorkerOptions heir_options(const std::string& name) {
    sg::WorkerOptions options = quick_worker(name);
    options.visibility_timeout = 50ms;
    return options;
}

/// Sender's backend, giving up on a send after 10 ms and one try, so that a 50 ms visibility
/// timeout is long enough.
std::shared_ptr<sg::SendgridBackend> quick_backend(const Sender& sender) {
    sg::Settings settings = sender.backend->settings();
    settings.timeout = 10ms;
    settings.retry.max_tries = 1;
    return std::make_shared<sg::SendgridBackend>(settings, silent());
}

}  // namespace

TEST_CASE("a queued message travels whole and its status says how it ended", "[queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("whole");
    sg::RedisMailQueue queue(client, names);
    sg::EmailMessage message = mail(1);
    message.attach("invoice.pdf", std::string("%PDF\x00\xff", 6), "application/pdf");
    message.categories = {"receipts"};
    const std::string key = queue.enqueue(message);
    CHECK(key.size() == 32);
    REQUIRE(queue.status(key).has_value());
    CHECK(queue.status(key)->state == sg::QueuedState::queued);

    int emissions = 0;
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++emissions; });
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("w1"));
    CHECK(worker.run_once() == 1);
    CHECK(emissions == 1);
    const auto status = queue.status(key);
    REQUIRE(status.has_value());
    CHECK(status->state == sg::QueuedState::accepted);
    CHECK(status->worker == "w1");
    REQUIRE(sender.server.received_count() == 1);
    const auto payload = sender.server.received()[0].payload;
    CHECK(payload["personalizations"][0]["custom_args"]["sendgrid_backend_queue_key"] == key);
    CHECK(status->message_id == sender.server.received()[0].message_id);
    CHECK(payload["attachments"][0]["content"] ==
          sg::detail::base64_encode(std::string("%PDF\x00\xff", 6)));
    CHECK(client->command({"XLEN", names.stream}).integer == 0);  // acknowledged and deleted
    CHECK(worker.run_once() == 0);
}

TEST_CASE("with a status tracker, one record runs from queued to accepted, under the queue key",
          "[queue][redis][status]") {
    Sender sender;
    auto client = redis();
    auto names = fresh_queue("tracked");
    sg::RedisStatusStoreOptions store_options;
    store_options.prefix = names.stream + ":statuses:";
    sg::StatusTrackerOptions tracker_options;
    tracker_options.store = std::make_shared<sg::RedisStatusStore>(client, store_options);
    auto tracker = std::make_shared<sg::StatusTracker>(tracker_options);
    names.statuses = tracker;
    sg::BackendOptions backend_options = silent();
    backend_options.statuses = tracker;
    auto backend =
        std::make_shared<sg::SendgridBackend>(sender.backend->settings(), backend_options);

    std::vector<std::string> changes;
    sg::ScopedConnection log = sg::sendgrid_status_changed.connect(
        [&](const std::string&, const std::string& recipient, const sg::RecipientState& before,
            const sg::RecipientState& after, const sg::StatusEvent&) {
            changes.push_back(recipient + ":" + sg::to_string(before.state) + ">" +
                              sg::to_string(after.state));
        });
    sg::RedisMailQueue queue(client, names);
    const std::string key = queue.enqueue(mail(1));
    CHECK(tracker->status(key)->send.state == sg::DeliveryState::queued);
    sg::RedisMailWorker worker(backend, client, names, quick_worker("tracked"));
    CHECK(worker.run_once() == 1);

    const auto status = tracker->status(key);
    REQUIRE(status);
    CHECK(status->send.state == sg::DeliveryState::accepted);
    CHECK(status->send.message_id == sender.server.received().at(0).message_id);
    REQUIRE(status->recipients.size() == 1);
    CHECK(status->recipients[0].email == "user1@example.com");
    CHECK(status->recipients[0].state == sg::DeliveryState::accepted);
    CHECK(changes == std::vector<std::string>{":none>queued", ":queued>sending",
                                              ":sending>accepted",
                                              "user1@example.com:none>accepted"});
    // The request carried the queue key as the tracking key too.
    const auto payload = sender.server.received().at(0).payload;
    CHECK(payload["personalizations"][0]["custom_args"]["sendgrid_backend_key"] == key);

    // A message a dead worker may have sent is recorded unknown under its key.
    const std::string started = queue.enqueue(mail(2));
    auto claimed_names = names;
    worker_died_after_taking(*client, claimed_names, started);
    auto quick_settings = quick_backend(sender)->settings();
    auto quick = std::make_shared<sg::SendgridBackend>(quick_settings, backend_options);
    sg::RedisMailWorker heir(quick, client, names, heir_options("tracked-heir"));
    CHECK(heir.run_once() == 1);
    CHECK(tracker->status(started)->send.state == sg::DeliveryState::unknown);
    CHECK(sender.reached().count(started) == 0);
}

TEST_CASE("a worker refuses a tracker and a backend that name different tracking args",
          "[queue][redis][status]") {
    Sender sender;
    auto names = fresh_queue("mismatch");
    sg::StatusTrackerOptions tracker_options;
    tracker_options.tracking_arg = "their_key";
    names.statuses = std::make_shared<sg::StatusTracker>(tracker_options);
    try {
        sg::RedisMailWorker worker(sender.backend, redis(), names, quick_worker("mismatch"));
        FAIL("a mismatched tracking arg was accepted");
    } catch (const sg::ImproperlyConfigured& error) {
        CHECK(error.setting() == "RedisQueueOptions::statuses");
    }
    // An empty tracking key is refused at enqueue, before it is durable.
    sg::RedisMailQueue queue(redis(), fresh_queue("empty-key"));
    sg::EmailMessage message = mail(1);
    message.custom_args["sendgrid_backend_key"] = "";
    CHECK_THROWS_AS(queue.enqueue(message), sg::InvalidMessage);
    // So is a personalization's that differs from the message's (a worker's backend refuses
    // it), naming where it is; nothing is queued.
    message = mail(2);
    message.custom_args["sendgrid_backend_key"] = "order-7";
    sg::Personalization own;
    own.to = {"a@example.com"};
    own.custom_args = {{"sendgrid_backend_key", "order-8"}};
    message.personalizations = {own};
    try {
        queue.enqueue(message);
        FAIL("a differing personalization tracking key was queued");
    } catch (const sg::InvalidMessage& error) {
        CHECK(error.field() == "personalizations[0].custom_args[\"sendgrid_backend_key\"]");
    }
    message.personalizations[0].custom_args["sendgrid_backend_key"] = "order-7";  // the same
    CHECK_FALSE(queue.enqueue(message).empty());
    CHECK(redis()->command({"XLEN", queue.options().stream}).integer == 1);
}

TEST_CASE("scripts Redis forgot (as after a restart) are loaded again", "[queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("flush");
    sg::RedisMailQueue queue(client, names);
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("flushed"));
    const std::string first = queue.enqueue(mail(1));
    CHECK(worker.run_once() == 1);
    REQUIRE(client->command({"SCRIPT", "FLUSH"}).text == "OK");
    const std::string second = queue.enqueue(mail(2));  // NOSCRIPT, loaded, run once
    REQUIRE(client->command({"SCRIPT", "FLUSH"}).text == "OK");
    CHECK(worker.run_once() == 1);
    CHECK(client->command({"XLEN", names.stream}).integer == 0);
    CHECK(queue.status(first)->state == sg::QueuedState::accepted);
    CHECK(queue.status(second)->state == sg::QueuedState::accepted);
    CHECK(sender.reached() == std::map<std::string, int>{{first, 1}, {second, 1}});
}

TEST_CASE("a claimed entry: 'sending' is reported unknown, 'queued' is sent", "[queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("claim");
    sg::RedisMailQueue queue(client, names);
    const std::string started = queue.enqueue(mail(1));
    const std::string untouched = queue.enqueue(mail(2));
    worker_died_after_taking(*client, names, started);

    std::vector<std::pair<std::string, bool>> emitted;
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage& m, bool failed) {
            emitted.emplace_back(m.subject, failed);
        });
    const auto quick = quick_backend(sender);
    sg::RedisMailWorker heir(quick, client, names, heir_options("heir"));
    CHECK(heir.run_once() == 2);

    const auto unknown = queue.status(started);
    REQUIRE(unknown.has_value());
    CHECK(unknown->state == sg::QueuedState::unknown);
    CHECK(unknown->reason.find("not sent again") != std::string::npos);
    CHECK(queue.status(untouched)->state == sg::QueuedState::accepted);
    const auto reached = sender.reached();
    CHECK(reached.count(started) == 0);  // never re-sent
    CHECK(reached.at(untouched) == 1);
    REQUIRE(emitted.size() == 2);  // one emission each, the unknown one failed
    std::map<std::string, bool> by_subject(emitted.begin(), emitted.end());
    CHECK(by_subject.at("m1") == true);
    CHECK(by_subject.at("m2") == false);
}

TEST_CASE("a worker that loses Redis after a send records the outcome first when it is back",
          "[queue][redis]") {
    // The send's emission cuts the worker's Redis connection and refuses new ones, so the
    // outcome cannot be recorded; Redis is back only after the visibility timeout, when the
    // entry, still "sending", could be claimed as a dead worker's.
    Sender sender;
    const auto direct = sg::RedisOptions::from_url(redis_fixture_url());
    test_support::CuttingProxy proxy(direct.host, direct.port);
    sg::RedisOptions through = sg::RedisOptions::from_url(proxy.url());
    through.reconnect_for = 200ms;
    const auto names = fresh_queue("lost-after-send");
    sg::RedisMailQueue queue(redis(), names);
    const std::string key = queue.enqueue(mail(1));

    std::atomic<int> emissions{0}, failed{0};
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool fail_flag) {
            if (++emissions == 1) {
                proxy.arm(test_support::CuttingProxy::Cut::next_request);
                proxy.down();
            }
            if (fail_flag) ++failed;
        });
    // One try of up to 2 s (quick_backend's 10 ms is too short for a sanitized build), so a
    // 3 s visibility timeout.
    sg::Settings settings = sender.backend->settings();
    settings.retry.max_tries = 1;
    auto backend = std::make_shared<sg::SendgridBackend>(settings, silent());
    sg::WorkerOptions options = quick_worker("lost-after-send");
    options.visibility_timeout = 3s;
    sg::RedisMailWorker worker(backend, std::make_shared<sg::RedisClient>(through), names, options);
    CHECK_THROWS_AS(worker.run_once(), sg::RedisError);
    CHECK(queue.status(key)->state == sg::QueuedState::sending);
    proxy.up();
    std::this_thread::sleep_for(3100ms);  // past the visibility timeout
    worker.run_once();                    // records first, then reads: nothing left to claim
    worker.run_once();
    CHECK(sender.server.received_count() == 1);
    CHECK(emissions == 1);
    CHECK(failed == 0);
    CHECK(queue.status(key)->state == sg::QueuedState::accepted);
    CHECK(redis()->command({"XLEN", names.stream}).integer == 0);
}

TEST_CASE("a claimed entry whose status expired is reported unknown, not sent", "[queue][redis]") {
    // A worker took the entry and died; its "sending" status expired before anyone claimed
    // the entry (every worker down longer than status_ttl). Missing reads as "queued", but a
    // claimed entry may have been sent: it is not sent again.
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("expired");
    sg::RedisMailQueue queue(client, names);
    const std::string key = queue.enqueue(mail(1));
    worker_died_after_taking(*client, names, key);
    client->command({"DEL", names.status_prefix + key});  // expired

    std::vector<bool> emitted;
    sg::ScopedConnection counting =
        sg::sendgrid_email_sent.connect([&](const sg::SendgridBackend&, const sg::EmailMessage&,
                                            bool fail_flag) { emitted.push_back(fail_flag); });
    sg::RedisMailWorker heir(quick_backend(sender), client, names, heir_options("expired-heir"));
    CHECK(heir.run_once() == 1);
    CHECK(sender.server.received_count() == 0);
    const auto status = queue.status(key);
    REQUIRE(status.has_value());
    CHECK(status->state == sg::QueuedState::unknown);
    CHECK(status->reason.find("status expired") != std::string::npos);
    CHECK(emitted == std::vector<bool>{true});

    // A new entry whose status expired while it waited (never read by anyone) is sent.
    const std::string waited = queue.enqueue(mail(2));
    client->command({"DEL", names.status_prefix + waited});
    CHECK(heir.run_once() == 1);
    CHECK(sender.requests_for(waited) == 1);
}

TEST_CASE("resend_unknown opts into sending a claimed 'sending' entry again", "[queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("resend");
    sg::RedisMailQueue queue(client, names);
    const std::string key = queue.enqueue(mail(1));
    worker_died_after_taking(*client, names, key);
    const auto quick = quick_backend(sender);
    sg::WorkerOptions options = heir_options("brave");
    options.resend_unknown = true;
    sg::RedisMailWorker worker(quick, client, names, options);
    CHECK(worker.run_once() == 1);
    CHECK(queue.status(key)->state == sg::QueuedState::accepted);
    CHECK(sender.reached().at(key) == 1);
}

TEST_CASE("enqueue with a key that is queued already does not queue it twice", "[queue][redis]") {
    auto client = redis();
    const auto names = fresh_queue("once");
    sg::RedisMailQueue queue(client, names);
    const auto first = queue.enqueue_once(mail(1), "order-42-confirmation");
    CHECK(first.first == "order-42-confirmation");
    CHECK(first.second);
    // A retried web request queues the same key again: nothing is added.
    const auto again = queue.enqueue_once(mail(1), "order-42-confirmation");
    CHECK(again.first == "order-42-confirmation");
    CHECK_FALSE(again.second);
    CHECK(queue.enqueue(mail(1), "order-42-confirmation") == "order-42-confirmation");
    CHECK(client->command({"XLEN", names.stream}).integer == 1);

    // Eight producers racing with one key: one of them queues it.
    std::atomic<int> queued{0};
    std::vector<std::thread> producers;
    const auto where = sg::RedisOptions::from_url(redis_fixture_url());  // no Catch in threads
    for (int t = 0; t < 8; ++t) {
        producers.emplace_back([&] {
            sg::RedisMailQueue own(std::make_shared<sg::RedisClient>(where), names);
            if (own.enqueue_once(mail(2), "order-43-confirmation").second) ++queued;
        });
    }
    for (auto& producer : producers) producer.join();
    CHECK(queued == 1);
    CHECK(client->command({"XLEN", names.stream}).integer == 2);

    // Sent once, counted at the server.
    Sender sender;
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("once"));
    while (worker.run_once() > 0) {
    }
    const auto reached = sender.reached();
    CHECK(reached.size() == 2);
    CHECK(reached.at("order-42-confirmation") == 1);
    CHECK(reached.at("order-43-confirmation") == 1);
    // Once sent, the key's status stays: enqueueing it again still adds nothing.
    CHECK_FALSE(queue.enqueue_once(mail(1), "order-42-confirmation").second);
    CHECK(client->command({"XLEN", names.stream}).integer == 0);
}

TEST_CASE("max_length refuses new entries instead of trimming old ones", "[queue][redis]") {
    auto client = redis();
    auto names = fresh_queue("bounded");
    names.max_length = 3;
    sg::RedisMailQueue queue(client, names);
    for (int i = 0; i < 3; ++i) queue.enqueue(mail(i));
    CHECK_THROWS_AS(queue.enqueue(mail(3)), sg::QueueFull);
    CHECK(client->command({"XLEN", names.stream}).integer == 3);
}

TEST_CASE("a visibility timeout shorter than a send can take is refused", "[queue][redis]") {
    Sender sender;  // a send takes at most 4 x 2 s + 3 x 1 s
    sg::WorkerOptions options = quick_worker("hasty");
    options.visibility_timeout = 11s;
    CHECK_THROWS_AS(sg::RedisMailWorker(sender.backend, redis(), fresh_queue("hasty"), options),
                    sg::ImproperlyConfigured);
    options.visibility_timeout = 0ms;  // the default: the longest send plus a minute
    const sg::RedisMailWorker derived(sender.backend, redis(), fresh_queue("derived"), options);
    CHECK(derived.visibility_timeout() == 11s + 1min);
}

namespace {

/// A sendgrid-worker process.
struct WorkerProcess {
    pid_t pid = -1;
    WorkerProcess(const sg::RedisQueueOptions& names, const std::string& name,
                  const std::string& host_url, const std::string& key) {
        const std::string program = SENDGRID_BACKEND_WORKER_PROGRAM;
        std::vector<std::string> args{program,
                                      "--redis",
                                      redis_fixture_url(),
                                      "--stream",
                                      names.stream,
                                      "--group",
                                      names.group,
                                      "--status-prefix",
                                      names.status_prefix,
                                      "--consumer",
                                      name,
                                      "--batch",
                                      "8",
                                      "--visibility-timeout",
                                      "6000",
                                      "--max-tries",
                                      "2",
                                      "--max-wait",
                                      "1000"};
        std::vector<std::string> env{"SENDGRID_API_KEY=" + key, "SENDGRID_HOST_URL=" + host_url,
                                     "SENDGRID_TIMEOUT=2"};
        std::vector<char*> argv;
        for (auto& arg : args) argv.push_back(arg.data());
        argv.push_back(nullptr);
        std::vector<char*> envp;
        for (auto& entry : env) envp.push_back(entry.data());
        envp.push_back(nullptr);
        // Its log goes to a file of its own, out of the test's output.
        const std::string log =
            "/tmp/sendgrid-worker-" + name + "-" + std::to_string(::getpid()) + ".log";
        posix_spawn_file_actions_t files;
        posix_spawn_file_actions_init(&files);
        posix_spawn_file_actions_addopen(&files, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC,
                                         0644);
        const int spawned =
            posix_spawn(&pid, program.c_str(), &files, nullptr, argv.data(), envp.data());
        posix_spawn_file_actions_destroy(&files);
        REQUIRE(spawned == 0);
    }
    void signal(int number) const { ::kill(pid, number); }
    int wait() {
        int status = 0;
        waitpid(pid, &status, 0);
        pid = -1;
        return status;
    }
    ~WorkerProcess() {
        if (pid > 0) {
            ::kill(pid, SIGKILL);
            wait();
        }
    }
};

}  // namespace

TEST_CASE("two worker processes, 1000 messages, kill -9 of one mid-run: none lost, none twice",
          "[queue][redis][processes]") {
    sg::testing::FakeSendgridServer server("SG.fake-test-key.0123456789", 32);
    server.set_delay(2ms);  // long enough to kill a worker mid-run
    auto client = redis();
    const auto names = fresh_queue("processes");
    sg::RedisMailQueue queue(client, names);
    std::vector<std::string> keys;
    for (int i = 0; i < 1000; ++i) keys.push_back(queue.enqueue(mail(i)));
    WorkerProcess first(names, "first", server.url(), server.api_key());
    WorkerProcess second(names, "second", server.url(), server.api_key());

    // Once the run is well under way, stop the first worker while it holds entries it has
    // taken and not finished, and kill it: those are what the second must deal with.
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (server.received_count() < 200 && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(5ms);
    }
    auto pending_of_first = [&] {
        const sg::RedisValue pending =
            client->command({"XPENDING", names.stream, names.group, "-", "+", "100", "first"});
        return pending.elements.size();
    };
    std::size_t left_behind = 0;
    for (int tries = 0; tries < 200 && left_behind == 0; ++tries) {
        first.signal(SIGSTOP);
        left_behind = pending_of_first();
        if (left_behind == 0) {
            first.signal(SIGCONT);
            std::this_thread::sleep_for(1ms);
        }
    }
    first.signal(SIGKILL);
    first.wait();
    REQUIRE(left_behind > 0);
    // The second one claims what the first left behind (after 6 s) and finishes the rest.
    std::map<sg::QueuedState, int> states;
    while (std::chrono::steady_clock::now() < give_up) {
        states.clear();
        for (const auto& key : keys) ++states[queue.status(key).value_or(sg::QueuedStatus{}).state];
        // Done when nothing waits and the stream is empty: entries the first worker finished
        // but did not acknowledge are claimed (after the visibility timeout) and acknowledged.
        if (states[sg::QueuedState::queued] == 0 && states[sg::QueuedState::sending] == 0 &&
            client->command({"XLEN", names.stream}).integer == 0) {
            break;
        }
        std::this_thread::sleep_for(200ms);
    }
    second.signal(SIGTERM);
    CHECK(WIFEXITED(second.wait()));

    std::map<std::string, int> reached;
    for (const auto& request : server.received()) {
        ++reached[request
                      .payload["personalizations"][0]["custom_args"]["sendgrid_backend_queue_key"]
                      .get<std::string>()];
    }
    std::map<std::string, int> accepted_by;
    for (const auto& key : keys) {
        const auto status = queue.status(key);
        if (status && status->state == sg::QueuedState::accepted) ++accepted_by[status->worker];
    }
    INFO("accepted " << states[sg::QueuedState::accepted] << " (first " << accepted_by["first"]
                     << ", second " << accepted_by["second"] << "), unknown "
                     << states[sg::QueuedState::unknown] << ", failed "
                     << states[sg::QueuedState::failed] << ", left behind " << left_behind);
    CHECK(accepted_by["first"] > 0);
    CHECK(accepted_by["second"] > 0);
    CHECK(states[sg::QueuedState::queued] == 0);   // none lost
    CHECK(states[sg::QueuedState::sending] == 0);  // none stuck
    CHECK(states[sg::QueuedState::failed] == 0);
    CHECK(states[sg::QueuedState::accepted] + states[sg::QueuedState::unknown] == 1000);
    CHECK(states[sg::QueuedState::unknown] <= 8);  // at most the batch the killed worker had
    std::size_t twice = 0;
    for (const auto& key : keys) {
        const auto status = queue.status(key);
        const int count = reached.count(key) != 0 ? reached[key] : 0;
        if (count > 1) ++twice;
        if (status && status->state == sg::QueuedState::accepted) CHECK(count == 1);
    }
    CHECK(twice == 0);  // none sent twice
    CHECK(client->command({"XLEN", names.stream}).integer == 0);
}

TEST_CASE("a Redis restart while a producer enqueues loses nothing acknowledged",
          "[queue][redis][restart]") {
    const OwnRedis own;
    auto client = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(own.url()));
    const auto names = fresh_queue("restart");
    sg::RedisMailQueue queue(client, names);
    std::vector<std::string> acknowledged;
    std::atomic<bool> restarted{false};
    std::thread restarter([&] {
        std::this_thread::sleep_for(30ms);
        restarted = own.run("restart") == 0;
    });
    // Enqueue before, during and after the restart; enqueue retries through it.
    std::string enqueue_error;
    try {
        int after_restart = 0;
        for (int i = 0; after_restart < 50; ++i) {
            acknowledged.push_back(queue.enqueue(mail(i)));
            if (restarted) ++after_restart;
        }
    } catch (const std::exception& error) {
        enqueue_error = error.what();
    }
    restarter.join();
    CHECK(enqueue_error == "");
    CHECK(restarted);
    INFO(acknowledged.size() << " acknowledged");
    // Every acknowledged message is in the stream exactly once, after the restart.
    const sg::RedisValue entries = client->command({"XRANGE", names.stream, "-", "+"});
    std::multiset<std::string> in_stream;
    for (const auto& entry : entries.elements) {
        const auto& fields = entry.elements.at(1).elements;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            if (fields[i].text == "key") in_stream.insert(fields[i + 1].text);
        }
    }
    CHECK(in_stream.size() == acknowledged.size());
    for (const auto& key : acknowledged) CHECK(in_stream.count(key) == 1);

    // And a worker sends each of them once: counted at the server.
    Sender sender;
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("after-restart"));
    while (worker.run_once() > 0) {
    }
    const auto reached = sender.reached();
    CHECK(reached.size() == acknowledged.size());
    for (const auto& key : acknowledged) {
        const int count = reached.count(key) != 0 ? reached.at(key) : 0;
        CHECK(count == 1);
        CHECK(queue.status(key)->state == sg::QueuedState::accepted);
    }
}

TEST_CASE("a worker running when Redis loses its data sends what is queued after",
          "[queue][redis][restart]") {
    const OwnRedis own;
    auto client = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(own.url()));
    const auto names = fresh_queue("lost");
    sg::RedisMailQueue queue(client, names);
    Sender sender;
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("survivor"));
    std::atomic<bool> stop{false};
    std::thread running([&] { worker.run(stop); });

    // Its consumer group is gone with the data; the producer's XADD makes the stream again.
    const bool wiped = own.run("wipe") == 0;  // no REQUIRE: the thread must be joined
    std::vector<std::string> keys;
    for (int i = 0; i < 3; ++i) keys.push_back(queue.enqueue(mail(i)));

    const auto all_accepted = [&] {
        for (const auto& key : keys) {
            const auto status = queue.status(key);
            if (!status || status->state != sg::QueuedState::accepted) return false;
        }
        return true;
    };
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (!all_accepted() && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(10ms);
    }
    stop = true;
    running.join();
    CHECK(wiped);
    CHECK(all_accepted());
    CHECK(sender.server.received().size() == 3);
    const auto reached = sender.reached();
    for (const auto& key : keys) CHECK((reached.count(key) != 0 ? reached.at(key) : 0) == 1);
}

TEST_CASE("a group made again reads from 0 but sends nothing marked sending or accepted",
          "[queue][redis]") {
    auto client = redis();
    const auto names = fresh_queue("regroup");
    sg::RedisMailQueue queue(client, names);
    Sender sender;
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("regroup"));
    const std::string sending = queue.enqueue(mail(0));
    const std::string accepted = queue.enqueue(mail(1));
    const std::string queued = queue.enqueue(mail(2));
    client->command({"HSET", names.status_prefix + sending, "state", "sending"});
    client->command({"HSET", names.status_prefix + accepted, "state", "accepted"});
    // The group alone lost (the statuses kept): every entry is delivered again.
    REQUIRE(client->command({"XGROUP", "DESTROY", names.stream, names.group}).integer == 1);
    while (worker.run_once() > 0) {
    }
    const auto reached = sender.reached();
    CHECK(reached.size() == 1);
    CHECK(reached.count(queued) == 1);
    CHECK(queue.status(sending)->state == sg::QueuedState::unknown);
    CHECK(queue.status(accepted)->state == sg::QueuedState::accepted);
    CHECK(queue.status(queued)->state == sg::QueuedState::accepted);
    CHECK(client->command({"XLEN", names.stream}).integer == 0);
}

TEST_CASE("enqueue refuses a message no worker could send, before it is durable",
          "[queue][redis]") {
    auto client = redis();
    auto names = fresh_queue("unsendable");
    sg::RedisMailQueue queue(client, names);
    sg::EmailMessage bad("Hi", "Body", "shop@example.com", {"no-at-sign"});
    try {
        queue.enqueue(bad, "never-queued");
        FAIL("an address without @ was queued");
    } catch (const sg::InvalidMessage& invalid) {
        CHECK(invalid.field() == "to[0]");
    }
    sg::EmailMessage nul("Hi", std::string("Bo\0dy", 5), "shop@example.com", {"a@example.com"});
    CHECK_THROWS_AS(queue.enqueue(nul), sg::InvalidMessage);
    // Within SendGrid's 10,000 bytes of custom_args as given, past them with the queue key a
    // worker adds: refused here, where the producer hears of it.
    sg::EmailMessage crowded("Hi", "Body", "shop@example.com", {"a@example.com"});
    crowded.custom_args["filler"] = std::string(9'950, 'x');
    CHECK(sg::serialize_payload(crowded).size() > 0);  // fine on its own
    try {
        queue.enqueue(crowded);
        FAIL("custom_args past the limit once the worker adds the key were queued");
    } catch (const sg::InvalidMessage& invalid) {
        CHECK_THAT(invalid.field(), Catch::Matchers::Contains("custom_args"));
    }
    // Nothing reached Redis: no entry, no status.
    CHECK(client->command({"XLEN", names.stream}).integer == 0);
    CHECK_FALSE(queue.status("never-queued"));
    // A repeated recipient passes: a worker's backend may be set to drop repeats.
    sg::EmailMessage repeated("Hi", "Body", "shop@example.com", {"a@example.com", "a@example.com"});
    CHECK_NOTHROW(queue.enqueue(repeated));
    CHECK(client->command({"XLEN", names.stream}).integer == 1);
}

TEST_CASE("queue and worker options out of range are refused naming the option", "[queue][redis]") {
    Sender sender;
    // A client whose timeout outlasts the longest read a worker may make.
    auto patient_redis = [] {
        sg::RedisOptions options = sg::RedisOptions::from_url(redis_fixture_url());
        options.timeout = sg::WorkerOptions::max_block + 1s;
        return std::make_shared<sg::RedisClient>(options);
    };
    auto refused = [&](auto change) -> std::string {
        sg::RedisQueueOptions names = fresh_queue("bounds");
        sg::WorkerOptions options = quick_worker("bounds");
        change(names, options);
        try {
            sg::RedisMailWorker worker(sender.backend, patient_redis(), names, options);
        } catch (const sg::ImproperlyConfigured& error) {
            return error.setting();
        }
        return "<no error>";
    };
    using Queue = sg::RedisQueueOptions;
    using Worker = sg::WorkerOptions;
    CHECK(refused([](Queue&, Worker& w) { w.block = 0ms; }) == "WorkerOptions::block");
    CHECK(refused([](Queue&, Worker& w) { w.block = std::chrono::milliseconds::max(); }) ==
          "WorkerOptions::block");
    CHECK(refused([](Queue&, Worker& w) {
              w.visibility_timeout = std::chrono::milliseconds::max();
          }) == "WorkerOptions::visibility_timeout");
    CHECK(refused([](Queue&, Worker& w) { w.batch = std::numeric_limits<std::size_t>::max(); }) ==
          "WorkerOptions::batch");
    CHECK(refused([](Queue& q, Worker&) { q.status_ttl = 0s; }) == "RedisQueueOptions::status_ttl");
    CHECK(refused([](Queue& q, Worker&) { q.status_ttl = std::chrono::seconds::max(); }) ==
          "RedisQueueOptions::status_ttl");
    // A "sending" status must outlive the wait before a dead worker's entry is claimed.
    CHECK(refused([](Queue& q, Worker& w) {
              q.status_ttl = 20s;
              w.visibility_timeout = 20s;
          }) == "RedisQueueOptions::status_ttl");
    CHECK(refused([](Queue& q, Worker& w) {
              w.block = Worker::max_block;
              w.batch = Worker::max_batch;
              w.visibility_timeout = Worker::max_visibility_timeout;
              q.status_ttl = Queue::max_status_ttl;
          }) == "<no error>");
    // A read waiting `block` for entries must end before the client's own timeout (2 s here):
    // otherwise each idle read is a lost connection.
    sg::WorkerOptions slow_reads = quick_worker("slow-reads");
    slow_reads.block = 1500ms;
    CHECK_THROWS_WITH(sg::RedisMailWorker(sender.backend, redis(), fresh_queue("slow"), slow_reads),
                      Catch::Matchers::Contains("WorkerOptions::block: is 1500 ms; it must be at "
                                                "least 1 s shorter than RedisOptions::timeout"));
    slow_reads.block = 1s;
    CHECK_NOTHROW(sg::RedisMailWorker(sender.backend, redis(), fresh_queue("slow"), slow_reads));
    CHECK_THROWS_AS(sg::RedisMailWorker(nullptr, redis()), sg::ImproperlyConfigured);
    CHECK_THROWS_AS(sg::RedisMailQueue(redis(),
                                       [] {
                                           sg::RedisQueueOptions names;
                                           names.status_ttl = -1s;
                                           return names;
                                       }()),
                    sg::ImproperlyConfigured);
    static_assert(!std::is_constructible_v<sg::RedisMailWorker, const sg::SendgridBackend&,
                                           std::shared_ptr<sg::RedisClient>>);
    // RedisOptions are checked before connecting.
    sg::RedisOptions options;
    options.timeout = std::chrono::milliseconds::max();
    CHECK_THROWS_AS(sg::RedisClient(options), sg::ImproperlyConfigured);
    options.timeout = 0ms;
    CHECK_THROWS_AS(sg::RedisClient(options), sg::ImproperlyConfigured);
    options.timeout = 1s;
    options.reconnect_for = std::chrono::milliseconds::max();
    CHECK_THROWS_AS(sg::RedisClient(options), sg::ImproperlyConfigured);
}
