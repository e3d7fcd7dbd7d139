// Scheduled messages in the Redis mail queue (RedisMailQueue::enqueue with a not_before,
// RedisScheduleMover, cancel), counted where they land: at the fake SendGrid server (by the queue
// key each request carries, with its arrival time) and in Redis (the scheduled set and messages,
// the stream, the statuses and their TTLs).
//  - in one process: a message waits "scheduled", then is sent once, not before its time; a
//    waiting worker wakes when the next message is due; the status TTL outlives the wait;
//    cancel before the move (never sent) and after it (false); two movers racing on the same
//    due keys move each once, and a move run again moves nothing; entries whose message is
//    scheduled or cancelled are never sent; bounds and option collisions are refused;
//  - across processes: 500 messages due over 5 s, two sendgrid-worker processes moving and
//    sending them, Redis (append-only) restarted mid-way: each sent once, none before its time.
#include <sendgrid_backend/redis/schedule.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/queue_fixture.hpp"
#include "support/redis_fixture.hpp"

// Its own namespace: the tests are compiled as unity builds (tests/CMakeLists.txt).
namespace scheduled_queue_test {

using namespace std::chrono_literals;
using test_support::fresh_queue;
using test_support::OwnRedis;
using test_support::redis_fixture_url;
namespace sg = sendgrid_backend;
using Clock = std::chrono::system_clock;

namespace {

using Sender = test_support::QueueSender;
using test_support::quick_worker;

std::shared_ptr<sg::RedisClient> redis(const std::string& url = redis_fixture_url()) {
    return std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(url));
}

sg::EmailMessage mail(int i) {
    return sg::EmailMessage("m" + std::to_string(i), "Body", "shop@example.com",
                            {"user" + std::to_string(i) + "@example.com"});
}

std::string queue_key_of(const sg::testing::ReceivedRequest& request) {
    return request.payload["personalizations"][0]["custom_args"]["sendgrid_backend_queue_key"]
        .get<std::string>();
}

std::int64_t count(sg::RedisClient& client, const std::vector<std::string>& command) {
    return client.command(command).integer;
}

/// Whole milliseconds since the epoch, rounded up: what the queue stores as a due time.
Clock::time_point to_ms(Clock::time_point time) {
    return Clock::time_point(std::chrono::ceil<std::chrono::milliseconds>(time.time_since_epoch()));
}

/// Runs worker rounds until `done` or 10 s passed.
template <class Done>
void run_until(sg::RedisMailWorker& worker, Done done) {
    const auto give_up = std::chrono::steady_clock::now() + 10s;
    while (!done() && std::chrono::steady_clock::now() < give_up) worker.run_once();
}

}  // namespace

TEST_CASE("a scheduled message waits as 'scheduled', then is sent once, not before its time",
          "[scheduled_queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("scheduled");
    sg::RedisMailQueue queue(client, names);
    const Clock::time_point due = Clock::now() + 600ms;
    const auto [key, queued] = queue.enqueue_once(mail(1), due);
    CHECK(queued);
    const auto waiting = queue.status(key);
    REQUIRE(waiting);
    CHECK(waiting->state == sg::QueuedState::scheduled);
    REQUIRE(waiting->not_before);
    CHECK(*waiting->not_before == to_ms(due));
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 1);
    CHECK(count(*client, {"HLEN", names.scheduled_messages_key()}) == 1);
    CHECK(count(*client, {"XLEN", names.stream}) == 0);
    // The same key again: nothing more is stored.
    CHECK_FALSE(queue.enqueue_once(mail(1), due, key).second);
    CHECK_FALSE(queue.enqueue_once(mail(1), key).second);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 1);

    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("patient"));
    CHECK(worker.run_once() == 0);  // not due yet: nothing moved, nothing sent
    CHECK(sender.server.received_count() == 0);
    run_until(worker, [&] { return sender.server.received_count() > 0; });
    REQUIRE(sender.server.received_count() == 1);
    const auto request = sender.server.received().at(0);
    CHECK(queue_key_of(request) == key);
    CHECK(request.received_at >= due);
    const auto sent = queue.status(key);
    REQUIRE(sent);
    CHECK(sent->state == sg::QueuedState::accepted);
    CHECK(sent->not_before == waiting->not_before);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 0);
    CHECK(count(*client, {"HLEN", names.scheduled_messages_key()}) == 0);
    CHECK(count(*client, {"XLEN", names.stream}) == 0);
    const auto counts = client->command(
        {"HMGET", names.state_counts_key(), "scheduled", "queued", "sending", "accepted"});
    CHECK(counts.elements.at(0).text == "1");
    CHECK(counts.elements.at(1).text == "1");
    CHECK(counts.elements.at(2).text == "1");
    CHECK(counts.elements.at(3).text == "1");
}

TEST_CASE("a worker waiting for new entries wakes when the next scheduled message is due",
          "[scheduled_queue][redis]") {
    Sender sender;
    sg::RedisOptions patient = sg::RedisOptions::from_url(redis_fixture_url());
    patient.timeout = 10s;
    auto client = std::make_shared<sg::RedisClient>(patient);
    const auto names = fresh_queue("wake");
    sg::RedisMailQueue queue(client, names);
    sg::WorkerOptions options = quick_worker("sleepy");
    options.block = 8s;
    sg::RedisMailWorker worker(sender.backend, client, names, options);
    const std::string key = queue.enqueue(mail(1), Clock::now() + 300ms);
    // The round reads with BLOCK until the message is due, not for the whole 8 s.
    const auto started = std::chrono::steady_clock::now();
    CHECK(worker.run_once() == 0);
    const auto waited = std::chrono::steady_clock::now() - started;
    CHECK(waited < 4s);
    run_until(worker, [&] { return sender.server.received_count() > 0; });
    CHECK(sender.reached() == std::map<std::string, int>{{key, 1}});
}

TEST_CASE("a scheduled status lives the wait plus status_ttl; a past not_before queues at once",
          "[scheduled_queue][redis]") {
    auto client = redis();
    auto names = fresh_queue("ttl");
    names.status_ttl = 60s;
    sg::RedisMailQueue queue(client, names);
    const std::string later = queue.enqueue(mail(1), Clock::now() + 1h);
    const std::int64_t waiting_ttl = count(*client, {"TTL", names.status_prefix + later});
    CHECK(waiting_ttl > 3600 + 60 - 5);
    CHECK(waiting_ttl <= 3600 + 60 + 1);

    const std::string past = queue.enqueue(mail(2), Clock::now() - 1s);
    CHECK(queue.status(past)->state == sg::QueuedState::queued);
    CHECK(queue.status(past)->not_before.has_value());
    CHECK(count(*client, {"TTL", names.status_prefix + past}) <= 60);
    CHECK(count(*client, {"XLEN", names.stream}) == 1);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 1);  // only `later`

    // Once moved, a status keeps status_ttl as any queued one.
    const std::string soon = queue.enqueue(mail(3), Clock::now() + 200ms);
    CHECK(count(*client, {"TTL", names.status_prefix + soon}) > 60);
    sg::RedisScheduleMover mover(client, names);
    std::this_thread::sleep_for(300ms);
    const sg::ScheduledMoves moves = mover.move_due();
    CHECK(moves.moved == 1);
    REQUIRE(moves.next_due_in);  // `later`, in about an hour
    CHECK(*moves.next_due_in > 3500s);
    CHECK(queue.status(soon)->state == sg::QueuedState::queued);
    CHECK(count(*client, {"TTL", names.status_prefix + soon}) <= 60);
    CHECK(count(*client, {"XLEN", names.stream}) == 2);
}

TEST_CASE("a full stream holds due messages back; a mover running alone moves them when due",
          "[scheduled_queue][redis]") {
    auto client = redis();
    auto names = fresh_queue("full");
    names.max_length = 1;
    sg::RedisMailQueue queue(client, names);
    queue.enqueue(mail(1));
    CHECK_THROWS_AS(queue.enqueue(mail(2), Clock::now() - 1s), sg::QueueFull);  // due: queued
    const std::string held = queue.enqueue(mail(3), Clock::now() + 100ms);
    std::this_thread::sleep_for(200ms);
    sg::RedisScheduleMover mover(client, names);
    const sg::ScheduledMoves full = mover.move_due();
    CHECK(full.moved == 0);
    CHECK(full.held_back == 1);
    CHECK(queue.status(held)->state == sg::QueuedState::scheduled);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 1);
    REQUIRE(count(*client, {"XTRIM", names.stream, "MAXLEN", "0"}) == 1);  // as if sent
    CHECK(mover.move_due().moved == 1);
    CHECK(queue.status(held)->state == sg::QueuedState::queued);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 0);

    // run() waits until the next message is due and moves it, until stopped.
    const auto unbounded = fresh_queue("alone");
    sg::RedisMailQueue other(client, unbounded);
    const std::string later = other.enqueue(mail(4), Clock::now() + 300ms);
    sg::ScheduleMoverOptions options;
    options.idle = 20ms;
    sg::RedisScheduleMover alone(redis(), unbounded, options);
    std::atomic<bool> stop{false};
    std::thread running([&] { alone.run(stop); });
    const auto give_up = std::chrono::steady_clock::now() + 5s;
    while (other.status(later)->state == sg::QueuedState::scheduled &&
           std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(10ms);
    }
    stop = true;
    running.join();
    CHECK(other.status(later)->state == sg::QueuedState::queued);
    CHECK(count(*client, {"XLEN", unbounded.stream}) == 1);
    CHECK(count(*client, {"ZCARD", unbounded.scheduled_key()}) == 0);
}

TEST_CASE("cancel before the move: never sent; after it: false", "[scheduled_queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("cancel");
    sg::RedisMailQueue queue(client, names);
    const std::string far = queue.enqueue(mail(1), Clock::now() + 1h);
    const std::string soon = queue.enqueue(mail(2), Clock::now() + 300ms);
    const std::string kept = queue.enqueue(mail(3), Clock::now() + 300ms);
    CHECK(queue.cancel(far));
    CHECK(queue.cancel(soon));
    CHECK_FALSE(queue.cancel(soon));  // cancelled already
    CHECK_FALSE(queue.cancel("never-scheduled"));
    CHECK_FALSE(queue.status("never-scheduled"));  // no status made up
    CHECK(queue.status(far)->state == sg::QueuedState::cancelled);
    CHECK(queue.status(soon)->state == sg::QueuedState::cancelled);
    CHECK_FALSE(queue.enqueue_once(mail(2), soon).second);  // the key has a status
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 1);
    CHECK(count(*client, {"HLEN", names.scheduled_messages_key()}) == 1);

    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("canceller"));
    run_until(worker, [&] { return sender.server.received_count() > 0; });
    std::this_thread::sleep_for(400ms);  // past the cancelled one's time
    while (worker.run_once() > 0) {
    }
    CHECK(sender.reached() == std::map<std::string, int>{{kept, 1}});
    CHECK_FALSE(queue.cancel(kept));  // moved (and sent): too late
    CHECK(queue.status(kept)->state == sg::QueuedState::accepted);
    CHECK(queue.status(soon)->state == sg::QueuedState::cancelled);
    CHECK(client->command({"HGET", names.state_counts_key(), "cancelled"}).text == "2");

    // Moved but not yet sent: false, and the worker sends it.
    const std::string moved = queue.enqueue(mail(4), Clock::now() + 100ms);
    std::this_thread::sleep_for(200ms);
    sg::RedisScheduleMover mover(client, names);
    CHECK(mover.move_due().moved == 1);
    CHECK_FALSE(queue.cancel(moved));
    CHECK(queue.status(moved)->state == sg::QueuedState::queued);
    while (worker.run_once() > 0) {
    }
    CHECK(sender.reached().at(moved) == 1);
}

TEST_CASE("cancel records the message failed in the queue's status tracker",
          "[scheduled_queue][redis][status]") {
    auto client = redis();
    auto names = fresh_queue("tracked");
    sg::RedisStatusStoreOptions store_options;
    store_options.prefix = names.stream + ":statuses:";
    sg::StatusTrackerOptions tracker_options;
    tracker_options.store = std::make_shared<sg::RedisStatusStore>(client, store_options);
    auto tracker = std::make_shared<sg::StatusTracker>(tracker_options);
    names.statuses = tracker;
    sg::RedisMailQueue queue(client, names);
    const std::string key = queue.enqueue(mail(1), Clock::now() + 1h);
    CHECK(tracker->status(key)->send.state == sg::DeliveryState::queued);
    CHECK(queue.cancel(key));
    CHECK(tracker->status(key)->send.state == sg::DeliveryState::failed);
    CHECK(tracker->status(key)->send.reason == "cancelled");
    CHECK(tracker->status(key)->summary() == "failed (cancelled)");
}

TEST_CASE("two movers racing on the same due messages move each once; a move run again, none",
          "[scheduled_queue][redis]") {
    auto client = redis();
    const auto names = fresh_queue("race");
    sg::RedisMailQueue queue(client, names);
    const Clock::time_point due = Clock::now() + 3s;  // time to schedule them all
    std::vector<std::string> keys;
    for (int i = 0; i < 300; ++i) keys.push_back(queue.enqueue(mail(i), due));
    REQUIRE(count(*client, {"ZCARD", names.scheduled_key()}) == 300);
    std::this_thread::sleep_until(due + 50ms);

    // Small batches, so that both movers come back for more while the other moves.
    std::atomic<std::size_t> moved{0};
    std::atomic<int> failures{0};  // no Catch in threads
    sg::ScheduleMoverOptions small;
    small.batch = 20;
    const std::string url = redis_fixture_url();  // read here: Catch's checks are not for threads
    auto move_all = [&] {
        try {
            sg::RedisScheduleMover mover(redis(url), names, small);
            for (;;) {
                const sg::ScheduledMoves moves = mover.move_due();
                moved += moves.moved;
                if (!moves.next_due_in) break;  // none left due, none later
            }
        } catch (...) {
            ++failures;
        }
    };
    std::thread first(move_all);
    std::thread second(move_all);
    first.join();
    second.join();
    CHECK(failures == 0);
    CHECK(moved == 300);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 0);
    CHECK(count(*client, {"HLEN", names.scheduled_messages_key()}) == 0);
    const sg::RedisValue entries = client->command({"XRANGE", names.stream, "-", "+"});
    std::multiset<std::string> in_stream;
    for (const auto& entry : entries.elements) {
        const auto& fields = entry.elements.at(1).elements;
        for (std::size_t i = 0; i + 1 < fields.size(); i += 2) {
            if (fields[i].text == "key") in_stream.insert(fields[i + 1].text);
        }
    }
    CHECK(in_stream.size() == 300);
    for (const auto& key : keys) CHECK(in_stream.count(key) == 1);
    CHECK(client->command({"HGET", names.state_counts_key(), "queued"}).text == "300");

    // The move of a key run again (its first answer lost) moves nothing.
    std::vector<std::vector<std::string>> again;
    for (const auto& key : keys) {
        again.push_back({"5", names.scheduled_key(), names.scheduled_messages_key(), names.stream,
                         names.status_prefix + key, names.state_counts_key(), key, "0", "60", "0"});
    }
    for (const auto& answer :
         sg::detail::stored_script<&sg::detail::move_due_script>().run(*client, again)) {
        CHECK(answer.integer == 0);
    }
    CHECK(count(*client, {"XLEN", names.stream}) == 300);
}

TEST_CASE("an entry whose message is scheduled or cancelled is never sent",
          "[scheduled_queue][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("stray");
    const std::string entry = sg::serialize_message(mail(1));
    for (const char* key : {"stray-scheduled", "stray-cancelled"}) {
        client->command({"XADD", names.stream, "*", "key", key, "message", entry});
    }
    client->command({"HSET", names.status_prefix + "stray-scheduled", "state", "scheduled"});
    client->command({"HSET", names.status_prefix + "stray-cancelled", "state", "cancelled"});
    sg::RedisMailWorker worker(sender.backend, client, names, quick_worker("stray"));
    CHECK(worker.run_once() == 2);  // finished: acknowledged, not sent
    CHECK(sender.server.received_count() == 0);
    CHECK(count(*client, {"XLEN", names.stream}) == 0);
    sg::RedisMailQueue queue(client, names);
    CHECK(queue.status("stray-scheduled")->state == sg::QueuedState::scheduled);
    CHECK(queue.status("stray-cancelled")->state == sg::QueuedState::cancelled);
}

TEST_CASE(
    "scheduling refuses a not_before too far ahead and an unsendable message, storing "
    "nothing; names that collide are refused",
    "[scheduled_queue][redis]") {
    auto client = redis();
    const auto names = fresh_queue("bounds");
    sg::RedisMailQueue queue(client, names);
    try {
        queue.enqueue(mail(1), Clock::now() + sg::RedisMailQueue::max_schedule_ahead + 1h,
                      "too-far");
        FAIL("a not_before past max_schedule_ahead was scheduled");
    } catch (const sg::InvalidMessage& error) {
        CHECK(error.field() == "not_before");
    }
    CHECK_THROWS_AS(queue.enqueue(mail(1), Clock::time_point::max()), sg::InvalidMessage);
    sg::EmailMessage bad("Hi", "Body", "shop@example.com", {"no-at-sign"});
    try {
        queue.enqueue(bad, Clock::now() + 1h, "unsendable");
        FAIL("an address without @ was scheduled");
    } catch (const sg::InvalidMessage& error) {
        CHECK(error.field() == "to[0]");
    }
    CHECK_FALSE(queue.status("too-far"));
    CHECK_FALSE(queue.status("unsendable"));
    CHECK(count(*client, {"EXISTS", names.scheduled_key(), names.scheduled_messages_key()}) == 0);
    // A year ahead is fine; the distant past is due at once.
    CHECK_NOTHROW(queue.enqueue(mail(2), Clock::now() + sg::RedisMailQueue::max_schedule_ahead));
    CHECK(queue.status(queue.enqueue(mail(3), Clock::time_point::min()))->state ==
          sg::QueuedState::queued);

    // A status prefix under which a message's status could overwrite the scheduled keys.
    sg::RedisQueueOptions colliding;
    colliding.stream = "mail";
    colliding.status_prefix = "mail:scheduled:";
    try {
        sg::RedisMailQueue refused(client, colliding);
        FAIL("a status prefix starting the scheduled messages' key was accepted");
    } catch (const sg::ImproperlyConfigured& error) {
        CHECK(error.setting() == "RedisQueueOptions::status_prefix");
        CHECK(std::string(error.what()).find("mail:scheduled:messages") != std::string::npos);
    }
    sg::ScheduleMoverOptions options;
    options.batch = 0;
    CHECK_THROWS_WITH(sg::RedisScheduleMover(client, names, options),
                      Catch::Matchers::Contains("ScheduleMoverOptions::batch"));
    options.batch = sg::ScheduleMoverOptions::max_batch + 1;
    CHECK_THROWS_AS(sg::RedisScheduleMover(client, names, options), sg::ImproperlyConfigured);
    options = {};
    options.idle = 0ms;
    CHECK_THROWS_WITH(sg::RedisScheduleMover(client, names, options),
                      Catch::Matchers::Contains("ScheduleMoverOptions::idle"));
    CHECK_THROWS_AS(sg::RedisScheduleMover(nullptr, names), sg::ImproperlyConfigured);
}

TEST_CASE(
    "500 messages due over 5 s, two sendgrid-worker processes, a Redis restart mid-way; each "
    "sent once, none before its time",
    "[scheduled_queue][redis][processes][restart]") {
    const OwnRedis own;
    sg::testing::FakeSendgridServer server("SG.fake-test-key.0123456789", 32);
    auto client = redis(own.url());
    const auto names = fresh_queue("proof");
    sg::RedisMailQueue queue(client, names);

    // Due from 3 s on (time to schedule them all), one every 10 ms.
    const Clock::time_point first_due = Clock::now() + 3s;
    std::map<std::string, Clock::time_point> due_of;
    for (int i = 0; i < 500; ++i) {
        const Clock::time_point due = first_due + i * 10ms;
        due_of[queue.enqueue(mail(i), due)] = due;
    }
    REQUIRE(due_of.size() == 500);
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 500);  // none due yet

    const std::vector<std::string> flags{"--redis",
                                         own.url(),
                                         "--stream",
                                         names.stream,
                                         "--group",
                                         names.group,
                                         "--status-prefix",
                                         names.status_prefix,
                                         "--batch",
                                         "8",
                                         "--visibility-timeout",
                                         "6000",
                                         "--max-tries",
                                         "2",
                                         "--max-wait",
                                         "1000"};
    const std::vector<std::string> env{"SENDGRID_API_KEY=" + server.api_key(),
                                       "SENDGRID_HOST_URL=" + server.url(), "SENDGRID_TIMEOUT=2"};
    auto with_consumer = [&](const std::string& name) {
        std::vector<std::string> args = flags;
        args.insert(args.end(), {"--consumer", name});
        return args;
    };
    test_support::Running first(SENDGRID_BACKEND_WORKER_PROGRAM, with_consumer("first"), env);
    test_support::Running second(SENDGRID_BACKEND_WORKER_PROGRAM, with_consumer("second"), env);

    // Half-way through the due times, restart Redis (its append-only file kept).
    std::this_thread::sleep_until(first_due + 2500ms);
    const std::size_t sent_before_restart = server.received_count();
    const std::int64_t waiting_before_restart = count(*client, {"ZCARD", names.scheduled_key()});
    const bool restarted = own.run("restart") == 0;

    const auto all_accepted = [&] {
        for (const auto& [key, due] : due_of) {
            const auto status = queue.status(key);
            if (!status || status->state != sg::QueuedState::accepted) return false;
        }
        return true;
    };
    const auto give_up = std::chrono::steady_clock::now() + 60s;
    while (!all_accepted() && std::chrono::steady_clock::now() < give_up) {
        std::this_thread::sleep_for(100ms);
    }
    std::this_thread::sleep_for(500ms);  // room for a duplicate to arrive, were there one
    const int first_exit = first.stop();
    const int second_exit = second.stop();

    std::map<std::string, int> reached;
    std::size_t early = 0;
    Clock::duration latest = Clock::duration::zero();
    for (const auto& request : server.received()) {
        const std::string key = queue_key_of(request);
        ++reached[key];
        const auto found = due_of.find(key);
        if (found == due_of.end()) continue;
        if (request.received_at < found->second) ++early;
        latest = std::max(latest, request.received_at - found->second);
    }
    INFO("sent before the restart "
         << sent_before_restart << ", waiting " << waiting_before_restart << "; latest arrival "
         << std::chrono::duration_cast<std::chrono::milliseconds>(latest).count()
         << " ms after its time; worker logs:\n"
         << first.err() << second.err());
    CHECK(restarted);
    CHECK(sent_before_restart > 0);     // the restart came mid-way:
    CHECK(waiting_before_restart > 0);  // some sent, some still waiting
    CHECK(first_exit == 0);
    CHECK(second_exit == 0);
    CHECK(all_accepted());
    CHECK(early == 0);  // none before its time
    CHECK(reached.size() == 500);
    std::size_t not_once = 0;
    for (const auto& [key, due] : due_of) {
        if (reached.count(key) == 0 || reached.at(key) != 1) ++not_once;
    }
    CHECK(not_once == 0);  // each exactly once, counted at the server
    CHECK(count(*client, {"ZCARD", names.scheduled_key()}) == 0);
    CHECK(count(*client, {"XLEN", names.stream}) == 0);
}

}  // namespace scheduled_queue_test
