// The sendgrid-worker and sendgrid-fake-server command lines: each refusal names the flag (or
// the environment variable) and the value typed and says what would be valid; every number
// has an upper bound. The programs run as processes (each case stops before anything
// connects, so no Redis is needed); the parsers are also checked in this process for the
// values they accept.
#include <sendgrid_backend/redis/worker_cli.hpp>
#include <sendgrid_backend/testing/fake_server_cli.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <httplib.h>
#include <nlohmann/json.hpp>

// FakeServerCollectable is compiled here exactly when the program has it.
#if defined(SENDGRID_BACKEND_FAKE_SERVER_PROMETHEUS) != SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
#error "tests/CMakeLists.txt: test_programs must build FakeServerCollectable as the program does"
#endif
#if SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
#include <prometheus/metric_family.h>
#include <prometheus/text_serializer.h>
#endif

#include "catch.hpp"
#include "support/child_process.hpp"
#include "support/prometheus_text.hpp"

namespace sg = sendgrid_backend;
using test_support::read_file;
using test_support::Running;
using test_support::spawn;
using test_support::wait_for_exit;

namespace {

struct Run {
    int status = -1;  ///< the exit status; -1 when the program did not exit (in 20 s)
    std::string out;
    std::string err;
};

/// Runs `program` with `args` in this environment without SENDGRID_* variables, plus `env`.
Run run(const char* program, const std::vector<std::string>& args,
        const std::vector<std::string>& env = {}) {
    const std::string base = "/tmp/sendgrid-test-programs-" + std::to_string(::getpid());
    const std::string out = base + ".out";
    const std::string err = base + ".err";
    Run result;
    result.status = wait_for_exit(spawn(program, args, env, out, err));
    result.out = read_file(out);
    result.err = read_file(err);
    std::remove(out.c_str());
    std::remove(err.c_str());
    // In a sanitizer build, no value reached arithmetic that overflows.
    CHECK(result.err.find("runtime error:") == std::string::npos);
    return result;
}

const char* const worker = SENDGRID_BACKEND_WORKER_PROGRAM;
const char* const fake_server = SENDGRID_BACKEND_FAKE_SERVER_PROGRAM;
const std::string key = "SENDGRID_API_KEY=SG.test-key";

/// A refusal: exit status 2 and `expected` on stderr.
void check_refused(const char* program, const std::vector<std::string>& args,
                   const std::string& expected, const std::vector<std::string>& env = {key}) {
    const Run result = run(program, args, env);
    INFO(result.err);
    CHECK(result.status == 2);
    CHECK(result.err.find(expected) != std::string::npos);
}

/// The refusal of --metrics by a program built without prometheus-cpp, whole.
std::string built_without_metrics(const std::string& program) {
    return program + ": --metrics: this " + program +
           " was built without prometheus-cpp (Debian: prometheus-cpp-dev; then configure "
           "again)\n";
}

/// Parses `args` as the worker's command line (SENDGRID_REDIS_URL unset).
sg::detail::WorkerCommandLine worker_line(std::vector<const char*> args) {
    args.insert(args.begin(), "sendgrid-worker");
    return sg::detail::parse_worker_command_line(static_cast<int>(args.size()), args.data(),
                                                 nullptr);
}

sg::testing::detail::FakeServerCommandLine fake_server_line(std::vector<const char*> args) {
    args.insert(args.begin(), "sendgrid-fake-server");
    return sg::testing::detail::parse_fake_server_command_line(static_cast<int>(args.size()),
                                                               args.data());
}

}  // namespace

TEST_CASE("sendgrid-worker blames the Redis URL's source and shows a valid one", "[cli][worker]") {
    // Typed on the command line: --redis is blamed, not SENDGRID_REDIS_URL.
    check_refused(worker, {"--redis", "http://x"},
                  "sendgrid-worker: --redis 'http://x': must start with redis://; a valid URL "
                  "looks like redis://host:port/db, e.g. redis://127.0.0.1:6379/0");
    const Run typed = run(worker, {"--redis=http://x"}, {key, "SENDGRID_REDIS_URL=redis://h:1"});
    CHECK(typed.err.find("--redis 'http://x'") != std::string::npos);
    CHECK(typed.err.find("SENDGRID_REDIS_URL") == std::string::npos);
    // From the environment: the variable is blamed.
    check_refused(worker, {}, "sendgrid-worker: SENDGRID_REDIS_URL 'redis://h:99999': the port",
                  {key, "SENDGRID_REDIS_URL=redis://h:99999"});
    // A password is never echoed.
    const Run secret = run(worker, {"--redis", "redis://user:hunter2@h:0"}, {key});
    CHECK(secret.status == 2);
    CHECK(secret.err.find("--redis 'redis://user:***@h:0'") != std::string::npos);
    CHECK(secret.err.find("hunter2") == std::string::npos);
}

TEST_CASE("sendgrid-worker without a key says which variable to set, not a C++ option",
          "[cli][worker]") {
    for (const std::vector<std::string>& env :
         {std::vector<std::string>{}, std::vector<std::string>{"SENDGRID_API_KEY= "}}) {
        const Run result = run(worker, {}, env);
        INFO(result.err);
        CHECK(result.status == 2);
        CHECK(result.err.find("sendgrid-worker: SENDGRID_API_KEY is not set; export "
                              "SENDGRID_API_KEY=") != std::string::npos);
        CHECK(result.err.find("Options") == std::string::npos);
        CHECK(result.err.find("::") == std::string::npos);
    }
}

TEST_CASE("sendgrid-worker: a flag without its value, a value that is no number, bounds",
          "[cli][worker]") {
    // Each flag at the end of the line, or followed by another flag, says what it needs.
    const std::vector<std::pair<std::string, std::string>> needs{
        {"--redis", "a Redis URL such as redis://127.0.0.1:6379/0"},
        {"--stream", "a stream name"},
        {"--group", "a consumer group name"},
        {"--status-prefix", "a key prefix"},
        {"--consumer", "a consumer name"},
        {"--batch", "a number of entries 1-10000"},
        {"--visibility-timeout", "milliseconds 1-31622400000"},
        {"--max-tries", "a number of tries 1-100"},
        {"--max-wait", "milliseconds 0-86400000"},
        {"--metrics", "an IP:PORT to serve /metrics on, e.g. 127.0.0.1:9465"},
        {"--rate-limit", "a number of requests a second 1-1000000"},
        {"--burst", "a number of requests 1-1000000"},
        {"--rate-limit-key", "a Redis key"},
    };
    for (const auto& [flag, what] : needs) {
        INFO(flag);
        const std::string expected = "sendgrid-worker: " + flag + " needs a value (" + what + ")";
        check_refused(worker, {flag}, expected);
        check_refused(worker, {flag, "--resend-unknown"}, expected);
        check_refused(worker, {flag + "="}, expected);
    }
    check_refused(worker, {"--batch", "ten"},
                  "sendgrid-worker: --batch: 'ten' is not a number; give a number of entries "
                  "1-10000");
    check_refused(worker, {"--max-tries", "-1"},
                  "--max-tries: '-1' is out of range; give a number of tries 1-100");
    // Values past the bounds, up to ones that would overflow any integer type.
    check_refused(worker, {"--batch", "10001"}, "--batch: '10001' is out of range");
    check_refused(worker, {"--batch", "0"}, "--batch: '0' is out of range");
    check_refused(worker, {"--visibility-timeout", "31622400001"},
                  "--visibility-timeout: '31622400001' is out of range; give milliseconds "
                  "1-31622400000");
    check_refused(worker, {"--max-tries", "101"}, "--max-tries: '101' is out of range");
    // 0.10's name for it, kept one release: the same flag with the same bounds.
    check_refused(worker, {"--max-attempts", "101"}, "--max-attempts: '101' is out of range");
    check_refused(worker, {"--max-wait", "86400001"}, "--max-wait: '86400001' is out of range");
    check_refused(worker, {"--max-wait", "99999999999999999999999999"},
                  "--max-wait: '99999999999999999999999999' is out of range");
    check_refused(worker, {"--resend-unknown=yes"},
                  "--resend-unknown takes no value (it was given 'yes')");
    // A visibility timeout a send can outlast, in the flags' words.
    check_refused(worker, {"--visibility-timeout", "1000"},
                  "--visibility-timeout 1000 is too short: a send may take up to");
    check_refused(worker, {"--rate-limit", "0"}, "--rate-limit: '0' is out of range");
    check_refused(worker, {"--rate-limit", "1000001"}, "--rate-limit: '1000001' is out of range");
    check_refused(worker, {"--burst", "0"}, "--burst: '0' is out of range");
    check_refused(worker, {"--burst", "5"}, "--burst and --rate-limit-key need --rate-limit N");
    check_refused(worker, {"--rate-limit-key", "k"},
                  "--burst and --rate-limit-key need --rate-limit N");
    // With a rate limit, each try may also wait for its permit: the visibility timeout that
    // covers a send without one does not cover it with one.
    const std::vector<std::string> enough{"--visibility-timeout", "200000", "--max-tries", "2",
                                          "--max-wait",           "60000"};
    std::vector<std::string> limited = enough;
    limited.insert(limited.end(), {"--rate-limit", "50"});
    check_refused(worker, limited,
                  "a send may take up to 240000 ms (2 tries of SENDGRID_TIMEOUT 30000 ms, waits "
                  "of up to 60000 ms between them and before each for --rate-limit)");
    // A batch larger than max_in_flight is sent in waves: each may take a send's longest.
    std::vector<std::string> waves = enough;
    waves.insert(waves.end(), {"--batch", "16"});
    check_refused(worker, waves,
                  "a round of --batch 16 is 2 waves of SENDGRID_MAX_IN_FLIGHT 8, each of which may "
                  "take up to 120000 ms");
}

TEST_CASE("sendgrid-worker --metrics: a bad address or port is refused naming the flag",
          "[cli][worker]") {
    // The same refusals whether or not the program was built with prometheus-cpp: the value is
    // checked before anything else.
    check_refused(worker, {"--metrics", "9465"},
                  "sendgrid-worker: --metrics '9465': give IP:PORT, e.g. 127.0.0.1:9465 (port 0: "
                  "any free port)");
    check_refused(worker, {"--metrics=:9465"}, "--metrics ':9465': give IP:PORT");
    check_refused(worker, {"--metrics", "example.com:9465"},
                  "--metrics 'example.com:9465': 'example.com' is no IPv4 address; give one such "
                  "as 127.0.0.1 (this host only) or 0.0.0.0 (every interface), or localhost");
    check_refused(worker, {"--metrics", "127.0.0.256:9465"}, "'127.0.0.256' is no IPv4 address");
    check_refused(worker, {"--metrics", "127.0.1:9465"}, "'127.0.1' is no IPv4 address");
    check_refused(worker, {"--metrics", "010.0.0.1:9465"}, "'010.0.0.1' is no IPv4 address");
    check_refused(worker, {"--metrics", "127.0.0.1:http"},
                  "--metrics '127.0.0.1:http': 'http' is not a number; give a port number "
                  "0-65535");
    check_refused(worker, {"--metrics", "127.0.0.1:65536"},
                  "--metrics '127.0.0.1:65536': '65536' is out of range; give a port number "
                  "0-65535");
    check_refused(worker, {"--metrics", "127.0.0.1:-1"}, "'-1' is out of range");

    const auto line = worker_line({"--metrics", "0.0.0.0:9465"});
    REQUIRE(line.metrics.has_value());
    CHECK(line.metrics->host == "0.0.0.0");
    CHECK(line.metrics->port == 9465);
    CHECK(worker_line({"--metrics=localhost:0"}).metrics->to_string() == "localhost:0");
    CHECK(worker_line({"--metrics=10.0.0.100:0"}).metrics->host == "10.0.0.100");
    CHECK_FALSE(worker_line({}).metrics.has_value());

    const Run help = run(worker, {"--help"});
    CHECK(help.out.find("--metrics IP:PORT") != std::string::npos);
    CHECK(help.out.find("(needs a build with prometheus-cpp)") != std::string::npos);
}

TEST_CASE("sendgrid-worker --metrics is refused exactly when built without prometheus-cpp",
          "[cli][worker][metrics]") {
    // No key: a worker that takes the flag goes on to refuse the missing key, before Redis.
    const Run result = run(worker, {"--metrics", "127.0.0.1:0"}, {});
    INFO(result.err);
    CHECK(result.status == 2);
#if SENDGRID_BACKEND_WORKER_HAS_METRICS
    // Its scrape is checked against Redis in test_queue_metrics.
    CHECK(result.err.find("SENDGRID_API_KEY is not set") != std::string::npos);
    CHECK(result.err.find(built_without_metrics("sendgrid-worker")) == std::string::npos);
#else
    CHECK(result.err == built_without_metrics("sendgrid-worker"));
#endif
}

TEST_CASE("sendgrid-worker names an unknown flag and shows the usage, which states the bounds",
          "[cli][worker]") {
    const Run unknown = run(worker, {"--bacth", "8"}, {key});
    CHECK(unknown.status == 2);
    CHECK(unknown.err.rfind("sendgrid-worker: unknown option '--bacth'\nusage: sendgrid-worker",
                            0) == 0);
    const Run stray = run(worker, {"8"}, {key});
    CHECK(stray.status == 2);
    CHECK(stray.err.find("unexpected argument '8'") != std::string::npos);
    CHECK(stray.err.find("usage: sendgrid-worker") != std::string::npos);

    const Run help = run(worker, {"--help"});
    CHECK(help.status == 0);
    for (const char* bound :
         {"1-10000", "1-31622400000 (366 days)", "1-100", "0-86400000 (24 hours)",
          "SENDGRID_TIMEOUT up to 86400 s", "SENDGRID_MAX_IN_FLIGHT 1-1000"}) {
        INFO(bound);
        CHECK(help.out.find(bound) != std::string::npos);
    }
}

TEST_CASE("sendgrid-worker's parser: both flag forms, the bounds inclusive", "[cli][worker]") {
    const auto line = worker_line({"--redis=redis://h:7/2", "--stream", "s", "--batch=10000",
                                   "--visibility-timeout", "31622400000", "--max-tries", "100",
                                   "--max-wait", "0", "--resend-unknown"});
    CHECK(line.redis_url == "redis://h:7/2");
    CHECK(line.redis_url_from == "--redis");
    CHECK(line.queue.stream == "s");
    CHECK(line.options.batch == 10000);
    CHECK(line.options.visibility_timeout == std::chrono::milliseconds(31'622'400'000));
    CHECK(line.max_tries == 100);
    CHECK(line.max_wait == std::chrono::milliseconds(0));
    CHECK(line.options.resend_unknown);
    CHECK(sg::detail::worker_redis_options(line).database == 2);

    const char* env_url = "redis://from-env:6380";
    const char* none[] = {"sendgrid-worker"};
    const auto from_env = sg::detail::parse_worker_command_line(1, none, env_url);
    CHECK(from_env.redis_url == env_url);
    CHECK(from_env.redis_url_from == "SENDGRID_REDIS_URL");
    CHECK(worker_line({}).redis_url_from.empty());
    CHECK(worker_line({"-h"}).help);

    const auto limited = worker_line(
        {"--rate-limit", "1000000", "--burst=1000000", "--rate-limit-key", "app:limit"});
    CHECK(limited.rate_limit.rate.per_second == 1'000'000);
    CHECK(limited.rate_limit.rate.burst == 1'000'000);
    CHECK(limited.rate_limit.key == "app:limit");
    CHECK(worker_line({}).rate_limit.rate.per_second == 0);  // none unless asked for
}

TEST_CASE("sendgrid-fake-server: a flag without its value, a value that is no number, bounds",
          "[cli][fake_server]") {
    check_refused(fake_server, {"--port"},
                  "sendgrid-fake-server: --port needs a value (a port number 0-65535)", {});
    check_refused(fake_server, {"--port", "--api-key", "k"},
                  "--port needs a value (a port number 0-65535)", {});
    check_refused(fake_server, {"--api-key"}, "--api-key needs a value (", {});
    check_refused(fake_server, {"--fault"},
                  "--fault needs a value (a fault such as 429,retry-after=1,times=2)", {});
    check_refused(fake_server, {"--port", "http"},
                  "--port: 'http' is not a number; give a port number 0-65535", {});
    check_refused(fake_server, {"--port=65536"},
                  "--port: '65536' is out of range; give a port number 0-65535", {});
    check_refused(fake_server, {"--fault", "429,times=0"},
                  "--fault '429,times=0': times: '0' is out of range; give a count 1-1000000", {});
    check_refused(fake_server, {"--fault", "200,delay=3600001"},
                  "delay: '3600001' is out of range; give milliseconds 0-3600000", {});
    check_refused(fake_server, {"--fault", "429,retry-after=99999999999999999999"},
                  "retry-after: '99999999999999999999' is out of range; give seconds 0-86400", {});
    check_refused(fake_server, {"--fault", "4xx"},
                  "--fault '4xx': '4xx' is not a number; give an HTTP status 100-599", {});

    const Run unknown = run(fake_server, {"--prot", "8080"});
    CHECK(unknown.status == 2);
    CHECK(unknown.err.rfind(
              "sendgrid-fake-server: unknown option '--prot'\nusage: sendgrid-fake-server", 0) ==
          0);
    const Run help = run(fake_server, {"--help"});
    CHECK(help.status == 0);
    for (const char* bound :
         {"0-65535", "100-599", "times 1-1000000", "delay 0-3600000 ms", "retry-after 0-86400 s"}) {
        INFO(bound);
        CHECK(help.out.find(bound) != std::string::npos);
    }
}

TEST_CASE("sendgrid-fake-server's parser: both flag forms, the bounds inclusive",
          "[cli][fake_server]") {
    const auto line = fake_server_line({"--port=65535", "--api-key", "SG.k", "--fault",
                                        "599,times=1000000,delay=3600000,retry-after=86400",
                                        "--fault=100,delay=0,retry-after=0"});
    CHECK(line.options.port == 65535);
    CHECK(line.options.api_key == "SG.k");
    REQUIRE(line.faults.size() == 2);
    CHECK(line.faults[0].status == 599);
    CHECK(line.faults[0].times == 1'000'000);
    CHECK(line.faults[0].delay == std::chrono::hours(1));
    CHECK(line.faults[0].retry_after_seconds == 86'400);
    CHECK(line.faults[1].status == 100);
    CHECK(fake_server_line({"--port", "0"}).options.port == 0);
}

TEST_CASE("sendgrid-fake-server --metrics: a value that is no IP:PORT is refused by name",
          "[cli][fake_server][metrics]") {
    check_refused(fake_server, {"--metrics"},
                  "sendgrid-fake-server: --metrics needs a value (an IP:PORT to serve /metrics "
                  "on, e.g. 127.0.0.1:9464)",
                  {});
    check_refused(fake_server, {"--metrics", "9464"},
                  "--metrics '9464': give IP:PORT, e.g. 127.0.0.1:9464 (port 0: any free port)",
                  {});
    check_refused(fake_server, {"--metrics", ":9464"}, "--metrics ':9464': give IP:PORT", {});
    for (const char* host : {"metrics.example.com", "256.0.0.1", "127.0.0", "1.2.3.4.5", "[::1]",
                             "010.0.0.1", "127.0.0.01", "00.0.0.0"}) {
        INFO(host);
        const std::string address = std::string(host) + ":9464";
        check_refused(fake_server, {"--metrics", address},
                      "--metrics '" + address + "': '" + host +
                          "' is no IPv4 address; give one such as 127.0.0.1",
                      {});
    }
    check_refused(fake_server, {"--metrics=127.0.0.1:http"},
                  "--metrics '127.0.0.1:http': 'http' is not a number; give a port number 0-65535",
                  {});
    check_refused(fake_server, {"--metrics", "127.0.0.1:65536"},
                  "--metrics '127.0.0.1:65536': '65536' is out of range; give a port number "
                  "0-65535",
                  {});
    const Run help = run(fake_server, {"--help"});
    CHECK(help.out.find("--metrics IP:PORT") != std::string::npos);

    const auto line = fake_server_line({"--metrics", "0.0.0.0:65535"});
    REQUIRE(line.metrics);
    CHECK(line.metrics->host == "0.0.0.0");
    CHECK(line.metrics->port == 65535);
    CHECK(fake_server_line({"--metrics=localhost:0"}).metrics->to_string() == "localhost:0");
    CHECK(fake_server_line({"--metrics=100.10.0.1:0"}).metrics->host == "100.10.0.1");
    CHECK_FALSE(fake_server_line({}).metrics);
}

TEST_CASE("sendgrid-fake-server --webhook-key-out: the URL alone first, then where the key went",
          "[cli][fake_server][webhook]") {
    const std::string key_file =
        "/tmp/sendgrid-test-programs-webhook-key-" + std::to_string(::getpid());
    // Nothing listens on port 9 (discard); no mail is sent, so nothing is posted there.
    Running program(fake_server,
                    {"--webhook", "http://127.0.0.1:9/events", "--webhook-key-out", key_file});
    const std::vector<std::string> lines = program.stdout_lines(2);
    INFO(program.err());
    REQUIRE(lines.size() == 2);
    CHECK(lines[0].rfind("http://127.0.0.1:", 0) == 0);
    CHECK(lines[0].find(' ') == std::string::npos);
    CHECK(lines[1] == "webhook key: " + key_file);
    const std::string key = read_file(key_file);
    REQUIRE(key.size() > 1);
    CHECK(key.back() == '\n');
    CHECK_NOTHROW(sg::EventWebhookVerifier(key.substr(0, key.size() - 1)));
    CHECK(program.stop() == 0);
    std::remove(key_file.c_str());
}

TEST_CASE("sendgrid-fake-server's event flags are checked before it starts, each by name",
          "[cli][fake_server][webhook]") {
    check_refused(fake_server, {"--webhook", "ftp://127.0.0.1/"},
                  "sendgrid-fake-server: --webhook 'ftp://127.0.0.1/': must start with http://",
                  {});
    check_refused(fake_server, {"--webhook-key-out", "/tmp/key"},
                  "--webhook-key-out: the key verifies what --webhook sends; give --webhook", {});
    check_refused(fake_server, {"--event-rule", "jane@example.com=explode"},
                  "--event-rule 'jane@example.com=explode': 'explode' is not an event", {});
    check_refused(fake_server, {"--webhook-duplicates", "2"},
                  "--webhook-duplicates: '2' is not a probability 0-1 (e.g. 0.2)", {});
    check_refused(fake_server, {"--max-messages", "0"},
                  "--max-messages: '0' is out of range; give a count 1-1000000", {});
    const Run help = run(fake_server, {"--help"});
    CHECK(help.out.find("--webhook-key-out FILE") != std::string::npos);
}

#if SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
namespace {

/// A mail/send body for `to`.
std::string mail_to(const std::string& to) {
    return nlohmann::json{{"personalizations", {{{"to", {{{"email", to}}}}}}},
                          {"from", {{"email", "shop@example.com"}}},
                          {"subject", "Hi"},
                          {"content", {{{"type", "text/plain"}, {"value", "Hello"}}}}}
        .dump();
}

/// The value of the sample `series` (name and labels as printed) in a /metrics text; -1 if absent.
double sample(const std::string& text, const std::string& series) {
    std::istringstream lines(text);
    for (std::string line; std::getline(lines, line);) {
        if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    }
    return -1;
}

}  // namespace
#endif

TEST_CASE("sendgrid-fake-server --metrics counts what it answered, for Prometheus",
          "[cli][fake_server][metrics]") {
    const std::vector<std::string> args{"--metrics", "127.0.0.1:0",
                                        "--fault",   "400,to=bounce@example.com",
                                        "--fault",   "500,to=cut@example.com,drop"};
#if !SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
    const Run refused = run(fake_server, args);
    CHECK(refused.status == 2);
    CHECK(refused.err == built_without_metrics("sendgrid-fake-server"));
#else
    Running program(fake_server, args);
    const std::vector<std::string> lines = program.stdout_lines(2);
    INFO(program.err());
    REQUIRE(lines.size() == 2);
    const std::string prefix = "http://127.0.0.1:";
    REQUIRE(lines[0].rfind(prefix, 0) == 0);
    REQUIRE(lines[1].rfind(prefix, 0) == 0);
    REQUIRE(lines[1].size() > prefix.size() + 8);
    CHECK(lines[1].compare(lines[1].size() - 8, 8, "/metrics") == 0);

    httplib::Client mail_api(lines[0]);
    const httplib::Headers key{{"Authorization", "Bearer SG.fake-test-key.0123456789"}};
    const httplib::Headers wrong_key{{"Authorization", "Bearer SG.wrong"}};
    CHECK(mail_api.Post("/v3/mail/send", key, mail_to("jane@example.com"), "application/json")
              ->status == 202);
    CHECK(mail_api.Post("/v3/mail/send", key, mail_to("bounce@example.com"), "application/json")
              ->status == 400);
    CHECK(
        mail_api.Post("/v3/mail/send", wrong_key, mail_to("jane@example.com"), "application/json")
            ->status == 401);
    CHECK_FALSE(
        mail_api.Post("/v3/mail/send", key, mail_to("cut@example.com"), "application/json"));
    // Counters only grow: forgetting the requests does not reset them.
    CHECK(mail_api.Delete("/__requests")->status == 204);

    const std::string port_and_path = lines[1].substr(prefix.size());
    const std::size_t slash = port_and_path.find('/');
    httplib::Client scraper("127.0.0.1", std::stoi(port_and_path.substr(0, slash)));
    const auto scraped = scraper.Get(port_and_path.substr(slash).c_str());
    REQUIRE(scraped);
    REQUIRE(scraped->status == 200);
    const std::string& text = scraped->body;
    INFO(text);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="202"})") == 1);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="400"})") == 1);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="401"})") == 1);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="500"})") == 1);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="4xx"})") == 0);  // every label
    CHECK(sample(text, "sendgrid_fake_messages_accepted_total") == 1);
    CHECK(sample(text, "sendgrid_fake_dropped_connections_total") == 1);
    CHECK(text.find("jane@example.com") == std::string::npos);

    // Prometheus' own linter: names, help texts, types; it prints nothing for a clean text.
    CHECK(test_support::promtool_findings(text).empty());
    CHECK(program.stop() == 0);
#endif
}

#if SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
TEST_CASE("the fake server's metrics label any status a Fault answers and never throw",
          "[fake_server][metrics]") {
    // The program's --fault takes 100-599 only; the API takes any number.
    sg::testing::FakeSendgridServer server;
    server.push_fault(sg::testing::Fault(700));
    server.push_fault(sg::testing::Fault(99));
    httplib::Client mail_api(server.url());
    const httplib::Headers key{{"Authorization", "Bearer " + server.api_key()}};
    for (int i = 0; i < 3; ++i) {
        mail_api.Post("/v3/mail/send", key, mail_to("jane@example.com"), "application/json");
    }
    REQUIRE(server.totals().answered.size() == 3);  // counted before the answer is written

    const sg::testing::FakeServerCollectable metrics(server);
    std::vector<prometheus::MetricFamily> families;
    REQUIRE_NOTHROW(families = metrics.Collect());
    const std::string text = prometheus::TextSerializer().Serialize(families);
    INFO(text);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="other_status"})") == 2);
    CHECK(sample(text, R"(sendgrid_fake_requests_total{status="202"})") == 1);
    CHECK(sample(text, "sendgrid_fake_messages_accepted_total") == 1);
    CHECK(test_support::promtool_findings(text).empty());
}
#endif

TEST_CASE("sendgrid-fake-server --metrics on a taken port fails naming the flag",
          "[cli][fake_server][metrics]") {
    httplib::Server taken;
    const int port = taken.bind_to_any_port("127.0.0.1");
    REQUIRE(port > 0);
    const std::string address = "127.0.0.1:" + std::to_string(port);
    const Run result = run(fake_server, {"--metrics", address});
    INFO(result.err);
#if !SENDGRID_BACKEND_FAKE_SERVER_HAS_METRICS
    CHECK(result.status == 2);
    CHECK(result.err == built_without_metrics("sendgrid-fake-server"));
#else
    CHECK(result.status == 1);
    CHECK(result.err.find("] --metrics " + address + ": cannot listen there") != std::string::npos);
#endif
}
