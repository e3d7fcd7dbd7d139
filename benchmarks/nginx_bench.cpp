// Sending against a real, fast web server: nginx on loopback answering POST /v3/mail/send with
// 202 and an X-Message-Id (tests/support/nginx.sh; nginx_bench.sh starts it and passes its URL
// in SENDGRID_BACKEND_NGINX_URL). Each comparison is made in the same run:
//  - one request at a time: SendgridBackend::send_message and send_messages (max_in_flight 1)
//    against a raw libcurl keep-alive loop POSTing the same bodies (CURLOPT_POSTFIELDS);
//  - 16 in flight: send_messages (max_in_flight 16) against a raw curl multi loop, 16 in flight;
//  - no network: send_message through a transport that answers 202 at once in this process, so
//    that what is timed is the library's own CPU work per message (with its instruction count
//    from --count no_network, the rate at which this machine runs the library's code).
// The message is the "simple" one: 2 to, cc, bcc, reply_to, plain text.
//
//   nginx_bench --count MODE N   N sends between callgrind start/stop markers; MODE is raw,
//                                raw_curlu, send_message, raw_multi, raw_multi_curlu,
//                                send_messages or no_network
//                                (instructions per message, nginx_bench.sh)
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <benchmark/benchmark.h>
#include <curl/curl.h>
#include <valgrind/callgrind.h>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "instant_transport.hpp"
#include "ratio_reporter.hpp"
#include "simple_message.hpp"

namespace {

namespace sg = sendgrid_backend;
using sendgrid_backend_bench::no_network_backend;

/// SENDGRID_BACKEND_NGINX_URL, or the port in SENDGRID_BACKEND_NGINX_DIR/port (the tests'
/// nginx fixture).
std::string nginx_url() {
    if (const char* url = std::getenv("SENDGRID_BACKEND_NGINX_URL")) return url;
    if (const char* dir = std::getenv("SENDGRID_BACKEND_NGINX_DIR")) {
        std::ifstream file(std::string(dir) + "/port");
        std::string port;
        if (std::getline(file, port)) return "http://127.0.0.1:" + port;
    }
    return "";
}

using sendgrid_backend_bench::simple_message;

sg::Settings settings(std::size_t in_flight) {
    sg::Settings s;
    s.api_key = "SG.benchmark-key";
    s.host_url = nginx_url();
    s.max_in_flight = in_flight;
    return s;
}

std::vector<sg::EmailMessage> messages(int count) {
    std::vector<sg::EmailMessage> list;
    for (int i = 0; i < count; ++i) list.push_back(simple_message(i));
    return list;
}

/// The bodies the backend would send, built up front: the raw loops do HTTP only.
std::vector<std::string> bodies(int count) {
    const sg::SendgridBackend backend(settings(1));
    std::vector<std::string> list;
    for (int i = 0; i < count; ++i) list.push_back(backend.build_payload(simple_message(i)).dump());
    return list;
}

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

struct RawCurl {
    CURL* curl = curl_easy_init();
    curl_slist* headers = nullptr;
    std::string url = nginx_url() + "/v3/mail/send";

    RawCurl() {
        headers = curl_slist_append(headers, "Authorization: Bearer SG.benchmark-key");
        headers = curl_slist_append(headers, "Content-Type: application/json");
        headers = curl_slist_append(headers, "Expect:");
        setup(curl);
    }
    ~RawCurl() {
        curl_slist_free_all(headers);
        curl_easy_cleanup(curl);
    }
    void setup(CURL* handle) const {
        curl_easy_setopt(handle, CURLOPT_URL, url.c_str());
        curl_easy_setopt(handle, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(handle, CURLOPT_WRITEFUNCTION, &discard);
        curl_easy_setopt(handle, CURLOPT_NOSIGNAL, 1L);
    }
    static void body(CURL* handle, const std::string& text) {
        curl_easy_setopt(handle, CURLOPT_POSTFIELDS, text.data());
        curl_easy_setopt(handle, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(text.size()));
    }
    bool send(const std::string& text) const {
        body(curl, text);
        long status = 0;
        if (curl_easy_perform(curl) != CURLE_OK) return false;
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        return status == 202;
    }
};

bool nginx_missing(benchmark::State& state) {
    if (!nginx_url().empty()) return false;
    state.SkipWithError("SENDGRID_BACKEND_NGINX_URL is not set (run benchmarks/nginx_bench.sh)");
    return true;
}

void BM_raw_easy(benchmark::State& state) {
    if (nginx_missing(state)) return;
    const auto list = bodies(1000);
    RawCurl raw;
    std::size_t i = 0;
    for (auto _ : state) {
        if (!raw.send(list[i++ % list.size()])) state.SkipWithError("raw send failed");
    }
    state.SetItemsProcessed(state.iterations());
}

void time_send_message(benchmark::State& state, const sg::SendgridBackend& backend) {
    auto list = messages(1000);
    std::size_t i = 0;
    for (auto _ : state) {
        if (!backend.send_message(list[i++ % list.size()])) state.SkipWithError("a send failed");
    }
    state.SetItemsProcessed(state.iterations());
}

void BM_send_message(benchmark::State& state) {
    if (nginx_missing(state)) return;
    time_send_message(state, sg::SendgridBackend(settings(1)));
}

void BM_send_message_no_network(benchmark::State& state) {
    time_send_message(state, no_network_backend());
}

/// A batch of `state.range(1)` messages per iteration, `state.range(0)` in flight.
void BM_send_messages(benchmark::State& state) {
    if (nginx_missing(state)) return;
    const auto in_flight = static_cast<std::size_t>(state.range(0));
    const sg::SendgridBackend backend(settings(in_flight));
    auto batch = messages(static_cast<int>(state.range(1)));
    for (auto _ : state) {
        if (backend.send_messages(batch) != batch.size()) state.SkipWithError("a send failed");
    }
    state.SetItemsProcessed(state.iterations() * state.range(1));
}

/// The raw multi loop: every body of a batch, `in_flight` at a time, one connection each.
class RawMulti {
  public:
    /// `parse_url_once`: CURLOPT_CURLU, as the library does, instead of CURLOPT_URL.
    explicit RawMulti(std::size_t in_flight, bool parse_url_once = false)
        : multi_(curl_multi_init()), parsed_url_(curl_url()) {
        curl_url_set(parsed_url_, CURLUPART_URL, shared_.url.c_str(), 0);
        curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, static_cast<long>(in_flight));
        for (std::size_t k = 0; k < in_flight; ++k) {
            CURL* handle = curl_easy_init();
            shared_.setup(handle);
            if (parse_url_once) curl_easy_setopt(handle, CURLOPT_CURLU, parsed_url_);
            idle_.push_back(handle);
        }
    }
    ~RawMulti() {
        for (CURL* handle : idle_) curl_easy_cleanup(handle);
        curl_multi_cleanup(multi_);
        curl_url_cleanup(parsed_url_);
    }
    RawMulti(const RawMulti&) = delete;
    RawMulti& operator=(const RawMulti&) = delete;

    /// Sends every body; false when one failed.
    bool send_all(const std::vector<std::string>& list) {
        bool ok = true;
        std::size_t next = 0;
        std::size_t done = 0;
        while (done < list.size()) {
            while (!idle_.empty() && next < list.size()) {
                CURL* handle = idle_.back();
                idle_.pop_back();
                RawCurl::body(handle, list[next++]);
                curl_multi_add_handle(multi_, handle);
            }
            int running = 0;
            curl_multi_perform(multi_, &running);
            int queued = 0;
            bool finished_some = false;
            while (CURLMsg* message = curl_multi_info_read(multi_, &queued)) {
                if (message->msg != CURLMSG_DONE) continue;
                ok = ok && message->data.result == CURLE_OK;
                CURL* handle = message->easy_handle;
                curl_multi_remove_handle(multi_, handle);
                idle_.push_back(handle);
                ++done;
                finished_some = true;
            }
            // Wait only when nothing finished: with free handles the next requests go out first
            // (polling with nothing in flight would sleep the whole timeout).
            if (done < list.size() && !finished_some) {
                curl_multi_poll(multi_, nullptr, 0, 100, nullptr);
            }
        }
        return ok;
    }

  private:
    RawCurl shared_;  // headers and URL
    CURLM* multi_;
    CURLU* parsed_url_;
    std::vector<CURL*> idle_;
};

void BM_raw_multi(benchmark::State& state) {
    if (nginx_missing(state)) return;
    RawMulti raw(static_cast<std::size_t>(state.range(0)));
    const auto list = bodies(static_cast<int>(state.range(1)));
    for (auto _ : state) {
        if (!raw.send_all(list)) state.SkipWithError("raw multi failed");
    }
    state.SetItemsProcessed(state.iterations() * state.range(1));
}

/// `count` send_message calls between callgrind's markers, after one outside them.
int count_send_message(const sg::SendgridBackend& backend, long count) {
    auto list = messages(1000);
    backend.send_message(list[0]);
    CALLGRIND_START_INSTRUMENTATION;
    for (long i = 0; i < count; ++i) {
        backend.send_message(list[static_cast<std::size_t>(i) % list.size()]);
    }
    CALLGRIND_STOP_INSTRUMENTATION;
    return 0;
}

/// N sends between callgrind's start and stop markers (instructions of this process only).
int count_mode(const std::string& impl, long count) {
    if (impl == "raw") {
        const auto list = bodies(1000);
        RawCurl raw;
        raw.send(list[0]);  // warm up: the connection is made outside the count
        CALLGRIND_START_INSTRUMENTATION;
        for (long i = 0; i < count; ++i) raw.send(list[static_cast<std::size_t>(i) % list.size()]);
        CALLGRIND_STOP_INSTRUMENTATION;
        return 0;
    }
    if (impl == "send_message") return count_send_message(sg::SendgridBackend(settings(1)), count);
    if (impl == "no_network") return count_send_message(no_network_backend(), count);
    if (impl == "raw_curlu") {  // the raw loop, its URL parsed once as the library does
        const auto list = bodies(1000);
        RawCurl raw;
        std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> parsed(curl_url(), &curl_url_cleanup);
        curl_url_set(parsed.get(), CURLUPART_URL, raw.url.c_str(), 0);
        curl_easy_setopt(raw.curl, CURLOPT_CURLU, parsed.get());
        raw.send(list[0]);
        CALLGRIND_START_INSTRUMENTATION;
        for (long i = 0; i < count; ++i) raw.send(list[static_cast<std::size_t>(i) % list.size()]);
        CALLGRIND_STOP_INSTRUMENTATION;
        return 0;
    }
    if (impl == "raw_multi" || impl == "raw_multi_curlu") {  // 16 in flight
        const auto list = bodies(static_cast<int>(count));
        RawMulti raw(16, impl == "raw_multi_curlu");
        raw.send_all(list);  // warm up: the connections are made outside the count
        CALLGRIND_START_INSTRUMENTATION;
        raw.send_all(list);
        CALLGRIND_STOP_INSTRUMENTATION;
        return 0;
    }
    if (impl == "send_messages") {  // 16 in flight
        const sg::SendgridBackend backend(settings(16));
        auto batch = messages(static_cast<int>(count));
        backend.send_messages(batch);
        CALLGRIND_START_INSTRUMENTATION;
        backend.send_messages(batch);
        CALLGRIND_STOP_INSTRUMENTATION;
        return 0;
    }
    std::fprintf(stderr,
                 "usage: nginx_bench --count raw|raw_curlu|send_message|raw_multi|raw_multi_curlu|"
                 "send_messages|no_network N\n");
    return 2;
}

}  // namespace

BENCHMARK(BM_raw_easy)->Name("sequential/raw_libcurl_easy")->UseRealTime();
BENCHMARK(BM_send_message)->Name("sequential/send_message")->UseRealTime();
BENCHMARK(BM_send_messages)->Name("sequential/send_messages")->Args({1, 100})->UseRealTime();
BENCHMARK(BM_raw_multi)->Name("in_flight_16/raw_libcurl_multi")->Args({16, 1000})->UseRealTime();
BENCHMARK(BM_send_messages)->Name("in_flight_16/send_messages")->Args({16, 1000})->UseRealTime();
BENCHMARK(BM_send_message_no_network)->Name("no_network/send_message")->UseRealTime();

int main(int argc, char** argv) {
    if (argc == 4 && std::strcmp(argv[1], "--count") == 0) {
        return count_mode(argv[2], std::atol(argv[3]));
    }
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("sequential/send_", 0) == 0)
            return std::string("sequential/raw_libcurl_easy");
        if (name.rfind("in_flight_16/send_messages", 0) == 0) {
            return std::string("in_flight_16/raw_libcurl_multi");
        }
        return std::string();
    });
}
