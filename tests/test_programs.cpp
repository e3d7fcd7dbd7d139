// The sendgrid-worker and sendgrid-fake-server command lines: each refusal names the flag (or
// the environment variable) and the value typed and says what would be valid; every number
// has an upper bound. The programs run as processes (each case stops before anything
// connects, so no Redis is needed); the parsers are also checked in this process for the
// values they accept.
#include <sendgrid_backend/redis/worker_cli.hpp>
#include <sendgrid_backend/testing/fake_server_cli.hpp>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "catch.hpp"

namespace sg = sendgrid_backend;

extern char** environ;

namespace {

struct Run {
    int status = -1;  ///< the exit status; -1 when the program did not exit (in 20 s)
    std::string out;
    std::string err;
};

std::string read_file(const std::string& path) {
    std::ifstream file(path);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

/// Runs `program` with `args` in this environment without SENDGRID_* variables, plus `env`.
Run run(const char* program, const std::vector<std::string>& args,
        const std::vector<std::string>& env = {}) {
    std::vector<std::string> arguments{program};
    arguments.insert(arguments.end(), args.begin(), args.end());
    std::vector<std::string> variables;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        if (std::string(*entry).rfind("SENDGRID_", 0) != 0) variables.emplace_back(*entry);
    }
    variables.insert(variables.end(), env.begin(), env.end());
    std::vector<char*> argv;
    for (auto& arg : arguments) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);

    const std::string base = "/tmp/sendgrid-test-programs-" + std::to_string(::getpid());
    const std::string out = base + ".out";
    const std::string err = base + ".err";
    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&files, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&files, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    const int spawned = posix_spawn(&pid, program, &files, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&files);
    REQUIRE(spawned == 0);
    // Every case here ends at once; one that runs on (a value let through) is stopped and
    // fails, rather than hanging the test.
    int status = 0;
    bool exited = false;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!exited && std::chrono::steady_clock::now() < give_up) {
        exited = waitpid(pid, &status, WNOHANG) == pid;
        if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
        ::kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    Run result;
    result.status = exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
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
        {"--max-attempts", "a number of tries 1-100"},
        {"--max-wait", "milliseconds 0-86400000"},
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
    check_refused(worker, {"--max-attempts", "-1"},
                  "--max-attempts: '-1' is out of range; give a number of tries 1-100");
    // Values past the bounds, up to ones that would overflow any integer type.
    check_refused(worker, {"--batch", "10001"}, "--batch: '10001' is out of range");
    check_refused(worker, {"--batch", "0"}, "--batch: '0' is out of range");
    check_refused(worker, {"--visibility-timeout", "31622400001"},
                  "--visibility-timeout: '31622400001' is out of range; give milliseconds "
                  "1-31622400000");
    check_refused(worker, {"--max-attempts", "101"}, "--max-attempts: '101' is out of range");
    check_refused(worker, {"--max-wait", "86400001"}, "--max-wait: '86400001' is out of range");
    check_refused(worker, {"--max-wait", "99999999999999999999999999"},
                  "--max-wait: '99999999999999999999999999' is out of range");
    check_refused(worker, {"--resend-unknown=yes"},
                  "--resend-unknown takes no value (it was given 'yes')");
    // A visibility timeout a send can outlast, in the flags' words.
    check_refused(worker, {"--visibility-timeout", "1000"},
                  "--visibility-timeout 1000 is too short: a send may take up to");
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
    for (const char* bound : {"1-10000", "1-31622400000 (366 days)", "1-100",
                              "0-86400000 (24 hours)", "SENDGRID_TIMEOUT up to 86400 s"}) {
        INFO(bound);
        CHECK(help.out.find(bound) != std::string::npos);
    }
}

TEST_CASE("sendgrid-worker's parser: both flag forms, the bounds inclusive", "[cli][worker]") {
    const auto line = worker_line({"--redis=redis://h:7/2", "--stream", "s", "--batch=10000",
                                   "--visibility-timeout", "31622400000", "--max-attempts", "100",
                                   "--max-wait", "0", "--resend-unknown"});
    CHECK(line.redis_url == "redis://h:7/2");
    CHECK(line.redis_url_from == "--redis");
    CHECK(line.queue.stream == "s");
    CHECK(line.options.batch == 10000);
    CHECK(line.options.visibility_timeout == std::chrono::milliseconds(31'622'400'000));
    CHECK(line.max_attempts == 100);
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
