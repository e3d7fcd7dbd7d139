// What PrometheusMetrics costs a send: send_message of the "simple" message through a transport
// that answers 202 at once in this process (the library's own CPU work, no network), with and
// without a PrometheusMetrics connected, in the same run. Beside them, the same recording made
// with a prometheus-cpp Registry's own counters and histograms (what the header does not use:
// a registry histogram takes a mutex per observation).
//
//   metrics_bench --count without|with|registry N   N sends between callgrind's start and stop
//                                                   markers (instructions per message)
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/prometheus.hpp>

#include <benchmark/benchmark.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <valgrind/callgrind.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "instant_transport.hpp"
#include "ratio_reporter.hpp"
#include "simple_message.hpp"

namespace {

namespace sg = sendgrid_backend;
using sendgrid_backend_bench::no_network_backend;
using sendgrid_backend_bench::simple_message;

std::vector<sg::EmailMessage> messages(int count) {
    std::vector<sg::EmailMessage> list;
    for (int i = 0; i < count; ++i) list.push_back(simple_message(i));
    return list;
}

/// The same numbers recorded the plain prometheus-cpp way: a Registry's families, the label
/// looked up once, one counter per outcome and status, two histograms.
class RegistryRecorder {
  public:
    RegistryRecorder()
        : messages_(prometheus::BuildCounter()
                        .Name("sendgrid_messages_total")
                        .Register(*registry_)
                        .Add({{"outcome", "accepted"}})),
          requests_(prometheus::BuildCounter()
                        .Name("sendgrid_requests_total")
                        .Register(*registry_)
                        .Add({{"status", "202"}})),
          duration_(prometheus::BuildHistogram()
                        .Name("sendgrid_send_duration_seconds")
                        .Register(*registry_)
                        .Add({}, prometheus::Histogram::BucketBoundaries{0.05, 0.1, 0.25, 0.5, 1,
                                                                         2.5, 5, 10, 30, 60})),
          tries_(prometheus::BuildHistogram()
                     .Name("sendgrid_send_tries")
                     .Register(*registry_)
                     .Add({}, prometheus::Histogram::BucketBoundaries{1, 2, 3, 4, 5, 6, 8, 10})) {
        connection_ = sg::sendgrid_email_sent.connect(
            [this](const sg::SendgridBackend&, const sg::EmailMessage& message, bool) {
                messages_.Increment();
                requests_.Increment();
                duration_.Observe(std::chrono::duration<double>(message.outcome.duration).count());
                tries_.Observe(message.outcome.tries);
            });
    }

  private:
    std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
    prometheus::Counter& messages_;
    prometheus::Counter& requests_;
    prometheus::Histogram& duration_;
    prometheus::Histogram& tries_;
    sg::ScopedConnection connection_;
};

enum class Recording { without, with, registry };

void time_send(benchmark::State& state, Recording recording) {
    const sg::SendgridBackend backend = no_network_backend();
    std::optional<sg::PrometheusMetrics> metrics;
    std::optional<RegistryRecorder> registry;
    if (recording == Recording::with) metrics.emplace();
    if (recording == Recording::registry) registry.emplace();
    auto list = messages(1000);
    std::size_t i = 0;
    for (auto _ : state) {
        if (!backend.send_message(list[i++ % list.size()])) state.SkipWithError("a send failed");
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_without(benchmark::State& state) { time_send(state, Recording::without); }
void BM_with(benchmark::State& state) { time_send(state, Recording::with); }
void BM_registry(benchmark::State& state) { time_send(state, Recording::registry); }

int count_mode(const std::string& mode, long count) {
    const sg::SendgridBackend backend = no_network_backend();
    std::optional<sg::PrometheusMetrics> metrics;
    std::optional<RegistryRecorder> registry;
    if (mode == "with") {
        metrics.emplace();
    } else if (mode == "registry") {
        registry.emplace();
    } else if (mode != "without") {
        std::fprintf(stderr, "usage: metrics_bench --count without|with|registry N\n");
        return 2;
    }
    auto list = messages(1000);
    backend.send_message(list[0]);  // warm up outside the count
    CALLGRIND_START_INSTRUMENTATION;
    for (long i = 0; i < count; ++i) {
        backend.send_message(list[static_cast<std::size_t>(i) % list.size()]);
    }
    CALLGRIND_STOP_INSTRUMENTATION;
    return 0;
}

}  // namespace

BENCHMARK(BM_without)->Name("no_network/send_message")->UseRealTime();
BENCHMARK(BM_with)->Name("no_network/send_message+PrometheusMetrics")->UseRealTime();
BENCHMARK(BM_registry)->Name("no_network/send_message+registry_metrics")->UseRealTime();

int main(int argc, char** argv) {
    if (argc == 4 && std::strcmp(argv[1], "--count") == 0) {
        return count_mode(argv[2], std::atol(argv[3]));
    }
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("no_network/send_message+", 0) == 0) {
            return std::string("no_network/send_message");
        }
        return std::string();
    });
}
