#pragma once

/// @file
/// The `sendgrid-fake-server` program: FakeSendgridServer on its own, for tests in any language
/// (SendGrid's official clients included: point their host at the printed URL). Link
/// `sendgrid_backend::testing`; CMake builds and installs it as `sendgrid-fake-server`.
///
///   sendgrid-fake-server [--port N] [--api-key KEY] [--fault SPEC]...
///
/// Prints its base URL alone on the first line of stdout, logs each request on stderr, answers
/// `GET /__requests` with what it received (JSON), forgets it on `DELETE /__requests`, and
/// stops cleanly on SIGINT or SIGTERM. A fault SPEC is a comma-separated list: an HTTP status
/// to answer with, then any of `times=N`, `delay=MS`, `retry-after=S`, `to=ADDRESS` (only
/// requests to that recipient), `drop` (close the connection mid-answer); e.g.
/// `--fault 429,retry-after=1,times=2` or `--fault 400,to=bounce@example.com`.

#include <pthread.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/testing/fake_server.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {
namespace detail {

inline constexpr const char* fake_server_usage =
    "usage: sendgrid-fake-server [--port N] [--api-key KEY] [--fault SPEC]...\n"
    "  --port N       listen on 127.0.0.1:N (0, the default: any free port)\n"
    "  --api-key KEY  the bearer key requests must carry (default SG.fake-test-key.0123456789)\n"
    "  --fault SPEC   STATUS[,times=N][,delay=MS][,retry-after=S][,to=ADDRESS][,drop]\n"
    "The base URL is printed alone on the first line of stdout; requests are logged on stderr;\n"
    "GET /__requests lists what was received. SIGINT or SIGTERM stops the server.\n";

/// A Fault from a --fault SPEC; the error text on failure.
inline bool parse_fault_spec(std::string_view spec, Fault& fault, std::string& error) {
    std::size_t start = 0;
    bool first = true;
    while (start <= spec.size()) {
        std::size_t end = spec.find(',', start);
        if (end == std::string_view::npos) end = spec.size();
        const std::string_view item = spec.substr(start, end - start);
        start = end + 1;
        const std::size_t equals = item.find('=');
        const std::string_view key = item.substr(0, equals);
        const std::string_view value =
            equals == std::string_view::npos ? std::string_view() : item.substr(equals + 1);
        auto number = [&](std::size_t digits) {
            return sendgrid_backend::detail::parse_decimal(value, digits);
        };
        if (first && equals == std::string_view::npos && !item.empty() && item != "drop") {
            const auto status = sendgrid_backend::detail::parse_decimal(item, 3);
            if (!status || *status < 100 || *status > 599) {
                error = "'" + std::string(item) + "' is not an HTTP status";
                return false;
            }
            fault.status = static_cast<int>(*status);
        } else if (key == "times" && number(6)) {
            fault.times = static_cast<int>(*number(6));
        } else if (key == "delay" && number(7)) {
            fault.delay = std::chrono::milliseconds(*number(7));
        } else if (key == "retry-after" && number(6)) {
            fault.retry_after_seconds = static_cast<int>(*number(6));
        } else if (key == "to" && !value.empty()) {
            fault.for_recipient(std::string(value));
        } else if (item == "drop") {
            fault.drop_connection = true;
        } else {
            error = "'" + std::string(item) + "' is not a fault setting";
            return false;
        }
        first = false;
        if (end == spec.size()) break;
    }
    return true;
}

}  // namespace detail

/// The program's main: see the file comment. Returns the exit status.
inline int run_fake_server_cli(int argc, char** argv) {
    FakeServerOptions options;
    std::vector<Fault> faults;
    for (int i = 1; i < argc; ++i) {
        const std::string_view arg = argv[i];
        const bool has_value = i + 1 < argc;
        if (arg == "--help" || arg == "-h") {
            std::fputs(detail::fake_server_usage, stdout);
            return 0;
        } else if (arg == "--port" && has_value) {
            const auto port = sendgrid_backend::detail::parse_decimal(argv[++i], 5);
            if (!port || *port > 65535) {
                std::fprintf(stderr, "sendgrid-fake-server: --port wants 0 to 65535\n");
                return 2;
            }
            options.port = static_cast<int>(*port);
        } else if (arg == "--api-key" && has_value) {
            options.api_key = argv[++i];
        } else if (arg == "--fault" && has_value) {
            Fault fault;
            std::string error;
            if (!detail::parse_fault_spec(argv[++i], fault, error)) {
                std::fprintf(stderr, "sendgrid-fake-server: --fault: %s\n", error.c_str());
                return 2;
            }
            faults.push_back(fault);
        } else {
            std::fprintf(stderr, "sendgrid-fake-server: unknown argument '%s'\n%s", argv[i],
                         detail::fake_server_usage);
            return 2;
        }
    }
    options.on_request = [](const ReceivedRequest& request) {
        const SentMail mail = request.mail();
        const std::string line =
            "POST /v3/mail/send " + std::to_string(request.answered_status) + " " + mail.summary() +
            (request.message_id.empty() ? "" : " id=" + request.message_id) + "\n";
        std::fputs(line.c_str(), stderr);
    };
    // Block the stop signals in every thread (the server's inherit the mask), then wait here.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    try {
        FakeSendgridServer server(options);
        for (const Fault& fault : faults) server.push_fault(fault);
        std::printf("%s\n", server.url().c_str());
        std::fflush(stdout);
        std::fprintf(stderr, "sendgrid-fake-server: listening on %s\n", server.url().c_str());
        int received = 0;
        sigwait(&stop_signals, &received);
        std::fprintf(stderr, "sendgrid-fake-server: stopping (%s)\n",
                     received == SIGINT ? "SIGINT" : "SIGTERM");
        server.stop();
    } catch (const std::exception& error) {
        std::fprintf(stderr, "sendgrid-fake-server: %s\n", error.what());
        return 1;
    }
    return 0;
}

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
