#pragma once

/// @file
/// The `sendgrid-worker` program: one RedisMailWorker, sending what producers queue (redis/
/// queue.hpp) through SendGrid. Link `sendgrid_backend::redis` and `sendgrid_backend::curl`;
/// CMake builds and installs it as `sendgrid-worker`.
///
///   sendgrid-worker [--redis URL] [--stream S] [--group G] [--status-prefix P]
///                   [--consumer NAME] [--batch N] [--visibility-timeout MS] [--resend-unknown]
///                   [--max-attempts N] [--max-wait MS]
///
/// SendGrid's settings come from the environment, as Settings::from_env() reads them
/// (SENDGRID_API_KEY, SENDGRID_HOST_URL, ...); Redis's from --redis or SENDGRID_REDIS_URL
/// (default redis://127.0.0.1:6379). Each message gets one sendgrid_email_sent in this process;
/// a line per round on stderr. SIGINT or SIGTERM lets the round in progress finish, then exits.

#include <pthread.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/mail.hpp"
#include "sendgrid_backend/redis/client.hpp"
#include "sendgrid_backend/redis/queue.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

inline constexpr const char* worker_usage =
    "usage: sendgrid-worker [--redis URL] [--stream S] [--group G] [--status-prefix P]\n"
    "                       [--consumer NAME] [--batch N] [--visibility-timeout MS]\n"
    "                       [--resend-unknown] [--max-attempts N] [--max-wait MS]\n"
    "--max-attempts: tries per message (RetryPolicy::max_attempts); --max-wait: the longest\n"
    "wait between tries (caps max_backoff and max_retry_after). --visibility-timeout must be\n"
    "longer than a send can take; by default it is that plus a minute.\n"
    "SendGrid's settings come from the environment (SENDGRID_API_KEY, SENDGRID_HOST_URL, ...),\n"
    "Redis's from --redis or SENDGRID_REDIS_URL. SIGINT or SIGTERM stops after the round.\n";

}  // namespace detail

/// The program's main: see the file comment. Returns the exit status.
inline int run_worker_cli(int argc, char** argv) {
    std::string redis_url = "redis://127.0.0.1:6379";
    if (const char* url = std::getenv("SENDGRID_REDIS_URL"); url != nullptr && *url != '\0') {
        redis_url = url;
    }
    RedisQueueOptions queue;
    WorkerOptions options;
    std::optional<int> max_attempts;
    std::optional<std::chrono::milliseconds> max_wait;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const bool has_value = i + 1 < argc;
        auto number = [&](const char* name) -> long {
            const auto value = detail::parse_decimal(argv[++i], 9);
            if (!value) {
                std::fprintf(stderr, "sendgrid-worker: %s wants a number\n", name);
                std::exit(2);
            }
            return static_cast<long>(*value);
        };
        if (arg == "--help" || arg == "-h") {
            std::fputs(detail::worker_usage, stdout);
            return 0;
        } else if (arg == "--redis" && has_value) {
            redis_url = argv[++i];
        } else if (arg == "--stream" && has_value) {
            queue.stream = argv[++i];
        } else if (arg == "--group" && has_value) {
            queue.group = argv[++i];
        } else if (arg == "--status-prefix" && has_value) {
            queue.status_prefix = argv[++i];
        } else if (arg == "--consumer" && has_value) {
            options.consumer = argv[++i];
        } else if (arg == "--batch" && has_value) {
            options.batch = static_cast<std::size_t>(number("--batch"));
        } else if (arg == "--visibility-timeout" && has_value) {
            options.visibility_timeout = std::chrono::milliseconds(number("--visibility-timeout"));
        } else if (arg == "--max-attempts" && has_value) {
            max_attempts = static_cast<int>(number("--max-attempts"));
        } else if (arg == "--max-wait" && has_value) {
            max_wait = std::chrono::milliseconds(number("--max-wait"));
        } else if (arg == "--resend-unknown") {
            options.resend_unknown = true;
        } else {
            std::fprintf(stderr, "sendgrid-worker: unknown argument '%s'\n%s", argv[i],
                         detail::worker_usage);
            return 2;
        }
    }
    // The stop signals wait in a thread of their own; the worker finishes its round first.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    std::atomic<bool> stop{false};
    std::thread waiter([&] {
        int received = 0;
        sigwait(&stop_signals, &received);
        stop = true;
    });
    int status = 0;
    try {
        Settings settings = Settings::from_env();
        if (max_attempts) settings.retry.max_attempts = *max_attempts;
        if (max_wait) {
            settings.retry.max_backoff = std::min(settings.retry.max_backoff, *max_wait);
            settings.retry.max_retry_after = *max_wait;
        }
        const SendgridBackend backend(settings);
        auto redis = std::make_shared<RedisClient>(RedisOptions::from_url(redis_url));
        RedisMailWorker worker(backend, redis, queue, options);
        std::fprintf(stderr, "sendgrid-worker %s: reading %s as %s, visibility timeout %lld ms\n",
                     worker.consumer().c_str(), queue.stream.c_str(), queue.group.c_str(),
                     static_cast<long long>(worker.visibility_timeout().count()));
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
        status = 1;
    }
    if (!stop.load()) pthread_kill(waiter.native_handle(), SIGTERM);  // release the waiter
    waiter.join();
    return status;
}

SENDGRID_BACKEND_NAMESPACE_END
