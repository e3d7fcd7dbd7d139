// The Redis queue's dead letters against the fixture's redis-server and FakeSendgridServer,
// counted where they land: requests at the server, entries in the dead-letter stream and its
// index, statuses. A refused message is kept once and a retry sends it once more; an unknown one
// is retried only when a duplicate is accepted; drop; the age bound (time injected into the
// recording script); a recording or a retry run twice (a lost answer) acts once; accepted
// messages are never kept; `sendgrid-worker dead` as a process.
#include <sendgrid_backend/redis/dead_letters.hpp>
#include <sendgrid_backend/redis/worker_cli.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <chrono>
#include <cstdio>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/queue_fixture.hpp"
#include "support/redis_fixture.hpp"

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;
using test_support::fresh_queue;
using test_support::redis_fixture_url;

// Names of their own: the redis tests share one unity-built program.
namespace dead_letters_test {

using Sender = test_support::QueueSender;

std::shared_ptr<sg::RedisClient> redis() {
    return std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_fixture_url()));
}

sg::EmailMessage mail(const std::string& subject) {
    return sg::EmailMessage(subject, "Body", "shop@example.com", {"user@example.com"});
}

/// A worker that claims what a dead one left after 50 ms, its backend giving up on a send after
/// 10 ms and one try.
sg::RedisMailWorker heir(const Sender& sender, std::shared_ptr<sg::RedisClient> client,
                         const sg::RedisQueueOptions& names) {
    sg::Settings settings = sender.backend->settings();
    settings.timeout = 10ms;
    settings.retry.max_tries = 1;
    sg::BackendOptions quiet;
    quiet.fail_silently = true;
    sg::WorkerOptions options = test_support::quick_worker("heir");
    options.visibility_timeout = 50ms;
    return sg::RedisMailWorker(std::make_shared<sg::SendgridBackend>(settings, quiet),
                               std::move(client), names, options);
}

std::int64_t count_of(sg::RedisClient& client, const std::vector<std::string>& command) {
    const sg::RedisValue answer = client.command(command);
    REQUIRE_FALSE(answer.is_error());
    return answer.integer;
}

std::int64_t dead_entries(sg::RedisClient& client, const sg::RedisQueueOptions& names) {
    return count_of(client, {"XLEN", names.dead_letter_key()});
}

std::int64_t index_fields(sg::RedisClient& client, const sg::RedisQueueOptions& names) {
    return count_of(client, {"HLEN", names.dead_letter_index_key()});
}

std::string status_field(sg::RedisClient& client, const sg::RedisQueueOptions& names,
                         const std::string& key, const std::string& field) {
    return client.command({"HGET", names.status_prefix + key, field}).text;
}

/// A queue entry for `key` and a status "sending" owned by worker "w", as a worker leaves them
/// before it records the outcome. Returns the entry's ID.
std::string sending_entry(sg::RedisClient& client, const sg::RedisQueueOptions& names,
                          const std::string& key) {
    const sg::RedisValue id = client.command(
        {"XADD", names.stream, "*", "key", key, "message", sg::serialize_message(mail(key))});
    client.command({"HSET", names.status_prefix + key, "state", "sending", "worker", "w"});
    return id.text;
}

/// Runs the worker's recording of `key` as failed (the dead-letter transition script, as the
/// worker calls it) at `now_ms`; returns the script's answer.
std::int64_t record_failed(sg::RedisClient& client, const sg::RedisQueueOptions& names,
                           const std::string& key, const std::string& entry_id,
                           std::int64_t now_ms) {
    // The transition script's call: keys, from, owner, TTL, to, worker, then fields.
    std::vector<std::string> transition{"2", names.status_prefix + key, names.state_counts_key()};
    for (const char* arg : {"sending", "w", "3600", "failed", "w"}) transition.push_back(arg);
    for (const char* field : {"reason", "refused", "http_status", "400"}) {
        transition.push_back(field);
    }
    const auto ttl = std::chrono::duration_cast<std::chrono::milliseconds>(names.dead_letter_ttl);
    const auto call = sg::detail::dead_letter_transition_call(
        transition, names.stream, names.dead_letter_key(), names.dead_letter_index_key(), key,
        entry_id, now_ms, ttl.count());
    const sg::RedisValue answer =
        sg::detail::stored_dead_letter_transition_script().run(client, {call}).at(0);
    REQUIRE_FALSE(answer.is_error());
    return answer.integer;
}

std::int64_t unix_ms_now() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

TEST_CASE("a message SendGrid refuses is kept once, and a retry sends it once more",
          "[dead][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-refused");
    sg::RedisMailQueue queue(client, names);
    sg::RedisDeadLetters dead(client, names);
    int emissions = 0;
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++emissions; });

    sender.server.push_fault(sg::testing::Fault(400));
    const sg::EmailMessage message = mail("refused");
    queue.enqueue(message, "refused");
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w1"));
    CHECK(worker.run_once() == 1);
    CHECK(emissions == 1);
    CHECK(sender.server.received_count() == 1);
    CHECK(queue.status("refused")->state == sg::QueuedState::failed);
    CHECK(dead_entries(*client, names) == 1);
    CHECK(index_fields(*client, names) == 1);

    const auto letter = dead.show("refused");
    REQUIRE(letter.has_value());
    CHECK(letter->key == "refused");
    CHECK(letter->state == sg::QueuedState::failed);
    CHECK(letter->http_status == 400);
    CHECK(letter->reason == queue.status("refused")->reason);
    CHECK_FALSE(letter->reason.empty());
    CHECK(letter->worker == "w1");
    CHECK(letter->at > 0);
    CHECK(letter->message == sg::serialize_message(message));  // the entry as queued
    CHECK(dead.size() == 1);
    REQUIRE(dead.list(10).size() == 1);
    CHECK(dead.list(10)[0].id == letter->id);

    const sg::DeadLetterRetry retried = dead.retry("refused");
    CHECK(retried.requeued());
    CHECK(queue.status("refused")->state == sg::QueuedState::queued);
    CHECK(queue.status("refused")->http_status == 0);  // the old outcome's fields are gone
    CHECK(status_field(*client, names, "refused", "retries") == "1");
    CHECK(dead_entries(*client, names) == 0);
    CHECK(index_fields(*client, names) == 0);
    CHECK_FALSE(dead.show("refused"));
    CHECK(count_of(*client, {"XLEN", names.stream}) == 1);

    CHECK(worker.run_once() == 1);
    CHECK(sender.server.received_count() == 2);  // exactly one more request
    CHECK(sender.requests_for("refused") == 2);
    CHECK(queue.status("refused")->state == sg::QueuedState::accepted);
    CHECK(emissions == 2);
    CHECK(dead_entries(*client, names) == 0);

    // Nothing is left to retry: no more requests.
    CHECK(dead.retry("refused").outcome == sg::DeadLetterRetry::Outcome::not_found);
    CHECK(worker.run_once() == 0);
    CHECK(sender.server.received_count() == 2);
}

TEST_CASE("an unknown dead letter is re-queued only when a duplicate is accepted",
          "[dead][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-unknown");
    sg::RedisMailQueue queue(client, names);
    sg::RedisDeadLetters dead(client, names);
    queue.enqueue(mail("maybe-sent"), "maybe-sent");
    test_support::worker_died_after_taking(*client, names, "maybe-sent");
    sg::RedisMailWorker claimer = heir(sender, client, names);
    CHECK(claimer.run_once() == 1);
    CHECK(queue.status("maybe-sent")->state == sg::QueuedState::unknown);
    CHECK(sender.server.received_count() == 0);
    const auto letter = dead.show("maybe-sent");
    REQUIRE(letter.has_value());
    CHECK(letter->state == sg::QueuedState::unknown);
    CHECK(letter->reason.find("may have accepted it") != std::string::npos);
    CHECK(letter->http_status == 0);

    const sg::DeadLetterRetry refused = dead.retry("maybe-sent");
    CHECK(refused.outcome == sg::DeadLetterRetry::Outcome::refused_unknown);
    CHECK(refused.explanation.find("SendGrid may have accepted it") != std::string::npos);
    CHECK(dead_entries(*client, names) == 1);  // nothing changed
    CHECK(count_of(*client, {"XLEN", names.stream}) == 0);
    CHECK(queue.status("maybe-sent")->state == sg::QueuedState::unknown);

    CHECK(dead.retry("maybe-sent", sg::RetryUnknown::allow_duplicate).requeued());
    CHECK(dead_entries(*client, names) == 0);
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w2"));
    CHECK(worker.run_once() == 1);
    CHECK(sender.requests_for("maybe-sent") == 1);
    CHECK(queue.status("maybe-sent")->state == sg::QueuedState::accepted);
}

TEST_CASE("drop removes a dead letter and leaves its status", "[dead][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-drop");
    sg::RedisMailQueue queue(client, names);
    sg::RedisDeadLetters dead(client, names);
    sender.server.push_fault(sg::testing::Fault(413));
    queue.enqueue(mail("too-big"), "too-big");
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w3"));
    CHECK(worker.run_once() == 1);
    REQUIRE(dead_entries(*client, names) == 1);
    CHECK(dead.show("too-big")->http_status == 413);

    CHECK(dead.drop("too-big"));
    CHECK(dead_entries(*client, names) == 0);
    CHECK(index_fields(*client, names) == 0);
    CHECK(queue.status("too-big")->state == sg::QueuedState::failed);
    CHECK(queue.status("too-big")->http_status == 413);
    CHECK_FALSE(dead.drop("too-big"));
    CHECK(dead.retry("too-big").outcome == sg::DeadLetterRetry::Outcome::not_found);
    CHECK(count_of(*client, {"XLEN", names.stream}) == 0);
    CHECK(sender.server.received_count() == 1);
}

TEST_CASE("accepted messages are never kept; with dead letters off, nothing is", "[dead][redis]") {
    Sender sender;
    auto client = redis();
    auto names = fresh_queue("dead-accepted");
    sg::RedisMailQueue queue(client, names);
    for (int i = 0; i < 3; ++i) queue.enqueue(mail("fine"), "fine-" + std::to_string(i));
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w4"));
    while (worker.run_once() > 0) {
    }
    CHECK(sender.server.received_count() == 3);
    for (int i = 0; i < 3; ++i) {
        CHECK(queue.status("fine-" + std::to_string(i))->state == sg::QueuedState::accepted);
    }
    CHECK(count_of(*client, {"EXISTS", names.dead_letter_key()}) == 0);
    CHECK(count_of(*client, {"EXISTS", names.dead_letter_index_key()}) == 0);

    names.dead_letters = false;
    sender.server.push_fault(sg::testing::Fault(400));
    queue.enqueue(mail("refused"), "refused-off");
    sg::RedisMailWorker off(sender.backend, client, names, test_support::quick_worker("w5"));
    CHECK(off.run_once() == 1);
    CHECK(queue.status("refused-off")->state == sg::QueuedState::failed);
    CHECK(count_of(*client, {"EXISTS", names.dead_letter_key()}) == 0);
}

TEST_CASE("an entry no worker could read is kept with what it held", "[dead][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-unreadable");
    sg::RedisDeadLetters dead(client, names);
    client->command({"XADD", names.stream, "*", "key", "garbled", "message", "{not json"});
    client->command({"HSET", names.status_prefix + "garbled", "state", "queued"});
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w6"));
    CHECK(worker.run_once() == 1);
    CHECK(sender.server.received_count() == 0);
    const auto letter = dead.show("garbled");
    REQUIRE(letter.has_value());
    CHECK(letter->state == sg::QueuedState::failed);
    CHECK(letter->message == "{not json");
    CHECK(letter->reason.find("not a message") != std::string::npos);
}

TEST_CASE("a recording or a retry run twice (its answer lost) acts once", "[dead][redis]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-twice");
    const std::string entry = sending_entry(*client, names, "twice");
    const std::int64_t now = unix_ms_now();
    CHECK(record_failed(*client, names, "twice", entry, now) == 1);
    CHECK(record_failed(*client, names, "twice", entry, now) == 1);  // the same call again
    CHECK(dead_entries(*client, names) == 1);
    CHECK(client->command({"HGET", names.state_counts_key(), "failed"}).text == "1");

    // The same retry call twice: re-queued once, and the second says it is done.
    const std::vector<std::string> retry{"6",
                                         names.dead_letter_key(),
                                         names.dead_letter_index_key(),
                                         names.status_prefix + "twice",
                                         names.stream,
                                         names.state_counts_key(),
                                         names.scheduled_key(),
                                         "twice",
                                         "0",
                                         "token-1",
                                         "1700000000",
                                         "3600",
                                         "0",
                                         names.group};
    // The worker that took the entry stopped before its XACK and XDEL: the entry is still
    // pending. The retry acknowledges and deletes it itself, so that no other worker claims and
    // sends it beside the new one.
    client->command({"XGROUP", "CREATE", names.stream, names.group, "0", "MKSTREAM"});
    client->command({"XREADGROUP", "GROUP", names.group, "stopped", "STREAMS", names.stream, ">"});
    REQUIRE(client->command({"XPENDING", names.stream, names.group}).elements.at(0).integer == 1);
    auto& script = sg::detail::stored_script<&sg::detail::dead_letter_retry_script>();
    const sg::RedisValue first = script.run(*client, {retry}).at(0);
    const sg::RedisValue second = script.run(*client, {retry}).at(0);
    REQUIRE(first.elements.size() == 2);
    REQUIRE(second.elements.size() == 2);
    CHECK(first.elements[0].integer == 1);
    CHECK(second.elements[0].integer == 1);
    CHECK(count_of(*client, {"XLEN", names.stream}) == 1);  // the new entry only
    CHECK(client->command({"XPENDING", names.stream, names.group}).elements.at(0).integer == 0);
    CHECK(status_field(*client, names, "twice", "retries") == "1");
    CHECK(client->command({"HGET", names.state_counts_key(), "queued"}).text == "1");
    CHECK(dead_entries(*client, names) == 0);

    // A worker sends it: one request.
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w7"));
    CHECK(worker.run_once() == 1);
    CHECK(sender.requests_for("twice") == 1);
    CHECK(sender.server.received_count() == 1);
    // The first call's token still answers "done" without adding anything.
    CHECK(script.run(*client, {retry}).at(0).elements.at(0).integer == 1);
    CHECK(count_of(*client, {"XLEN", names.stream}) == 0);
}

TEST_CASE("dead letters older than dead_letter_ttl go as later ones are recorded",
          "[dead][redis]") {
    auto client = redis();
    auto names = fresh_queue("dead-bound");
    names.dead_letter_ttl = 1h;
    sg::RedisDeadLetters dead(client, names);
    const std::int64_t start = unix_ms_now();
    const std::int64_t hour = 3'600'000;
    record_failed(*client, names, "first", sending_entry(*client, names, "first"), start);
    record_failed(*client, names, "second", sending_entry(*client, names, "second"), start + 1000);
    // An hour after the first, it is not older than the bound yet.
    record_failed(*client, names, "third", sending_entry(*client, names, "third"), start + hour);
    CHECK(dead_entries(*client, names) == 3);
    // Half a second later it is, the second is not.
    record_failed(*client, names, "fourth", sending_entry(*client, names, "fourth"),
                  start + hour + 500);
    CHECK(dead_entries(*client, names) == 3);
    CHECK(index_fields(*client, names) == 3);
    CHECK_FALSE(dead.show("first"));
    CHECK(dead.show("second"));
    CHECK(dead.retry("first").outcome == sg::DeadLetterRetry::Outcome::not_found);
    // Newest first.
    const auto listed = dead.list(10);
    REQUIRE(listed.size() == 3);
    CHECK(listed[0].key == "fourth");
    CHECK(listed[2].key == "second");
    CHECK(listed[0].at == (start + hour + 500) / 1000);
    // The store expires whole when none is recorded for the bound.
    const std::int64_t ttl_ms = count_of(*client, {"PTTL", names.dead_letter_key()});
    CHECK(ttl_ms > 0);
    CHECK(ttl_ms <= hour);

    // A key recorded again replaces its dead letter.
    const std::string again = sending_entry(*client, names, "second");
    record_failed(*client, names, "second", again, start + hour + 600);
    CHECK(dead_entries(*client, names) == 3);
    CHECK(dead.list(1).at(0).key == "second");

    // An index field whose entry is gone (trimmed by hand, or expired apart) reads as gone.
    client->command({"HSET", names.dead_letter_index_key(), "ghost", "1-0"});
    CHECK_FALSE(dead.show("ghost"));
    CHECK(dead.retry("ghost").outcome == sg::DeadLetterRetry::Outcome::not_found);
    CHECK(client->command({"HEXISTS", names.dead_letter_index_key(), "ghost"}).integer == 0);
    client->command({"HSET", names.dead_letter_index_key(), "ghost", "1-0"});
    CHECK_FALSE(dead.drop("ghost"));
}

TEST_CASE("dead-letter options and arguments out of range are refused by name", "[dead][redis]") {
    auto refused = [](auto change) -> std::string {
        sg::RedisQueueOptions names = fresh_queue("dead-options");
        change(names);
        try {
            sg::RedisDeadLetters dead(redis(), names);
        } catch (const sg::ImproperlyConfigured& error) {
            return error.setting();
        }
        return "<no error>";
    };
    using Queue = sg::RedisQueueOptions;
    CHECK(refused([](Queue& q) { q.dead_letter_ttl = 0s; }) ==
          "RedisQueueOptions::dead_letter_ttl");
    CHECK(refused([](Queue& q) { q.dead_letter_ttl = Queue::max_dead_letter_ttl + 1s; }) ==
          "RedisQueueOptions::dead_letter_ttl");
    CHECK(refused([](Queue& q) { q.dead_letter_ttl = Queue::max_dead_letter_ttl; }) ==
          "<no error>");
    // A status key could overwrite the dead letters or their index.
    CHECK(refused([](Queue& q) { q.status_prefix = q.stream + ":dead"; }) ==
          "RedisQueueOptions::status_prefix");
    CHECK(refused([](Queue& q) { q.status_prefix = q.stream + ":dead:"; }) ==
          "RedisQueueOptions::status_prefix");
    CHECK_THROWS_AS(sg::RedisMailQueue(redis(),
                                       [] {
                                           Queue q;
                                           q.status_prefix = q.stream + ":d";
                                           return q;
                                       }()),
                    sg::ImproperlyConfigured);
    sg::RedisDeadLetters dead(redis(), fresh_queue("dead-list"));
    CHECK_THROWS_AS(dead.list(0), sg::ImproperlyConfigured);
    CHECK_THROWS_AS(dead.list(sg::RedisDeadLetters::max_list + 1), sg::ImproperlyConfigured);
    CHECK(dead.list(sg::RedisDeadLetters::max_list).empty());
    CHECK_THROWS_AS(sg::RedisDeadLetters(nullptr), sg::ImproperlyConfigured);
}

struct Run {
    int status = -1;
    std::string out;
    std::string err;
};

/// `sendgrid-worker ARGS` with `env` (SENDGRID_* variables of this process left out).
Run worker_program(const std::vector<std::string>& args, const std::vector<std::string>& env = {}) {
    const std::string base = test_support::unique_base("dead");
    Run result;
    result.status = test_support::wait_for_exit(test_support::spawn(
        SENDGRID_BACKEND_WORKER_PROGRAM, args, env, base + ".out", base + ".err"));
    result.out = test_support::read_file(base + ".out");
    result.err = test_support::read_file(base + ".err");
    std::remove((base + ".out").c_str());
    std::remove((base + ".err").c_str());
    return result;
}

/// `sendgrid-worker dead ARGS` on the fixture's Redis and `names`.
Run dead_command(const sg::RedisQueueOptions& names, std::vector<std::string> args,
                 const std::vector<std::string>& env = {}) {
    args.insert(args.begin(), "dead");
    for (const std::string& flag :
         {"--redis=" + redis_fixture_url(), "--stream=" + names.stream, "--group=" + names.group,
          "--status-prefix=" + names.status_prefix}) {
        args.push_back(flag);
    }
    return worker_program(args, env);
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream stream(text);
    for (std::string line; std::getline(stream, line);) lines.push_back(line);
    return lines;
}

TEST_CASE("sendgrid-worker dead: list, show, retry, drop as a process", "[dead][redis][cli]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-cli");
    sg::RedisMailQueue queue(client, names);
    sender.server.push_fault(sg::testing::Fault(400));
    queue.enqueue(mail("Refused subject"), "cli-refused");
    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("cli"));
    CHECK(worker.run_once() == 1);
    queue.enqueue(mail("Maybe sent"), "cli-unknown");
    test_support::worker_died_after_taking(*client, names, "cli-unknown");
    sg::RedisMailWorker claimer = heir(sender, client, names);
    CHECK(claimer.run_once() == 1);
    REQUIRE(dead_entries(*client, names) == 2);

    const std::string secret = "SENDGRID_API_KEY=SG.never-print-this-key";
    const Run list = dead_command(names, {"list", "--count", "10"}, {secret});
    INFO(list.err);
    CHECK(list.status == 0);
    const auto lines = lines_of(list.out);
    REQUIRE(lines.size() == 2);  // newest first
    CHECK(lines[0].find("\tunknown\t0\tcli-unknown\t") != std::string::npos);
    CHECK(lines[1].find("\tfailed\t400\tcli-refused\t") != std::string::npos);
    CHECK(lines_of(dead_command(names, {"list", "--count=1"}).out).size() == 1);

    const Run show = dead_command(names, {"show", "cli-refused"}, {secret});
    CHECK(show.status == 0);
    CHECK(show.out.find("key: cli-refused\nstate: failed\n") != std::string::npos);
    CHECK(show.out.find("http_status: 400\n") != std::string::npos);
    CHECK(show.out.find("\"subject\": \"Refused subject\"") != std::string::npos);
    for (const Run* run : {&list, &show}) {
        CHECK(run->out.find("never-print-this-key") == std::string::npos);
        CHECK(run->err.find("never-print-this-key") == std::string::npos);
        CHECK(run->out.find(sender.server.api_key()) == std::string::npos);
    }
    CHECK(dead_command(names, {"show", "nothing-here"}).status == 1);

    const Run refused = dead_command(names, {"retry", "cli-unknown"});
    CHECK(refused.status == 1);
    CHECK(refused.err.find("SendGrid may have accepted it") != std::string::npos);
    CHECK(refused.err.find("--i-know-it-may-duplicate") != std::string::npos);
    CHECK(dead_entries(*client, names) == 2);
    CHECK(dead_command(names, {"retry", "cli-unknown", "--i-know-it-may-duplicate"}).status == 0);
    CHECK(dead_command(names, {"retry", "cli-refused"}).status == 0);
    const Run again = dead_command(names, {"retry", "cli-refused"});
    CHECK(again.status == 1);
    CHECK(again.err.find("no dead letter under 'cli-refused'") != std::string::npos);
    CHECK(dead_entries(*client, names) == 0);

    // The worker sends both once more.
    const std::size_t before = sender.server.received_count();
    while (worker.run_once() > 0) {
    }
    CHECK(sender.server.received_count() == before + 2);
    CHECK(queue.status("cli-refused")->state == sg::QueuedState::accepted);
    CHECK(queue.status("cli-unknown")->state == sg::QueuedState::accepted);

    // drop
    sender.server.push_fault(sg::testing::Fault(403));
    queue.enqueue(mail("Forbidden"), "cli-drop");
    CHECK(worker.run_once() == 1);
    CHECK(dead_command(names, {"drop", "cli-drop"}).status == 0);
    CHECK(dead_command(names, {"drop", "cli-drop"}).status == 1);
    CHECK(dead_entries(*client, names) == 0);
    CHECK(queue.status("cli-drop")->state == sg::QueuedState::failed);
}

TEST_CASE("sendgrid-worker dead refuses a bad command line with status 2", "[dead][redis][cli]") {
    const auto names = fresh_queue("dead-usage");
    const std::vector<std::pair<std::vector<std::string>, std::string>> refusals{
        {{}, "dead needs a command: list, show KEY, retry KEY or drop KEY"},
        {{"resurrect"}, "dead: unknown command 'resurrect'"},
        {{"show"}, "dead show needs the message's queue KEY"},
        {{"retry"}, "dead retry needs the message's queue KEY"},
        {{"list", "extra"}, "unexpected argument 'extra'"},
        {{"show", "a", "b"}, "unexpected argument 'b'"},
        {{"list", "--count", "0"},
         "--count: '0' is out of range; give a number of dead letters "
         "1-10000"},
        {{"list", "--count", "10001"}, "--count: '10001' is out of range"},
        {{"show", "k", "--count", "3"}, "--count is for dead list, not dead show"},
        {{"drop", "k", "--i-know-it-may-duplicate"},
         "--i-know-it-may-duplicate is for dead retry, not dead drop"},
        {{"retry", "k", "--i-know-it-may-duplicate=yes"},
         "--i-know-it-may-duplicate takes no value (it was given 'yes')"},
    };
    for (const auto& [args, expected] : refusals) {
        const Run result = dead_command(names, args);
        INFO(result.err);
        CHECK(result.status == 2);
        CHECK(result.err.find("sendgrid-worker: " + expected) != std::string::npos);
    }
    // The URL's source is blamed, with the password hidden.
    const Run url = worker_program({"dead", "list", "--redis", "redis://u:hunter2@h:99999"});
    CHECK(url.status == 2);
    CHECK(url.err.find("--redis 'redis://u:***@h:99999'") != std::string::npos);
    CHECK(url.err.find("hunter2") == std::string::npos);

    const Run help = dead_command(names, {"--help"});
    CHECK(help.status == 0);
    CHECK(help.out.find("sendgrid-worker dead retry KEY [--i-know-it-may-duplicate]") !=
          std::string::npos);
    const Run worker_help = worker_program({"--help"});
    CHECK(worker_help.status == 0);
    CHECK(worker_help.out.find("--dead-letter-ttl S") != std::string::npos);
    CHECK(worker_help.out.find("sendgrid-worker dead list|show KEY|retry KEY|drop KEY") !=
          std::string::npos);
    // The worker refuses its dead-letter flags' bad values before anything starts.
    const Run ttl = worker_program({"--dead-letter-ttl", "0"}, {"SENDGRID_API_KEY=SG.test-key"});
    CHECK(ttl.status == 2);
    CHECK(ttl.err.find("--dead-letter-ttl: '0' is out of range; give seconds 1-31622400") !=
          std::string::npos);

    // The worker's own dead-letter flags.
    auto line = [](std::vector<const char*> args) {
        args.insert(args.begin(), "sendgrid-worker");
        return sg::detail::parse_worker_command_line(static_cast<int>(args.size()), args.data(),
                                                     nullptr);
    };
    CHECK(line({}).queue.dead_letters);
    CHECK(line({}).queue.dead_letter_ttl == std::chrono::hours(24 * 30));
    CHECK_FALSE(line({"--no-dead-letters"}).queue.dead_letters);
    CHECK(line({"--dead-letter-ttl=31622400"}).queue.dead_letter_ttl ==
          sg::RedisQueueOptions::max_dead_letter_ttl);
    CHECK(line({"--dead-letter-ttl", "1"}).queue.dead_letter_ttl == 1s);
    CHECK_THROWS_WITH(line({"--dead-letter-ttl", "0"}),
                      Catch::Matchers::Contains("--dead-letter-ttl: '0' is out of range; give "
                                                "seconds 1-31622400"));
    CHECK_THROWS_WITH(line({"--dead-letter-ttl", "31622401"}),
                      Catch::Matchers::Contains("'31622401' is out of range"));
    CHECK_THROWS_WITH(line({"--no-dead-letters=yes"}), Catch::Matchers::Contains("takes no value"));
}

TEST_CASE("a dead letter and a scheduled message under one key: neither is sent twice",
          "[dead][redis][scheduled]") {
    Sender sender;
    auto client = redis();
    const auto names = fresh_queue("dead-scheduled");
    sg::RedisDeadLetters dead(client, names);
    sg::RedisScheduleMover mover(client, names);
    const auto schedule_again = [&](const std::string& key) {
        // A later use of the key, scheduled and due, whose own status expired before a mover
        // ran (as after a long outage): only the set and the message are left.
        client->command({"ZADD", names.scheduled_key(), "1", key});
        client->command(
            {"HSET", names.scheduled_messages_key(), key, sg::serialize_message(mail(key))});
    };

    // Waiting in the set: the dead letter is not retried.
    // Each ended failed (its worker finished: the entry is gone) and its status expired.
    std::string entry = sending_entry(*client, names, "first");
    REQUIRE(record_failed(*client, names, "first", entry, unix_ms_now()) == 1);
    client->command({"XDEL", names.stream, entry});
    client->command({"DEL", names.status_prefix + "first"});
    schedule_again("first");
    CHECK(dead.retry("first").outcome == sg::DeadLetterRetry::Outcome::refused_state);
    CHECK(mover.move_due().moved == 1);

    // Retried first: the mover drops the stale scheduled one instead of queuing it again.
    entry = sending_entry(*client, names, "second");
    REQUIRE(record_failed(*client, names, "second", entry, unix_ms_now()) == 1);
    client->command({"XDEL", names.stream, entry});
    client->command({"DEL", names.status_prefix + "second"});
    CHECK(dead.retry("second").requeued());
    schedule_again("second");
    CHECK(mover.move_due().moved == 0);
    CHECK(count_of(*client, {"ZCARD", names.scheduled_key()}) == 0);

    sg::RedisMailWorker worker(sender.backend, client, names, test_support::quick_worker("w9"));
    for (int round = 0; round < 5; ++round) worker.run_once();
    CHECK(sender.requests_for("first") == 1);
    CHECK(sender.requests_for("second") == 1);
}

}  // namespace dead_letters_test
