// Soak: many sends through one backend against FakeSendgridServer on loopback, in batches, to
// show that nothing accumulates: resident memory in the last 10 % of the run against the first
// 10 % (goal: within 5 %), open file descriptors, and the rate over time.
//   soak [--messages N] [--batch B] [--in-flight K] [--check-flat 0|1] [--url URL --key KEY]
//                                     (defaults: 100000, 1000, 8, 1; ctest's short run under
//                                     ASan, whose quarantine grows memory, passes 0)
// By default the fake server runs in this process (its 32 threads and their malloc arenas
// count in the resident memory); --url sends to one outside it, e.g. the sendgrid-fake-server
// program, so that only the sending side is measured.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

namespace sg = sendgrid_backend;

namespace {

long resident_kib() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0;
    long resident = 0;
    statm >> pages >> resident;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

long open_fds() {
    long count = 0;
    for ([[maybe_unused]] const auto& entry :
         std::filesystem::directory_iterator("/proc/self/fd")) {
        ++count;
    }
    return count;
}

const char* text_option(int argc, char** argv, const char* name) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return nullptr;
}

long option(int argc, char** argv, const char* name, long fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
    }
    return fallback;
}

}  // namespace

int main(int argc, char** argv) {
    const long total = option(argc, argv, "--messages", 100'000);
    const long batch_size = option(argc, argv, "--batch", 1'000);
    const long in_flight = option(argc, argv, "--in-flight", 8);
    const bool check_flat = option(argc, argv, "--check-flat", 1) != 0;
    const char* outside_url = text_option(argc, argv, "--url");
    const char* outside_key = text_option(argc, argv, "--key");
    std::unique_ptr<sg::testing::FakeSendgridServer> server;
    sg::Settings settings;
    if (outside_url != nullptr && outside_key != nullptr) {
        settings.api_key = outside_key;
        settings.host_url = outside_url;
    } else {
        server =
            std::make_unique<sg::testing::FakeSendgridServer>("SG.fake-test-key.0123456789", 32);
        settings = server->settings();
    }
    settings.max_in_flight = static_cast<std::size_t>(in_flight);
    const sg::SendgridBackend backend(settings);
    long emissions = 0;
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) { ++emissions; });

    struct Sample {
        long sent;
        long rss_kib;
        long fds;
        double rate;
    };
    std::vector<Sample> samples;
    long sent = 0;
    const auto started = std::chrono::steady_clock::now();
    while (sent < total) {
        std::vector<sg::EmailMessage> batch;
        for (long i = 0; i < batch_size && sent + i < total; ++i) {
            batch.emplace_back(
                "Soak " + std::to_string(sent + i), "Body", "shop@example.com",
                std::vector<std::string>{"user" + std::to_string(i % 97) + "@example.com"});
        }
        const auto batch_started = std::chrono::steady_clock::now();
        const std::size_t accepted = backend.send_messages(batch);
        const double seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - batch_started).count();
        if (accepted != batch.size()) {
            std::fprintf(stderr, "a batch was not accepted whole\n");
            return 1;
        }
        sent += static_cast<long>(batch.size());
        if (server) server->clear_received();  // the server's own record would grow; ours must not
        samples.push_back(Sample{sent, resident_kib(), open_fds(), batch.size() / seconds});
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::size_t tenth = std::max<std::size_t>(1, samples.size() / 10);
    auto average = [&](std::size_t from, auto field) {
        double sum = 0;
        for (std::size_t i = from; i < from + tenth; ++i)
            sum += static_cast<double>(field(samples[i]));
        return sum / static_cast<double>(tenth);
    };
    const double rss_first = average(0, [](const Sample& s) { return s.rss_kib; });
    const double rss_last =
        average(samples.size() - tenth, [](const Sample& s) { return s.rss_kib; });
    const double rate_first = average(0, [](const Sample& s) { return s.rate; });
    const double rate_last =
        average(samples.size() - tenth, [](const Sample& s) { return s.rate; });
    long fds_min = samples.front().fds;
    long fds_max = samples.front().fds;
    for (const auto& s : samples) {
        fds_min = std::min(fds_min, s.fds);
        fds_max = std::max(fds_max, s.fds);
    }
    const double rss_change = (rss_last - rss_first) / rss_first * 100;
    std::printf("%ld messages in %ld batches of %ld, %ld in flight: %.1f s, %.0f msg/s\n", sent,
                static_cast<long>(samples.size()), batch_size, in_flight, seconds, sent / seconds);
    std::printf("emissions: %ld (one per message: %s)\n", emissions,
                emissions == sent ? "yes" : "NO");
    std::printf("resident memory, first 10%%: %.0f KiB, last 10%%: %.0f KiB (%+.1f %%)\n",
                rss_first, rss_last, rss_change);
    std::printf("rate, first 10%%: %.0f msg/s, last 10%%: %.0f msg/s\n", rate_first, rate_last);
    std::printf("open file descriptors: %ld to %ld\n", fds_min, fds_max);
    const bool flat = rss_change < 5.0 && fds_max - fds_min <= 2;
    std::printf("%s\n", flat ? "flat: memory within 5 %, descriptors steady" : "NOT flat");
    return emissions == sent && (flat || !check_flat) ? 0 : 1;
}
