#pragma once

/// @file
/// The `sendgrid-worker` program: one RedisMailWorker, sending what producers queue (redis/
/// queue.hpp) through SendGrid. Link `sendgrid_backend::redis` and `sendgrid_backend::curl`;
/// CMake builds and installs it as `sendgrid-worker`.
///
///   sendgrid-worker [--redis URL] [--stream S] [--group G] [--status-prefix P]
///                   [--consumer NAME] [--batch N] [--visibility-timeout MS] [--resend-unknown]
///                   [--max-tries N] [--max-wait MS] [--metrics IP:PORT]
///                   [--rate-limit N [--burst N] [--rate-limit-key K]]
///                   [--dead-letter-ttl S] [--no-dead-letters]
///   sendgrid-worker dead list|show KEY|retry KEY|drop KEY ...   (redis/dead_letters_cli.hpp)
///
/// SendGrid's settings come from the environment, as Settings::from_env() reads them
/// (SENDGRID_API_KEY, SENDGRID_HOST_URL, SENDGRID_MAX_IN_FLIGHT, ...); Redis's from --redis or
/// SENDGRID_REDIS_URL (default redis://127.0.0.1:6379). Each message gets one
/// sendgrid_email_sent in this process; a line per round on stderr. SIGINT or SIGTERM lets the
/// round in progress finish, then exits. Every number on the command line has an upper bound
/// (see `worker_usage`), checked before anything starts: a mistyped one is an error naming the
/// flag and its range, never a value that overflows later. Exit status: 0 stopped by a signal,
/// 2 a bad flag or setting, 1 any other failure (Redis unreachable at start, say).
///
/// `--rate-limit` shares one limit on requests per second, and every 429's pause, among all the
/// workers (and other senders) given the same `--rate-limit-key` (RedisRateLimit,
/// redis/rate_limit.hpp). A worker sends at most SENDGRID_MAX_IN_FLIGHT requests per SendGrid
/// answer time (~100-300 ms): the default 8 is ~30-80 a second, whatever the limit allows.
///
/// `--metrics` serves Prometheus metrics at http://IP:PORT/metrics: this worker's sends
/// (PrometheusMetrics, prometheus.hpp) and its queue's backlog and states (RedisQueueMetrics,
/// redis/prometheus.hpp, through a Redis connection of its own so that a scrape never waits for
/// the worker's blocking read). It needs a build with prometheus-cpp, where CMake defines
/// SENDGRID_BACKEND_WORKER_METRICS and main passes `serve_worker_metrics`; otherwise the flag
/// is refused, saying so.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/programs/command_line.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/queue.hpp"
#include "sendgrid_backend/redis/rate_limit.hpp"
#include "sendgrid_backend/redis/worker.hpp"

#if defined(SENDGRID_BACKEND_WORKER_METRICS)
#include "sendgrid_backend/detail/programs/metrics_endpoint.hpp"
#include "sendgrid_backend/prometheus.hpp"
#include "sendgrid_backend/redis/prometheus.hpp"
#endif

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

inline constexpr const char* worker_usage =
    "usage: sendgrid-worker [--redis URL] [--stream S] [--group G] [--status-prefix P]\n"
    "                       [--consumer NAME] [--batch N] [--visibility-timeout MS]\n"
    "                       [--resend-unknown] [--max-tries N] [--max-wait MS]\n"
    "                       [--metrics IP:PORT] [--dead-letter-ttl S] [--no-dead-letters]\n"
    "                       [--rate-limit N [--burst N] [--rate-limit-key K]]\n"
    "       sendgrid-worker dead list|show KEY|retry KEY|drop KEY (see: dead --help)\n"
    "  --redis URL              redis://[[user]:password@]host[:port][/db]\n"
    "                           (default: SENDGRID_REDIS_URL, else redis://127.0.0.1:6379)\n"
    "  --stream S, --group G, --status-prefix P, --consumer NAME\n"
    "                           the queue's names (the producer's)\n"
    "  --batch N                entries per round, 1-10000 (default: SENDGRID_MAX_IN_FLIGHT)\n"
    "  --visibility-timeout MS  1-31622400000 (366 days), longer than a send can take\n"
    "                           (default: the longest send plus a minute)\n"
    "  --resend-unknown         send a claimed message again although it may have gone out\n"
    "  --max-tries N            tries per message, 1-100 (--max-attempts N: the old name,\n"
    "                           deprecated)\n"
    "  --max-wait MS            the longest wait between tries, 0-86400000 (24 hours)\n"
    "  --metrics IP:PORT        serve Prometheus metrics of the sends and the queue at\n"
    "                           http://IP:PORT/metrics; IP an IPv4 address or localhost, PORT\n"
    "                           0-65535 (0: any free port); the URL is printed on stderr\n"
    "                           (needs a build with prometheus-cpp)\n"
    "  --rate-limit N           at most N requests a second, 1-1000000, shared through Redis\n"
    "                           by every worker with the same --rate-limit-key; a 429 pauses\n"
    "                           them all\n"
    "  --burst N                requests at once, 1-1000000 (default: N/10, at least 1)\n"
    "  --rate-limit-key K       the shared bucket's key (default sendgrid_backend:rate_limit)\n"
    "  --dead-letter-ttl S      keep the messages that ended failed or unknown (dead letters)\n"
    "                           this many seconds, 1-31622400 (366 days; default 30 days)\n"
    "  --no-dead-letters        keep no dead letters\n"
    "Flags also take the form --flag=VALUE. SendGrid's settings come from the environment\n"
    "(SENDGRID_API_KEY, SENDGRID_HOST_URL, SENDGRID_TIMEOUT up to 86400 s,\n"
    "SENDGRID_MAX_IN_FLIGHT 1-1000 requests at once, default 8, ...).\n"
    "SIGINT or SIGTERM stops after the round. Exit status: 0 stopped, 2 a bad flag or\n"
    "setting, 1 any other failure.\n";

/// The bounds of the worker's numeric flags: the library's limits for what each one sets (the
/// usage text states them; a change to a limit fails here until the text follows).
inline constexpr std::int64_t worker_max_batch = 10'000;
inline constexpr std::int64_t worker_max_visibility_timeout_ms = 31'622'400'000;  // 366 days
inline constexpr std::int64_t worker_max_tries = 100;           // Settings::validate's limit
inline constexpr std::int64_t worker_max_wait_ms = 86'400'000;  // 24 hours
inline constexpr std::int64_t worker_max_rate = 1'000'000;
static_assert(worker_max_rate == static_cast<std::int64_t>(RateLimitOptions::max_per_second));
static_assert(worker_max_rate == static_cast<std::int64_t>(RateLimitOptions::max_burst));
static_assert(worker_max_batch == static_cast<std::int64_t>(WorkerOptions::max_batch));
static_assert(worker_max_visibility_timeout_ms == WorkerOptions::max_visibility_timeout.count());
static_assert(worker_max_wait_ms == Settings::max_wait.count());
inline constexpr std::int64_t worker_max_dead_letter_ttl_s = 31'622'400;  // 366 days
static_assert(worker_max_dead_letter_ttl_s == RedisQueueOptions::max_dead_letter_ttl.count());

/// What the worker's command line (and SENDGRID_REDIS_URL) asked for.
struct WorkerCommandLine {
    bool help = false;
    std::string redis_url = "redis://127.0.0.1:6379";
    /// Where redis_url came from: "--redis", "SENDGRID_REDIS_URL", or empty (the default).
    std::string redis_url_from;
    RedisQueueOptions queue;
    WorkerOptions options;
    bool visibility_timeout_given = false;
    std::optional<int> max_tries;
    std::optional<std::chrono::milliseconds> max_wait;
    std::optional<MetricsAddress> metrics;  ///< --metrics, when given
    /// --rate-limit (rate.per_second 0: none), --burst, --rate-limit-key.
    RedisRateLimitOptions rate_limit;
};

/// SENDGRID_REDIS_URL (null when unset) as the line's Redis URL, unless empty.
inline void take_env_redis_url(WorkerCommandLine& line, const char* env_redis_url) {
    if (env_redis_url != nullptr && *env_redis_url != '\0') {
        line.redis_url = env_redis_url;
        line.redis_url_from = "SENDGRID_REDIS_URL";
    }
}

/// Reads `flag` into `line` when it says where the queue is (--redis, --stream, --group,
/// --status-prefix: the worker's and `dead`'s alike); false for any other flag.
inline bool read_queue_flag(FlagReader& args, std::string_view flag, WorkerCommandLine& line) {
    if (flag == "--redis") {
        line.redis_url = args.value("a Redis URL such as redis://127.0.0.1:6379/0");
        line.redis_url_from = "--redis";
    } else if (flag == "--stream") {
        line.queue.stream = args.value("a stream name");
    } else if (flag == "--group") {
        line.queue.group = args.value("a consumer group name");
    } else if (flag == "--status-prefix") {
        line.queue.status_prefix = args.value("a key prefix");
    } else {
        return false;
    }
    return true;
}

/// Parses the worker's command line; `env_redis_url` is SENDGRID_REDIS_URL (null when unset).
/// @throws UsageError naming the flag, the value typed and what would be valid.
inline WorkerCommandLine parse_worker_command_line(int argc, const char* const* argv,
                                                   const char* env_redis_url) {
    WorkerCommandLine line;
    take_env_redis_url(line, env_redis_url);
    FlagReader args(argc, argv);
    while (args.next()) {
        const std::string_view flag = args.flag();
        if (read_queue_flag(args, flag, line)) {
            continue;
        } else if (flag == "--consumer") {
            line.options.consumer = args.value("a consumer name");
        } else if (flag == "--batch") {
            line.options.batch =
                static_cast<std::size_t>(args.number("a number of entries", 1, worker_max_batch));
        } else if (flag == "--visibility-timeout") {
            line.options.visibility_timeout = std::chrono::milliseconds(
                args.number("milliseconds", 1, worker_max_visibility_timeout_ms));
            line.visibility_timeout_given = true;
        } else if (flag == "--max-tries" || flag == "--max-attempts") {  // the old name, 0.10
            line.max_tries =
                static_cast<int>(args.number("a number of tries", 1, worker_max_tries));
        } else if (flag == "--max-wait") {
            line.max_wait =
                std::chrono::milliseconds(args.number("milliseconds", 0, worker_max_wait_ms));
        } else if (flag == "--metrics") {
            const std::string address =
                args.value("an IP:PORT to serve /metrics on, e.g. 127.0.0.1:9465");
            std::string why;
            line.metrics = parse_metrics_address(address, 9465, why);
            if (!line.metrics) {
                throw UsageError("--metrics " + quote_for_error(address) + ": " + why);
            }
        } else if (flag == "--rate-limit") {
            line.rate_limit.rate.per_second = static_cast<double>(
                args.number("a number of requests a second", 1, worker_max_rate));
        } else if (flag == "--burst") {
            line.rate_limit.rate.burst =
                static_cast<std::size_t>(args.number("a number of requests", 1, worker_max_rate));
        } else if (flag == "--rate-limit-key") {
            line.rate_limit.key = args.value("a Redis key");
        } else if (flag == "--dead-letter-ttl") {
            line.queue.dead_letter_ttl =
                std::chrono::seconds(args.number("seconds", 1, worker_max_dead_letter_ttl_s));
        } else if (flag == "--no-dead-letters") {
            args.no_value();
            line.queue.dead_letters = false;
        } else if (flag == "--resend-unknown") {
            args.no_value();
            line.options.resend_unknown = true;
        } else {
            throw unknown_argument(flag);
        }
    }
    line.help = args.help();
    if (line.rate_limit.rate.per_second == 0 &&
        (line.rate_limit.rate.burst != 0 || line.rate_limit.key != RedisRateLimitOptions{}.key)) {
        throw UsageError("--burst and --rate-limit-key need --rate-limit N");
    }
    return line;
}

/// `url` with its password, if any, replaced by "***" (an error may print the rest).
inline std::string redis_url_for_error(std::string_view url) {
    const std::size_t scheme = url.find("://");
    const std::size_t at = url.rfind('@');
    if (scheme == std::string_view::npos || at == std::string_view::npos || at < scheme) {
        return quote_for_error(url);
    }
    const std::size_t colon = url.find(':', scheme + 3);
    const std::size_t hidden_from =
        colon != std::string_view::npos && colon < at ? colon + 1 : scheme + 3;
    return quote_for_error(std::string(url.substr(0, hidden_from)) + "***" +
                           std::string(url.substr(at)));
}

/// An error's text without its "[id] " (a program's user reads prose, not ids).
inline std::string without_id(const Error& error) {
    std::string text = error.what();
    const std::string id = "[" + error.id() + "] ";
    if (text.rfind(id, 0) == 0) text.erase(0, id.size());
    return text;
}

/// The Redis options the line asks for. @throws UsageError naming where the URL came
/// from (--redis or SENDGRID_REDIS_URL), the URL (password hidden) and what a valid one is.
inline RedisOptions worker_redis_options(const WorkerCommandLine& line) {
    try {
        return RedisOptions::from_url(line.redis_url);
    } catch (const ImproperlyConfigured& error) {
        // from_url's reason, without the variable it names: the value may come from the flag.
        std::string reason = without_id(error);
        const std::string setting = error.setting() + ": ";
        if (reason.rfind(setting, 0) == 0) reason.erase(0, setting.size());
        const std::string from =
            line.redis_url_from.empty() ? "the default Redis URL" : line.redis_url_from;
        throw UsageError(from + " " + redis_url_for_error(line.redis_url) + ": " + reason +
                         "; a valid URL looks like redis://host:port/db, e.g. "
                         "redis://127.0.0.1:6379/0");
    }
}

/// Settings::from_env() with the line's retry flags applied, checked.
/// @throws UsageError naming the variable or flag at fault.
inline Settings worker_settings(const WorkerCommandLine& line) {
    Settings settings;
    try {
        settings = Settings::from_env();
        // The program's own words for a missing key: its users set variables, not C++ options.
        const std::string key_problem = api_key_problem(
            settings.api_key,
            "export SENDGRID_API_KEY=<your SendGrid API key> before starting sendgrid-worker (it "
            "has no flag for the key: a command line is visible to every user of the machine)");
        if (!key_problem.empty()) throw UsageError("SENDGRID_API_KEY " + key_problem);
        if (line.max_tries) settings.retry.max_tries = *line.max_tries;
        if (line.max_wait) {
            settings.retry.max_backoff = std::min(settings.retry.max_backoff, *line.max_wait);
            settings.retry.max_retry_after = *line.max_wait;
        }
        settings.validate();
    } catch (const ImproperlyConfigured& error) {
        throw UsageError(without_id(error));
    }
    if (line.visibility_timeout_given) {
        // Checked here, in the flags' words, before the worker's constructor would refuse it.
        const bool rate_limited = line.rate_limit.rate.per_second > 0;
        const std::size_t batch =
            line.options.batch != 0 ? line.options.batch : settings.max_in_flight;
        const auto longest = RedisMailWorker::longest_round(settings, batch, rate_limited).count();
        if (line.options.visibility_timeout.count() <= longest) {
            const auto& retry = settings.retry;
            const auto wait = std::max(retry.max_backoff, retry.max_retry_after).count();
            const std::size_t waves = (batch + settings.max_in_flight - 1) / settings.max_in_flight;
            throw UsageError(
                "--visibility-timeout " + std::to_string(line.options.visibility_timeout.count()) +
                " is too short: " +
                (waves > 1 ? "a round of --batch " + std::to_string(batch) + " is " +
                                 std::to_string(waves) + " waves of SENDGRID_MAX_IN_FLIGHT " +
                                 std::to_string(settings.max_in_flight) + ", each of which"
                           : std::string("a send")) +
                " may take up to " + std::to_string(longest / static_cast<long long>(waves)) +
                " ms (" + std::to_string(retry.max_tries) + " tries of SENDGRID_TIMEOUT " +
                std::to_string(settings.timeout.count()) + " ms, waits of up to " +
                std::to_string(wait) + " ms between them" +
                (rate_limited ? " and before each for --rate-limit" : "") +
                "), and another worker would claim a message this one still "
                "sends; give more than " +
                std::to_string(longest) + ", leave it out (" + std::to_string(longest + 60'000) +
                "), or lower --max-tries or --max-wait");
        }
    }
    return settings;
}

/// Blocks SIGINT and SIGTERM in this thread (and the threads it starts) and sets `stop` when
/// one arrives; the destructor releases the waiting thread if no signal came.
class WorkerStopSignals {
  public:
    WorkerStopSignals() {
        sigemptyset(&signals_);
        sigaddset(&signals_, SIGINT);
        sigaddset(&signals_, SIGTERM);
        pthread_sigmask(SIG_BLOCK, &signals_, nullptr);
        waiter_ = std::thread([this] {
            int received = 0;
            sigwait(&signals_, &received);
            stop_ = true;
        });
    }
    WorkerStopSignals(const WorkerStopSignals&) = delete;
    WorkerStopSignals& operator=(const WorkerStopSignals&) = delete;
    ~WorkerStopSignals() {
        if (!stop_.load()) pthread_kill(waiter_.native_handle(), SIGTERM);
        waiter_.join();
    }

    const std::atomic<bool>& stop() const noexcept { return stop_; }

  private:
    sigset_t signals_;
    std::atomic<bool> stop_{false};
    std::thread waiter_;
};

/// `sendgrid-worker dead ...` (redis/dead_letters_cli.hpp, included at the end of this file).
inline int run_dead_letters_cli(int argc, char** argv);

/// Starts serving /metrics for a worker of `queue` on `redis`.
/// @throws std::exception when it cannot (Redis out of reach, the port taken).
using ServeWorkerMetrics = std::function<MetricsEndpoint(
    const RedisOptions& redis, const RedisQueueOptions& queue, const MetricsAddress& address)>;

}  // namespace detail

#if defined(SENDGRID_BACKEND_WORKER_METRICS)
/// The program's `--metrics`: serves this process's sends (PrometheusMetrics, counting from
/// now on) and `queue` (RedisQueueMetrics) on `address` with prometheus-cpp's Exposer.
/// @throws RedisError when Redis cannot be reached; ImproperlyConfigured naming the flag when
///         it cannot listen.
inline detail::MetricsEndpoint serve_worker_metrics(const RedisOptions& redis,
                                                    const RedisQueueOptions& queue,
                                                    const detail::MetricsAddress& address) {
    auto sends = std::make_shared<PrometheusMetrics>();
    // A connection of its own that tries once: a scrape must not wait for the worker's
    // blocking read, nor for reconnect attempts while Redis is down (it reports up 0 instead).
    RedisOptions scrape_redis = redis;
    scrape_redis.reconnect_for = std::chrono::milliseconds(0);
    auto queue_metrics =
        std::make_shared<RedisQueueMetrics>(std::make_shared<RedisClient>(scrape_redis), queue);
    return detail::expose_metrics(address, {sends->collectable(), queue_metrics}, sends);
}
#endif

/// The program's main: see the file comment. Returns the exit status. `serve_metrics` serves
/// `--metrics` (`serve_worker_metrics` in a build with prometheus-cpp); without it the flag is
/// refused.
inline int run_worker_cli(int argc, char** argv,
                          const detail::ServeWorkerMetrics& serve_metrics = nullptr) {
    if (argc > 1 && std::string_view(argv[1]) == "dead") {
        return detail::run_dead_letters_cli(argc - 1, argv + 1);
    }
    detail::WorkerCommandLine line;
    Settings settings;
    RedisOptions redis_options;
    try {
        line = detail::parse_worker_command_line(argc, argv, std::getenv("SENDGRID_REDIS_URL"));
        if (line.help) {
            std::fputs(detail::worker_usage, stdout);
            return 0;
        }
        if (line.metrics && !serve_metrics) {
            throw detail::UsageError(
                "--metrics: this sendgrid-worker was built without prometheus-cpp (Debian: "
                "prometheus-cpp-dev; then configure again)");
        }
        redis_options = detail::worker_redis_options(line);
        settings = detail::worker_settings(line);
    } catch (const detail::UsageError& error) {
        return detail::report_usage_error("sendgrid-worker", error, detail::worker_usage);
    }
    // The stop signals wait in a thread of their own; the worker finishes its round first.
    const detail::WorkerStopSignals signals;
    const std::atomic<bool>& stop = signals.stop();
    try {
        auto redis = std::make_shared<RedisClient>(redis_options);
        BackendOptions backend_options;
        if (line.rate_limit.rate.per_second > 0) {
            backend_options.rate_limit = std::make_shared<RedisRateLimit>(redis, line.rate_limit);
        }
        const auto backend = std::make_shared<const SendgridBackend>(settings, backend_options);
        RedisMailWorker worker(backend, redis, line.queue, line.options);
        // Counting before the first round; served until the worker has stopped.
        const detail::MetricsEndpoint metrics =
            line.metrics ? serve_metrics(redis_options, line.queue, *line.metrics)
                         : detail::MetricsEndpoint{};
        std::fprintf(stderr, "sendgrid-worker %s: reading %s as %s, visibility timeout %lld ms\n",
                     worker.consumer().c_str(), line.queue.stream.c_str(), line.queue.group.c_str(),
                     static_cast<long long>(worker.visibility_timeout().count()));
        if (line.metrics) {
            std::fprintf(stderr, "sendgrid-worker: metrics on %s\n", metrics.url.c_str());
        }
        while (!stop.load()) {
            try {
                const std::size_t finished = worker.run_once();
                if (finished > 0) std::fprintf(stderr, "sendgrid-worker: %zu finished\n", finished);
            } catch (const RedisError& error) {
                std::fprintf(stderr, "sendgrid-worker: %s; trying again\n", error.what());
                std::this_thread::sleep_for(std::chrono::milliseconds(200));
            }
        }
        std::fprintf(stderr, "sendgrid-worker: stopped\n");
    } catch (const std::exception& error) {
        std::fprintf(stderr, "sendgrid-worker: %s\n", error.what());
        return 1;
    }
    return 0;
}

SENDGRID_BACKEND_NAMESPACE_END

// The `dead` commands, which use this file's Redis URL and flag handling.
#include "sendgrid_backend/redis/dead_letters_cli.hpp"
