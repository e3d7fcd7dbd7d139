#pragma once

/// @file
/// The `sendgrid-fake-server` program: FakeSendgridServer on its own, for tests in any language
/// (SendGrid's official clients included: point their host at the printed URL). Link
/// `sendgrid_backend::testing`; CMake builds and installs it as `sendgrid-fake-server`.
///
///   sendgrid-fake-server [--port N] [--api-key KEY] [--fault SPEC]... [--metrics IP:PORT]
///                        [--webhook URL] [--webhook-key-out FILE] [--event-rule RULE]...
///                        [--webhook-duplicates P] [--webhook-shuffle] [--webhook-retry-for S]
///                        [--max-messages N]
///
/// Prints its base URL alone on the first line of stdout, logs each request on stderr, answers
/// `GET /__requests` with what it received (JSON), forgets it on `DELETE /__requests`, and
/// stops cleanly on SIGINT or SIGTERM. After a 202 it plays SendGrid's part: each recipient
/// gets the events of the first `--event-rule ADDRESS=EVENT+EVENT...` naming it (else the
/// built-in rules: bounce@… bounces, …; else processed + delivered), recorded for
/// `GET /__messages` and the page at `GET /`, and, with `--webhook`, POSTed there in signed
/// batches (the key goes to `--webhook-key-out`, whose path is printed on stdout after the
/// URLs). A fault SPEC is a comma-separated list: an HTTP status
/// to answer with, then any of `times=N`, `delay=MS`, `retry-after=S`, `to=ADDRESS` (only
/// requests to that recipient), `drop` (close the connection mid-answer); e.g.
/// `--fault 429,retry-after=1,times=2` or `--fault 400,to=bounce@example.com`. Every number
/// has an upper bound (see `fake_server_usage`), checked before the server starts: a mistyped
/// one is an error naming the flag and its range. `--metrics` serves Prometheus metrics about
/// what the server answered (`sendgrid_fake_*`, see FakeServerCollectable) and prints their URL
/// on the second line of stdout; it needs a build with prometheus-cpp, where CMake defines
/// SENDGRID_BACKEND_FAKE_SERVER_PROMETHEUS and main passes `serve_fake_server_metrics`. Exit
/// status: 0 stopped by a signal, 2 a bad flag, 1 any other failure (the port is taken, say).

#include <pthread.h>
#include <signal.h>

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
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/programs/command_line.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/testing/fake_events.hpp"
#include "sendgrid_backend/testing/fake_server.hpp"
#include "sendgrid_backend/testing/webhook_client.hpp"

#if defined(SENDGRID_BACKEND_FAKE_SERVER_PROMETHEUS)
#include <prometheus/client_metric.h>
#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>
#include <prometheus/metric_type.h>

#include "sendgrid_backend/detail/programs/metrics_endpoint.hpp"
#include "sendgrid_backend/prometheus.hpp"
#endif

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {
namespace detail {

inline constexpr const char* fake_server_usage =
    "usage: sendgrid-fake-server [--port N] [--api-key KEY] [--fault SPEC]..."
    " [--metrics IP:PORT]\n"
    "       [--webhook URL] [--webhook-key-out FILE] [--event-rule RULE]...\n"
    "       [--webhook-duplicates P] [--webhook-shuffle] [--webhook-retry-for S]"
    " [--max-messages N]\n"
    "  --port N       listen on 127.0.0.1:N, 0-65535 (0, the default: any free port)\n"
    "  --api-key KEY  the bearer key requests must carry (default SG.fake-test-key.0123456789)\n"
    "  --fault SPEC   STATUS[,times=N][,delay=MS][,retry-after=S][,to=ADDRESS][,drop]\n"
    "                 STATUS 100-599; times 1-1000000 (default 1); delay 0-3600000 ms (an\n"
    "                 hour); retry-after 0-86400 s (a day, sent with 429); repeatable\n"
    "  --metrics IP:PORT  serve Prometheus metrics at http://IP:PORT/metrics; IP an IPv4\n"
    "                 address or localhost, PORT 0-65535 (0: any free port), e.g.\n"
    "                 127.0.0.1:9464; the URL is printed on the second line of stdout\n"
    "  --webhook URL  POST signed Event Webhook batches to URL (http://HOST:PORT/PATH)\n"
    "  --webhook-key-out FILE  write the key that verifies them there (base64, as SendGrid's\n"
    "                 settings page shows it); stdout's next line says 'webhook key: FILE'\n"
    "  --event-rule ADDRESS=EVENT[+EVENT]...  the events ADDRESS (or *@DOMAIN) gets, e.g.\n"
    "                 jane@example.com=processed+deferred+delivered; EVENT one of processed,\n"
    "                 delivered, deferred, bounce, blocked, dropped, open, click, spamreport,\n"
    "                 unsubscribe, group_unsubscribe; repeatable, the first match wins; then\n"
    "                 bounce@, blocked@, dropped@, deferred@, spamreport@; else\n"
    "                 processed+delivered\n"
    "  --webhook-duplicates P  deliver each batch once more with probability P, 0-1\n"
    "  --webhook-shuffle  post each batch's events in a random order\n"
    "  --webhook-retry-for S  retry a batch answered non-2xx for 1-86400 s (default 86400,\n"
    "                 as SendGrid)\n"
    "  --max-messages N  keep the newest N accepted messages, 1-1000000 (default all)\n"
    "Flags also take the form --flag=VALUE. The base URL is printed alone on the first line\n"
    "of stdout; requests are logged on stderr; GET /__requests lists what was received.\n"
    "SIGINT or SIGTERM stops the server. Exit status: 0 stopped, 2 a bad flag, 1 any other\n"
    "failure (the port is taken, say).\n";

/// The bounds of the numbers in a --fault SPEC (the usage text says the same).
inline constexpr std::int64_t fault_max_times = 1'000'000;
inline constexpr std::int64_t fault_max_delay_ms = 60 * 60 * 1000;
inline constexpr std::int64_t fault_max_retry_after_s = 24 * 60 * 60;

// The command line pieces the programs share (detail/programs/command_line.hpp).
using sendgrid_backend::detail::bounded_number;
using sendgrid_backend::detail::FlagReader;
using sendgrid_backend::detail::MetricsAddress;
using sendgrid_backend::detail::MetricsEndpoint;
using sendgrid_backend::detail::number_range;
using sendgrid_backend::detail::parse_metrics_address;
using sendgrid_backend::detail::quote_for_error;
using sendgrid_backend::detail::report_usage_error;
using sendgrid_backend::detail::unknown_argument;
using sendgrid_backend::detail::UsageError;

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
        auto number = [&](std::int64_t min, std::int64_t max, const char* unit) {
            std::string why;
            const auto parsed = bounded_number(value, min, max, number_range(unit, min, max), why);
            if (!parsed) error = std::string(key) + ": " + why;
            return parsed;
        };
        if (first && equals == std::string_view::npos && !item.empty() && item != "drop") {
            const auto status =
                bounded_number(item, 100, 599, number_range("an HTTP status", 100, 599), error);
            if (!status) return false;
            fault.status = static_cast<int>(*status);
        } else if (key == "times" && equals != std::string_view::npos) {
            const auto times = number(1, fault_max_times, "a count");
            if (!times) return false;
            fault.times = static_cast<int>(*times);
        } else if (key == "delay" && equals != std::string_view::npos) {
            const auto delay = number(0, fault_max_delay_ms, "milliseconds");
            if (!delay) return false;
            fault.delay = std::chrono::milliseconds(*delay);
        } else if (key == "retry-after" && equals != std::string_view::npos) {
            const auto seconds = number(0, fault_max_retry_after_s, "seconds");
            if (!seconds) return false;
            fault.retry_after_seconds = static_cast<int>(*seconds);
        } else if (key == "to" && equals != std::string_view::npos) {
            if (value.empty()) {
                error = "to: needs an address, e.g. to=bounce@example.com";
                return false;
            }
            fault.for_recipient(std::string(value));
        } else if (item == "drop") {
            fault.drop_connection = true;
        } else {
            error = quote_for_error(item) +
                    " is not a fault setting (the status comes first, then times=N, delay=MS, "
                    "retry-after=S, to=ADDRESS or drop)";
            return false;
        }
        first = false;
        if (end == spec.size()) break;
    }
    return true;
}

/// An EventRule from an --event-rule RULE (ADDRESS=EVENT[+EVENT]...); the error text on
/// failure.
inline bool parse_event_rule(std::string_view spec, EventRule& rule, std::string& error) {
    const std::size_t equals = spec.find('=');
    const std::string_view address =
        equals == std::string_view::npos ? std::string_view() : spec.substr(0, equals);
    if (address.find('@') == std::string_view::npos) {
        error = "needs ADDRESS=EVENT[+EVENT]..., e.g. jane@example.com=processed+bounce";
        return false;
    }
    std::string_view events = spec.substr(equals + 1);
    while (true) {
        const std::size_t plus = events.find('+');
        const std::string_view name = events.substr(0, plus);
        if (!is_fake_event_name(name)) {
            error = quote_for_error(name) +
                    " is not an event (processed, delivered, deferred, bounce, blocked, dropped, "
                    "open, click, spamreport, unsubscribe, group_unsubscribe)";
            return false;
        }
        rule.events.emplace_back(name);
        if (plus == std::string_view::npos) break;
        events = events.substr(plus + 1);
    }
    rule.for_recipient(std::string(address));
    return true;
}

/// A probability from "0" to "1" (a decimal); empty when it is not one.
inline std::optional<double> parse_probability(const std::string& text) {
    if (text.empty() || text.find_first_not_of("0123456789.") != std::string::npos) {
        return std::nullopt;
    }
    char* end = nullptr;
    const double value = std::strtod(text.c_str(), &end);
    if (end != text.c_str() + text.size() || !(value >= 0 && value <= 1)) return std::nullopt;
    return value;
}

/// What the program's command line asked for.
struct FakeServerCommandLine {
    bool help = false;
    FakeServerOptions options;
    std::vector<Fault> faults;
    std::optional<MetricsAddress> metrics;  ///< --metrics, when given
    std::string webhook_key_out;            ///< --webhook-key-out, when given
};

/// Parses the program's command line: `--flag VALUE` or `--flag=VALUE`.
/// @throws UsageError naming the flag, the value typed and what would be valid.
inline FakeServerCommandLine parse_fake_server_command_line(int argc, const char* const* argv) {
    FakeServerCommandLine line;
    FlagReader args(argc, argv);
    while (args.next()) {
        const std::string_view flag = args.flag();
        if (flag == "--port") {
            line.options.port = static_cast<int>(args.number("a port number", 0, 65535));
        } else if (flag == "--api-key") {
            line.options.api_key = args.value("the key requests must carry as a bearer");
        } else if (flag == "--fault") {
            const std::string spec = args.value("a fault such as 429,retry-after=1,times=2");
            Fault fault;
            std::string why;
            if (!parse_fault_spec(spec, fault, why)) {
                throw UsageError("--fault " + quote_for_error(spec) + ": " + why);
            }
            line.faults.push_back(std::move(fault));
        } else if (flag == "--metrics") {
            const std::string address =
                args.value("an IP:PORT to serve /metrics on, e.g. 127.0.0.1:9464");
            std::string why;
            line.metrics = parse_metrics_address(address, 9464, why);
            if (!line.metrics) {
                throw UsageError("--metrics " + quote_for_error(address) + ": " + why);
            }
        } else if (flag == "--webhook") {
            const std::string url = args.value("an http URL to POST events to");
            std::string why;
            if (!parse_webhook_url(url, why)) {
                throw UsageError("--webhook " + quote_for_error(url) + ": " + why);
            }
            line.options.webhook_url = url;
        } else if (flag == "--webhook-key-out") {
            line.webhook_key_out = args.value("a file to write the webhook's public key to");
        } else if (flag == "--event-rule") {
            const std::string spec = args.value("ADDRESS=EVENT[+EVENT]...");
            EventRule rule;
            std::string why;
            if (!parse_event_rule(spec, rule, why)) {
                throw UsageError("--event-rule " + quote_for_error(spec) + ": " + why);
            }
            line.options.event_rules.push_back(std::move(rule));
        } else if (flag == "--webhook-duplicates") {
            const std::string text = args.value("a probability 0-1");
            const auto probability = parse_probability(text);
            if (!probability) {
                throw UsageError("--webhook-duplicates: " + quote_for_error(text) +
                                 " is not a probability 0-1 (e.g. 0.2)");
            }
            line.options.webhook.duplicate_probability = *probability;
        } else if (flag == "--webhook-shuffle") {
            args.no_value();
            line.options.webhook.shuffle = true;
        } else if (flag == "--webhook-retry-for") {
            line.options.webhook.retry_for =
                std::chrono::seconds(args.number("seconds", 1, 24 * 60 * 60));
        } else if (flag == "--max-messages") {
            line.options.max_messages =
                static_cast<std::size_t>(args.number("a count", 1, 1'000'000));
        } else {
            throw unknown_argument(flag);
        }
    }
    line.help = args.help();
    if (line.help || !line.options.webhook_url.empty() || line.webhook_key_out.empty()) {
        return line;
    }
    throw UsageError("--webhook-key-out: the key verifies what --webhook sends; give --webhook");
}

/// Starts serving /metrics about a server (which outlives the endpoint).
/// @throws std::exception when it cannot listen.
using ServeMetrics =
    std::function<MetricsEndpoint(const FakeSendgridServer&, const MetricsAddress&)>;

}  // namespace detail

#if defined(SENDGRID_BACKEND_FAKE_SERVER_PROMETHEUS)
/// The fake server's totals as Prometheus counters, read at scrape time:
/// `sendgrid_fake_requests_total{status}` (the label values of `sendgrid_requests_total` for
/// an answer: a documented status, else its class, else "other_status", which a Fault pushed
/// through the API can give), `sendgrid_fake_messages_accepted_total` (answered 2xx) and
/// `sendgrid_fake_dropped_connections_total`. No label holds anything from a request.
class FakeServerCollectable : public prometheus::Collectable {
  public:
    explicit FakeServerCollectable(const FakeSendgridServer& server) : server_(server) {}

    std::vector<prometheus::MetricFamily> Collect() const override {
        using sendgrid_backend::detail::add_family;
        using sendgrid_backend::detail::add_series;
        const FakeServerTotals totals = server_.totals();
        std::vector<double> by_label(other_status + 1, 0);
        double accepted = 0;
        for (const auto& [status, count] : totals.answered) {
            by_label[label_of(status)] += static_cast<double>(count);
            if (status >= 200 && status < 300) accepted += static_cast<double>(count);
        }
        std::vector<prometheus::MetricFamily> families;
        auto& requests =
            add_family(families, "sendgrid_fake_requests_total",
                       "Requests to /v3/mail/send the fake server answered, by status.",
                       prometheus::MetricType::Counter);
        for (std::size_t i = 0; i < by_label.size(); ++i) {
            add_series(requests, {}, "status", label_name(i)).counter.value = by_label[i];
        }
        auto& accepted_family =
            add_family(families, "sendgrid_fake_messages_accepted_total",
                       "Requests answered 2xx: 202 with an X-Message-Id, 200 in sandbox mode.",
                       prometheus::MetricType::Counter);
        add_series(accepted_family, {}).counter.value = accepted;
        auto& dropped =
            add_family(families, "sendgrid_fake_dropped_connections_total",
                       "Answers cut off mid-way by a drop fault.", prometheus::MetricType::Counter);
        add_series(dropped, {}).counter.value = static_cast<double>(totals.dropped_connections);
        return families;
    }

  private:
    // sendgrid_requests_total's status labels without its transport errors (an answer came).
    using Labels = sendgrid_backend::detail::RequestLabels;
    static constexpr std::size_t other_status = Labels::documented + Labels::classes;

    /// Every int has a label: the fake server answers whatever status a Fault names.
    static std::size_t label_of(int status) noexcept {
        const std::size_t index = Labels::of(status, TransportError::none);
        return index < other_status ? index : other_status;
    }

    static const char* label_name(std::size_t index) noexcept {
        return Labels::name(index < other_status ? index : Labels::other_status);
    }

    const FakeSendgridServer& server_;
};

/// Serves FakeServerCollectable on `address` with prometheus-cpp's Exposer: the program's
/// `--metrics`. @throws ImproperlyConfigured naming the flag when it cannot listen.
inline detail::MetricsEndpoint serve_fake_server_metrics(const FakeSendgridServer& server,
                                                         const detail::MetricsAddress& address) {
    return sendgrid_backend::detail::expose_metrics(
        address, {std::make_shared<FakeServerCollectable>(server)});
}
#endif

/// The program's main: see the file comment. Returns the exit status. `serve_metrics` serves
/// `--metrics` (`serve_fake_server_metrics` in a build with prometheus-cpp); without it the flag
/// is refused.
inline int run_fake_server_cli(int argc, char** argv,
                               const detail::ServeMetrics& serve_metrics = nullptr) {
    detail::FakeServerCommandLine line;
    try {
        line = detail::parse_fake_server_command_line(argc, argv);
    } catch (const detail::UsageError& error) {
        return detail::report_usage_error("sendgrid-fake-server", error, detail::fake_server_usage);
    }
    if (line.help) {
        std::fputs(detail::fake_server_usage, stdout);
        return 0;
    }
    if (line.metrics && !serve_metrics) {
        return detail::report_usage_error(
            "sendgrid-fake-server",
            detail::UsageError("--metrics: this sendgrid-fake-server was built without "
                               "prometheus-cpp (Debian: prometheus-cpp-dev; then configure again)"),
            detail::fake_server_usage);
    }
    FakeServerOptions& options = line.options;
    options.on_request = [](const ReceivedRequest& request) {
        const SentMail mail = request.mail();
        const std::string text =
            "POST /v3/mail/send " + std::to_string(request.answered_status) + " " + mail.summary() +
            (request.message_id.empty() ? "" : " id=" + request.message_id) + "\n";
        std::fputs(text.c_str(), stderr);
    };
    // Block the stop signals in every thread (the server's inherit the mask), then wait here.
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
    try {
        FakeSendgridServer server(options);
        for (const Fault& fault : line.faults) server.push_fault(fault);
        // Destroyed before the server it reads.
        const detail::MetricsEndpoint metrics =
            line.metrics ? serve_metrics(server, *line.metrics) : detail::MetricsEndpoint{};
        if (!line.webhook_key_out.empty()) {
            const std::string key = server.webhook_public_key() + "\n";
            std::FILE* file = std::fopen(line.webhook_key_out.c_str(), "w");
            const bool written = file && std::fputs(key.c_str(), file) >= 0;
            if (!(file && std::fclose(file) == 0 && written)) {
                std::fprintf(stderr, "sendgrid-fake-server: --webhook-key-out %s: cannot write\n",
                             line.webhook_key_out.c_str());
                return 1;
            }
        }
        std::printf("%s\n", server.url().c_str());
        if (line.metrics) std::printf("%s\n", metrics.url.c_str());
        if (!line.webhook_key_out.empty()) {
            std::printf("webhook key: %s\n", line.webhook_key_out.c_str());
        }
        std::fflush(stdout);
        std::fprintf(stderr, "sendgrid-fake-server: listening on %s\n", server.url().c_str());
        if (line.metrics) {
            std::fprintf(stderr, "sendgrid-fake-server: metrics on %s\n", metrics.url.c_str());
        }
        if (!line.options.webhook_url.empty()) {
            std::fprintf(stderr, "sendgrid-fake-server: events to %s\n",
                         line.options.webhook_url.c_str());
        }
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
