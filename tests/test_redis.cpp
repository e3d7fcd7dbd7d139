// The Redis client and the shared metrics store against a real redis-server (the ctest fixture
// starts one on 127.0.0.1 with a temporary directory and stops it).
#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/redis/metrics.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"
#include "support/redis_fixture.hpp"

using sendgrid_backend::RedisClient;
using sendgrid_backend::RedisOptions;
using sendgrid_backend::RedisValue;
using test_support::redis_fixture_url;

namespace {

std::string unique_key(const std::string& name) {
    static int counter = 0;
    return "test:" + name + ":" + std::to_string(::getpid()) + ":" + std::to_string(++counter);
}

std::string refused_url(const std::string& url) {
    try {
        RedisOptions::from_url(url);
    } catch (const sendgrid_backend::ImproperlyConfigured& e) {
        return e.setting();
    }
    return "<no error>";
}

}  // namespace

TEST_CASE("Redis URLs: host, port, credentials, database; TLS refused with a reason",
          "[redis][settings]") {
    const RedisOptions plain = RedisOptions::from_url("redis://127.0.0.1:6380");
    CHECK(plain.host == "127.0.0.1");
    CHECK(plain.port == 6380);
    CHECK(plain.password.empty());
    CHECK(plain.database == 0);
    const RedisOptions full = RedisOptions::from_url("redis://worker:s3cret@cache.internal/3");
    CHECK(full.host == "cache.internal");
    CHECK(full.port == 6379);
    CHECK(full.username == "worker");
    CHECK(full.password == "s3cret");
    CHECK(full.database == 3);
    CHECK(RedisOptions::from_url("redis://:pw@h:1").password == "pw");
    CHECK(RedisOptions::from_url("redis://:pw@h:1").username.empty());
    for (const char* bad : {"http://h", "rediss://h", "redis://", "redis://h:0", "redis://h:70000",
                            "redis://h/x", "redis://h h"}) {
        INFO(bad);
        CHECK(refused_url(bad) == "SENDGRID_REDIS_URL");
    }
    try {
        RedisOptions::from_url("rediss://:topsecret@h");
    } catch (const std::exception& e) {
        CHECK(std::string(e.what()).find("topsecret") == std::string::npos);
        CHECK(std::string(e.what()).find("stunnel") != std::string::npos);
    }
}

TEST_CASE("commands and pipelines, binary-safe", "[redis]") {
    RedisClient redis(RedisOptions::from_url(redis_fixture_url()));
    const std::string key = unique_key("binary");
    const std::string value("a\0b\r\n\xff", 6);
    CHECK(redis.command({"SET", key, value}).text == "OK");
    CHECK(redis.command({"GET", key}).text == value);
    CHECK(redis.command({"GET", unique_key("missing")}).is_nil());
    const auto answers = redis.pipeline({{"INCR", key + "n"}, {"INCR", key + "n"}, {"NOSUCH"}});
    REQUIRE(answers.size() == 3);
    CHECK(answers[0].integer == 1);
    CHECK(answers[1].integer == 2);
    CHECK(answers[2].is_error());
    // An error answer does not break the connection.
    CHECK(redis.command({"PING"}).text == "PONG");
}

TEST_CASE("streamed commands: each answer handed over as it is read, before the next", "[redis]") {
    RedisClient redis(RedisOptions::from_url(redis_fixture_url()));
    RedisClient other(RedisOptions::from_url(redis_fixture_url()));
    const std::string list = unique_key("streamed");
    // Two groups: the first of one command, the second of two (sent in one write).
    std::string first, second;
    sendgrid_backend::detail::append_command(first, {"PING"});
    sendgrid_backend::detail::append_command(second, {"BLPOP", list, "5"});
    sendgrid_backend::detail::append_command(second, {"LLEN", list});
    const std::vector<sendgrid_backend::FormattedCommands> commands = {{first, 1}, {second, 2}};
    std::size_t next = 0;
    std::vector<std::size_t> handed;
    const auto started = std::chrono::steady_clock::now();
    // The BLPOP waits for a push the first answer's handler makes: were answers handed over
    // only once all were read, it would wait its 5 s out and answer nil.
    const std::vector<RedisValue> answers = redis.pipeline_streamed(
        [&]() -> const sendgrid_backend::FormattedCommands* {
            return next < commands.size() ? &commands[next++] : nullptr;
        },
        [&](std::size_t i, const RedisValue& answer) {
            handed.push_back(i);
            if (i == 0) {
                CHECK(answer.text == "PONG");
                CHECK(other.command({"RPUSH", list, "pushed"}).integer == 1);
            }
        });
    CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds(4));
    REQUIRE(answers.size() == 3);
    REQUIRE(answers[1].elements.size() == 2);
    CHECK(answers[1].elements[1].text == "pushed");
    CHECK(answers[2].integer == 0);
    CHECK(handed == std::vector<std::size_t>{0, 1, 2});

    // A handler that throws: thrown, the answers after it not read as another call's.
    next = 0;
    std::string one, two;
    sendgrid_backend::detail::append_command(one, {"ECHO", "one"});
    sendgrid_backend::detail::append_command(two, {"ECHO", "two"});
    const std::vector<sendgrid_backend::FormattedCommands> echoes = {{one, 1}, {two, 1}};
    CHECK_THROWS_WITH(redis.pipeline_streamed(
                          [&]() -> const sendgrid_backend::FormattedCommands* {
                              return next < echoes.size() ? &echoes[next++] : nullptr;
                          },
                          [](std::size_t, const RedisValue&) { throw std::runtime_error("no"); }),
                      "no");
    CHECK(redis.command({"ECHO", "three"}).text == "three");
}

TEST_CASE("commands written in Redis' protocol are binary-safe, several to a group", "[redis]") {
    RedisClient redis(RedisOptions::from_url(redis_fixture_url()));
    const std::string key = unique_key("formatted");
    const char text[] = "line\r\n$3\r\n*1\0end";  // protocol text and a NUL inside
    const std::string value(text, sizeof text - 1);
    std::string group;
    sendgrid_backend::detail::append_command(group, {"SET", key, value});
    sendgrid_backend::detail::append_command(group, {"APPEND", key, std::string_view("\0", 1)});
    sendgrid_backend::detail::append_command(group, {"GET", key});
    std::string empty_argument;
    sendgrid_backend::detail::append_command(empty_argument, {"ECHO", ""});
    const std::vector<RedisValue> answers =
        redis.pipeline_formatted({{group, 3}, {empty_argument, 1}});
    REQUIRE(answers.size() == 4);
    CHECK(answers[0].text == "OK");
    CHECK(answers[1].integer == static_cast<std::int64_t>(value.size() + 1));
    CHECK(answers[2].text == value + std::string("\0", 1));
    CHECK(answers[3].type == RedisValue::Type::string);
    CHECK(answers[3].text.empty());
    CHECK(redis.command({"DEL", key}).integer == 1);
}

TEST_CASE("a lost connection is reported for the command under way, then reconnected", "[redis]") {
    RedisClient redis(RedisOptions::from_url(redis_fixture_url()));
    RedisClient admin(RedisOptions::from_url(redis_fixture_url()));
    const std::string id = std::to_string(redis.command({"CLIENT", "ID"}).integer);
    // Kill this client's connection (only it: other tests share the server) from another one.
    CHECK(admin.command({"CLIENT", "KILL", "ID", id}).integer == 1);
    CHECK_THROWS_AS(redis.command({"PING"}), sendgrid_backend::RedisConnectionLost);
    CHECK(redis.command({"PING"}).text == "PONG");  // the next command reconnects
}

TEST_CASE("a server that closed the connection is an error, not a SIGPIPE ending the process",
          "[redis]") {
    // A listener that takes each connection and closes it at once: the client's large write
    // meets a closed socket (EPIPE, which by default raises SIGPIPE).
    const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listener >= 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&address), &length) == 0);
    REQUIRE(::listen(listener, 4) == 0);
    std::thread closer([listener] {
        for (int i = 0; i < 2; ++i) {
            const int connection = ::accept(listener, nullptr, nullptr);
            if (connection < 0) return;
            ::close(connection);
        }
    });
    sendgrid_backend::RedisOptions options;
    options.host = "127.0.0.1";
    options.port = ntohs(address.sin_port);
    options.reconnect_for = std::chrono::milliseconds(0);
    sendgrid_backend::RedisClient client(options);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));  // closed by now
    const std::string large(8 << 20, 'x');
    CHECK_THROWS_AS(client.command({"SET", "k", large}), sendgrid_backend::RedisError);
    CHECK_THROWS_AS(client.pipeline_streamed(
                        [&, sent = false]() mutable -> const sendgrid_backend::FormattedCommands* {
                            static std::string set;
                            static sendgrid_backend::FormattedCommands formatted;
                            if (set.empty()) {
                                sendgrid_backend::detail::append_command(set, {"SET", "k", large});
                                formatted = {set, 1};
                            }
                            if (std::exchange(sent, true)) return nullptr;
                            return &formatted;
                        }),
                    sendgrid_backend::RedisError);
    ::shutdown(listener, SHUT_RDWR);
    ::close(listener);
    closer.join();
}

TEST_CASE("an ACL user with a password, on a database of its own", "[redis]") {
    RedisClient admin(RedisOptions::from_url(redis_fixture_url()));
    const std::string user = "sgtest" + std::to_string(::getpid());
    REQUIRE(admin.command({"ACL", "SETUSER", user, "on", ">pa55word", "~*", "+@all"}).text == "OK");
    RedisOptions options = RedisOptions::from_url(redis_fixture_url());
    options.username = user;
    options.password = "pa55word";
    options.database = 3;
    RedisClient client(options);
    CHECK(client.command({"ACL", "WHOAMI"}).text == user);
    const std::string key = unique_key("db3");
    CHECK(client.command({"SET", key, "here"}).text == "OK");
    CHECK(admin.command({"EXISTS", key}).integer == 0);  // not in database 0
    CHECK(admin.command({"SELECT", "3"}).text == "OK");
    CHECK(admin.command({"GET", key}).text == "here");

    options.password = "wrong-pa55word";
    options.reconnect_for = std::chrono::milliseconds(0);
    try {
        RedisClient refused(options);
        FAIL("a wrong password was accepted");
    } catch (const sendgrid_backend::RedisError& e) {
        CHECK(std::string(e.what()).find("wrong-pa55word") == std::string::npos);
        CHECK(std::string(e.what()).find("refused the credentials") != std::string::npos);
    }
    admin.command({"SELECT", "0"});
    admin.command({"ACL", "DELUSER", user});
}

TEST_CASE("an unreachable Redis is a clear error at construction", "[redis]") {
    RedisOptions options = RedisOptions::from_url("redis://127.0.0.1:1");
    options.reconnect_for = std::chrono::milliseconds(0);
    CHECK_THROWS_WITH(RedisClient(options),
                      Catch::Contains("cannot connect to Redis at 127.0.0.1:1"));
}

TEST_CASE("the Redis metrics store: one transaction per send, a day's hash with a TTL",
          "[redis][metrics]") {
    auto redis = std::make_shared<RedisClient>(RedisOptions::from_url(redis_fixture_url()));
    const std::string prefix = unique_key("metrics") + ":";
    auto store = std::make_shared<sendgrid_backend::RedisMetricsStore>(redis, prefix);
    sendgrid_backend::EmailMetricsRecorder metrics(store, [] { return std::string("2026-11-29"); });
    std::vector<std::thread> threads;
    for (int t = 0; t < 4; ++t) {
        threads.emplace_back([&] {
            for (int i = 0; i < 250; ++i) {
                sendgrid_backend::EmailMessage message("s", "b", "shop@example.com",
                                                       {"a@example.com"});
                message.template_id = "d-7";
                message.outcome.status = sendgrid_backend::SendStatus::accepted;
                metrics.record(message, false);
                message.outcome.status = sendgrid_backend::SendStatus::rejected;
                message.outcome.http_status = 429;
                metrics.record(message, true);
            }
        });
    }
    for (auto& thread : threads) thread.join();
    const auto day = metrics.get_email_metrics("2026-11-29");
    CHECK(day.sent == 1000);
    CHECK(day.failed == 1000);
    CHECK(day.templates.at("d-7") == 1000);
    CHECK(day.recipient_domains.at("example.com") == 1000);
    CHECK(day.failure_reasons.at("rejected:429") == 1000);
    const RedisValue ttl = redis->command({"TTL", prefix + "2026-11-29"});
    CHECK(ttl.integer > 86000);
    CHECK(ttl.integer <= 86400);
}
