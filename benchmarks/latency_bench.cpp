// Sending at SendGrid's latency: against slow_sendgrid (a server that answers 100 ms after each
// request, any number at once), throughput is requests in flight / latency, so what is measured
// is whether the requests asked to be in flight really are. The rates that count are the
// server's (GET /__stats: its arrivals per 100 ms); the sender's own is printed beside them.
// benchmarks/latency_bench.sh starts the server and Redis and runs the steps:
//
//   latency_bench send --url URL --impl library|raw [--messages N] [--in-flight K] [--batch B]
//       N messages (default 30000), K in flight (default 256): `library` through
//       SendgridBackend::send_messages in batches of B (default 10 x K; 0: one call with all),
//       sampling this process's resident memory every 100 ms; `raw` through a plain libcurl
//       multi loop keeping K of the same bodies in flight, the floor to compare with.
//   latency_bench enqueue --redis URL [--messages N]
//       queues N messages (keys latency-0 ...) on the default Redis queue, for sendgrid-worker.
//   latency_bench count --url URL
//       prints how many mail/send requests the server has received.
//   latency_bench watch --url URL --messages N [--baseline C] [--rate R --burst B] [--redis URL]
//                       [--timeout S]
//       waits until the server has N more requests than C (default: as many as when it
//       started; give what `count` said before starting the senders), then prints the
//       arrivals per second, the busiest 1-second window (which a limit of R a second with a
//       burst of B keeps at most R + B) and, with --redis, every queued message's state.
//
// Each step prints its figures and exits 1 when a check fails (a message not accepted, the
// server's count not the number sent, the limit exceeded).

#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <curl/curl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "simple_message.hpp"

namespace {

namespace sg = sendgrid_backend;
using Clock = std::chrono::steady_clock;
using sendgrid_backend_bench::simple_message;

const char* text_option(int argc, char** argv, const char* name, const char* fallback) {
    for (int i = 2; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return fallback;
}

long option(int argc, char** argv, const char* name, long fallback) {
    const char* text = text_option(argc, argv, name, nullptr);
    return text != nullptr ? std::atol(text) : fallback;
}

/// CPU seconds this process has used, user and system.
double cpu_seconds() {
    rusage usage{};
    getrusage(RUSAGE_SELF, &usage);
    auto seconds = [](const timeval& t) { return t.tv_sec + t.tv_usec / 1e6; };
    return seconds(usage.ru_utime) + seconds(usage.ru_stime);
}

long resident_kib() {
    std::ifstream statm("/proc/self/statm");
    long pages = 0;
    long resident = 0;
    statm >> pages >> resident;
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

std::size_t keep_text(char* data, std::size_t size, std::size_t count, void* into) {
    static_cast<std::string*>(into)->append(data, size * count);
    return size * count;
}

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

/// What slow_sendgrid counted: its requests in each 100 ms since it started.
struct ServerCounts {
    long received = 0;
    long most_waiting = 0;  ///< the most requests waiting at once since the previous reading
    long connections = 0;   ///< accepted since the server started
    long tick = 0;          ///< the tick now
    long tick_ms = 100;
    std::vector<long> per_tick;

    /// Requests that arrived in ticks [from, to).
    long between(long from, long to) const {
        long sum = 0;
        for (long t = std::max(from, 0L); t < to && t < static_cast<long>(per_tick.size()); ++t) {
            sum += per_tick[static_cast<std::size_t>(t)];
        }
        return sum;
    }
};

/// Reads the server's counts on one kept-alive connection, so that the readings open no
/// connections of their own between the first and the last (the count of new ones is exact).
ServerCounts server_counts(const std::string& url) {
    static CURL* const curl = curl_easy_init();
    std::string body;
    const std::string stats = url + "/__stats";
    curl_easy_setopt(curl, CURLOPT_URL, stats.c_str());
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &keep_text);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    const CURLcode result = curl_easy_perform(curl);
    if (result != CURLE_OK) {
        std::fprintf(stderr, "latency_bench: %s: %s\n", stats.c_str(), curl_easy_strerror(result));
        std::exit(1);
    }
    const auto json = nlohmann::json::parse(body);
    ServerCounts counts;
    counts.received = json.at("received").get<long>();
    counts.most_waiting = json.at("most_waiting").get<long>();
    counts.connections = json.at("connections").get<long>();
    counts.tick = json.at("tick").get<long>();
    counts.tick_ms = json.at("tick_ms").get<long>();
    counts.per_tick = json.at("per_tick").get<std::vector<long>>();
    return counts;
}

/// The server's view of one phase: its arrivals between two readings of its counts.
struct Arrivals {
    long received = 0;
    std::vector<long> per_second;  ///< whole seconds from the phase's first arrival
    double steady_rate = 0;        ///< the mean of the whole seconds between the first and the last
    long busiest_second = 0;       ///< the most in any 1-second window (sliding by one tick)
    long most_waiting = 0;         ///< the most waiting for their answer at once: in flight
    long connections = 0;          ///< connections opened
};

/// The phase began after the server's `received_before`-th request: its first tick is the one
/// holding the next (phases follow one another, never overlap).
Arrivals arrivals(long received_before, long connections_before, const ServerCounts& after) {
    Arrivals result;
    result.received = after.received - received_before;
    result.most_waiting = after.most_waiting;
    result.connections = after.connections - connections_before;
    const long ticks_per_second = 1000 / after.tick_ms;
    long first = 0;
    for (long seen = 0; first <= after.tick; ++first) {
        seen += after.between(first, first + 1);
        if (seen > received_before) break;
    }
    long end = after.tick + 1;
    while (end > first && after.between(end - 1, end) == 0) --end;
    for (long t = first; t < end; t += ticks_per_second) {
        result.per_second.push_back(after.between(t, std::min(t + ticks_per_second, end)));
    }
    // The first and the last second hold the ramp up and the tail: the steady part is between.
    if (result.per_second.size() > 2) {
        long sum = 0;
        for (std::size_t i = 1; i + 1 < result.per_second.size(); ++i) sum += result.per_second[i];
        result.steady_rate = static_cast<double>(sum) / (result.per_second.size() - 2);
    }
    for (long t = first; t < end; ++t) {
        result.busiest_second =
            std::max(result.busiest_second, after.between(t, t + ticks_per_second));
    }
    return result;
}

void print_arrivals(const Arrivals& seen) {
    std::printf(
        "  at the server: %ld requests on %ld new connections, at most %ld waiting for "
        "their answer at once; per second:",
        seen.received, seen.connections, seen.most_waiting);
    for (long count : seen.per_second) std::printf(" %ld", count);
    if (seen.per_second.size() > 2) {
        std::printf(
            "\n  steady rate (the whole seconds between the first and the last): %.0f "
            "msg/s\n",
            seen.steady_rate);
    } else {
        std::printf("\n  too short for a steady rate (3 seconds at least)\n");
    }
}

/// Resident memory sampled every 100 ms on a thread of its own while a phase runs.
class MemorySampler {
  public:
    MemorySampler() : thread_([this] { run(); }) {}
    ~MemorySampler() { stop(); }
    MemorySampler(const MemorySampler&) = delete;
    MemorySampler& operator=(const MemorySampler&) = delete;

    std::vector<long> stop() {
        if (thread_.joinable()) {
            stop_ = true;
            thread_.join();
        }
        return samples_;
    }

  private:
    void run() {
        while (!stop_) {
            {
                std::lock_guard<std::mutex> lock(mutex_);
                samples_.push_back(resident_kib());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
        }
    }
    std::atomic<bool> stop_{false};
    std::mutex mutex_;
    std::vector<long> samples_;
    std::thread thread_;
};

sg::Settings bench_settings(const std::string& url, std::size_t in_flight) {
    sg::Settings settings;
    settings.api_key = "SG.benchmark-key";
    settings.host_url = url;
    settings.max_in_flight = in_flight;
    return settings;
}

/// The library: send_messages in batches; resident memory over the run.
int send_library(const std::string& url, long total, long in_flight, long batch_size) {
    if (batch_size <= 0) batch_size = total;
    const long start_kib = resident_kib();
    const sg::SendgridBackend backend(bench_settings(url, static_cast<std::size_t>(in_flight)));
    long emitted = 0;
    long accepted = 0;
    Clock::time_point first_answer{};  // of the batch being sent
    sg::ScopedConnection counting = sg::sendgrid_email_sent.connect(
        [&](const sg::SendgridBackend&, const sg::EmailMessage&, bool) {
            if (first_answer == Clock::time_point{}) first_answer = Clock::now();
            ++emitted;
        });
    const ServerCounts before = server_counts(url);
    const auto started = Clock::now();
    const double cpu_before = cpu_seconds();
    MemorySampler sampler;
    std::vector<long> after_batch_kib;
    double building = 0;  // seconds spent making the messages, between the batches
    double sending = 0;
    double until_first_answer = 0;
    for (long sent = 0; sent < total; sent += batch_size) {
        const auto build_started = Clock::now();
        std::vector<sg::EmailMessage> batch;
        for (long i = sent; i < std::min(total, sent + batch_size); ++i) {
            batch.push_back(simple_message(static_cast<int>(i)));
        }
        const auto send_started = Clock::now();
        first_answer = Clock::time_point{};
        accepted += static_cast<long>(backend.send_messages(batch));
        until_first_answer += std::chrono::duration<double>(first_answer - send_started).count();
        building += std::chrono::duration<double>(send_started - build_started).count();
        sending += std::chrono::duration<double>(Clock::now() - send_started).count();
        after_batch_kib.push_back(resident_kib());
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const double cpu = cpu_seconds() - cpu_before;
    const std::vector<long> samples = sampler.stop();
    const Arrivals seen = arrivals(before.received, before.connections, server_counts(url));
    std::printf(
        "library: SendgridBackend::send_messages, %ld messages in batches of %ld, %ld in "
        "flight: %.2f s, %.0f msg/s at the sender\n",
        total, batch_size, in_flight, seconds, total / seconds);
    print_arrivals(seen);
    const auto batches = static_cast<double>(after_batch_kib.size());
    std::printf(
        "  per batch: %.1f ms making its messages, %.1f ms in send_messages (the first "
        "answer after %.1f ms)\n",
        1000 * building / batches, 1000 * sending / batches, 1000 * until_first_answer / batches);
    std::printf("  CPU: %.2f s, %.1f us a message (the sampling thread included)\n", cpu,
                1e6 * cpu / total);
    std::printf("  accepted %ld, emitted %ld\n", accepted, emitted);
    // Flat: after the first batch has opened every connection, the resident memory no longer
    // grows (the last sample within 5 % of the one a quarter of the way in).
    const long quarter = samples[samples.size() / 4];
    const long middle = samples[samples.size() / 2];
    const long last = samples.back();
    const long most = *std::max_element(samples.begin(), samples.end());
    std::printf(
        "  resident memory: %ld KiB before the backend, %ld after the first batch; "
        "sampled every 100 ms: %ld at 1/4, %ld at 1/2, %ld at the end, %ld at most "
        "(%zu samples)\n",
        start_kib, after_batch_kib.front(), quarter, middle, last, most, samples.size());
    // Two seconds of samples at least: a shorter run is all warm-up.
    bool flat = true;
    if (samples.size() < 20) {
        std::printf("  too short to judge the memory (%zu samples)\n", samples.size());
    } else {
        const double growth = 100.0 * static_cast<double>(last - quarter) / quarter;
        flat = growth < 5.0;
        std::printf("  from 1/4 to the end: %+.1f %% (%s)\n", growth,
                    flat ? "flat: within 5 %" : "NOT flat");
    }
    const bool counted = seen.received == total && accepted == total && emitted == total;
    if (!counted) std::printf("  CHECK FAILED: each message accepted and received once\n");
    return counted && flat ? 0 : 1;
}

/// The floor: a plain libcurl multi loop with `in_flight` of the library's bodies in flight.
int send_raw(const std::string& url, long total, long in_flight) {
    std::vector<std::string> bodies;
    {
        const sg::SendgridBackend builder(bench_settings(url, 1));
        for (long i = 0; i < total; ++i) {
            bodies.push_back(builder.build_payload(simple_message(static_cast<int>(i))).dump());
        }
    }
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Authorization: Bearer SG.benchmark-key");
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    const std::string send_url = url + "/v3/mail/send";
    CURLM* multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, in_flight);
    std::vector<CURL*> idle;
    for (long k = 0; k < in_flight; ++k) {
        CURL* handle = curl_easy_init();
        curl_easy_setopt(handle, CURLOPT_URL, send_url.c_str());
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &discard);
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
        idle.push_back(handle);
    }
    const ServerCounts before = server_counts(url);
    const auto started = Clock::now();
    const double cpu_before = cpu_seconds();
    long next = 0;
    long done = 0;
    long accepted = 0;
    while (done < total) {
        while (!idle.empty() && next < total) {
            CURL* handle = idle.back();
            idle.pop_back();
            const std::string& body = bodies[static_cast<std::size_t>(next++)];
            curl_easy_setopt(handle, CURLOPT_POSTFIELDS, body.data());
            curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE,
                             static_cast<curl_off_t>(body.size()));
            curl_multi_add_handle(multi, handle);
        }
        int running = 0;
        curl_multi_perform(multi, &running);
        int queued = 0;
        bool finished_some = false;
        while (CURLMsg* message = curl_multi_info_read(multi, &queued)) {
            if (message->msg != CURLMSG_DONE) continue;
            long status = 0;
            curl_easy_getinfo(message->easy_handle, CURLINFO_RESPONSE_CODE, &status);
            if (message->data.result == CURLE_OK && status == 202) ++accepted;
            curl_multi_remove_handle(multi, message->easy_handle);
            idle.push_back(message->easy_handle);
            ++done;
            finished_some = true;
        }
        if (done < total && !finished_some) curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
    }
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    const double cpu = cpu_seconds() - cpu_before;
    const Arrivals seen = arrivals(before.received, before.connections, server_counts(url));
    for (CURL* handle : idle) curl_easy_cleanup(handle);
    curl_multi_cleanup(multi);
    curl_slist_free_all(headers);
    std::printf(
        "raw: a libcurl multi loop, %ld messages, %ld in flight: %.2f s, %.0f msg/s at the "
        "sender\n",
        total, in_flight, seconds, total / seconds);
    print_arrivals(seen);
    std::printf("  CPU: %.2f s, %.1f us a message\n", cpu, 1e6 * cpu / total);
    std::printf("  accepted %ld\n", accepted);
    const bool counted = seen.received == total && accepted == total;
    if (!counted) std::printf("  CHECK FAILED: each message accepted and received once\n");
    return counted ? 0 : 1;
}

std::string key_of(long i) { return "latency-" + std::to_string(i); }

int enqueue(const std::string& redis_url, long total) {
    auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_url));
    sg::RedisMailQueue queue(redis);
    const auto started = Clock::now();
    for (long i = 0; i < total; ++i) queue.enqueue(simple_message(static_cast<int>(i)), key_of(i));
    const double seconds = std::chrono::duration<double>(Clock::now() - started).count();
    std::printf("queued %ld messages in %.2f s\n", total, seconds);
    return 0;
}

/// Every queued message's state, counted.
bool all_accepted(const std::string& redis_url, long total) {
    auto redis = std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_url));
    const sg::RedisMailQueue queue(redis);
    std::map<std::string, long> states;
    for (long i = 0; i < total; ++i) {
        const auto status = queue.status(key_of(i));
        ++states[status ? sg::to_string(status->state) : "missing"];
    }
    std::printf("  queued messages by state:");
    for (const auto& [state, count] : states) std::printf(" %s %ld", state.c_str(), count);
    std::printf("\n");
    return states["accepted"] == total;
}

int watch(const std::string& url, long baseline, long total, long rate, long burst,
          const char* redis_url, long timeout_s) {
    const ServerCounts before = server_counts(url);
    if (baseline < 0) baseline = before.received;
    const auto deadline = Clock::now() + std::chrono::seconds(timeout_s);
    ServerCounts now = before;
    long most_waiting = 0;
    while (now.received - baseline < total && Clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        now = server_counts(url);
        most_waiting = std::max(most_waiting, now.most_waiting);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // anything more would show
    Arrivals seen = arrivals(baseline, before.connections, server_counts(url));
    seen.most_waiting = std::max(seen.most_waiting, most_waiting);
    print_arrivals(seen);
    bool ok = seen.received == total;
    if (!ok)
        std::printf("  CHECK FAILED: the server received %ld, not %ld\n", seen.received, total);
    if (rate > 0) {
        const bool held = seen.busiest_second <= rate + burst;
        std::printf(
            "  the busiest 1-second window (sliding by 100 ms): %ld requests (limit %ld a "
            "second + burst %ld: %s)\n",
            seen.busiest_second, rate, burst, held ? "held" : "EXCEEDED");
        ok = ok && held;
    }
    if (redis_url != nullptr && !all_accepted(redis_url, total)) {
        std::printf("  CHECK FAILED: not every queued message is accepted\n");
        ok = false;
    }
    return ok ? 0 : 1;
}

int usage() {
    std::fprintf(stderr,
                 "usage: latency_bench send --url URL --impl library|raw [--messages N] "
                 "[--in-flight K] [--batch B]\n"
                 "       latency_bench enqueue --redis URL [--messages N]\n"
                 "       latency_bench count --url URL\n"
                 "       latency_bench watch --url URL --messages N [--baseline C] [--rate R "
                 "--burst B] [--redis URL] [--timeout S]\n");
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) return usage();
    const std::string step = argv[1];
    const char* url = text_option(argc, argv, "--url", nullptr);
    const char* redis_url = text_option(argc, argv, "--redis", nullptr);
    const long total = option(argc, argv, "--messages", 30'000);
    if (total < 1) return usage();
    if (step == "send" && url != nullptr) {
        const std::string impl = text_option(argc, argv, "--impl", "");
        const long in_flight = option(argc, argv, "--in-flight", 256);
        if (in_flight < 1 || in_flight > 1000) return usage();
        if (impl == "library") {
            return send_library(url, total, in_flight,
                                option(argc, argv, "--batch", 10 * in_flight));
        }
        if (impl == "raw") return send_raw(url, total, in_flight);
        return usage();
    }
    if (step == "enqueue" && redis_url != nullptr) return enqueue(redis_url, total);
    if (step == "count" && url != nullptr) {
        std::printf("%ld\n", server_counts(url).received);
        return 0;
    }
    if (step == "watch" && url != nullptr) {
        return watch(url, option(argc, argv, "--baseline", -1), total,
                     option(argc, argv, "--rate", 0), option(argc, argv, "--burst", 0), redis_url,
                     option(argc, argv, "--timeout", 120));
    }
    return usage();
}
