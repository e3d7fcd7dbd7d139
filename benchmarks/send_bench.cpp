// Sending against FakeSendgridServer on loopback:
//  - sequential sends through SendgridBackend vs a raw libcurl keep-alive POST loop of the same
//    bodies to the same server (goal: at least 0.9x its throughput);
//  - a batch against a server that delays every answer by 20 ms: 16 in flight vs one at a time
//    (goal: at least 10x the sequential throughput);
//  - Delivery alone, on a transport that answers in the process: the stage's own work per
//    request (its queues, the outcome), without HTTP; also with every request first refused by
//    a 429 that asks for no wait, so that each goes through the retry queues once.
#include <sendgrid_backend/backend.hpp>
#include <sendgrid_backend/delivery.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <curl/curl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "instant_transport.hpp"
#include "ratio_reporter.hpp"

namespace {

using namespace std::chrono_literals;
using sendgrid_backend::EmailMessage;
using sendgrid_backend::SendgridBackend;
using sendgrid_backend::testing::FakeSendgridServer;

EmailMessage message(int i) {
    return EmailMessage("Order " + std::to_string(i) + " shipped", "Your order is on its way.",
                        "Shop <shop@example.com>", {"Jane Doe <jane@example.com>"});
}

sendgrid_backend::Settings settings_for(const FakeSendgridServer& server, std::size_t in_flight) {
    sendgrid_backend::Settings settings = server.settings();
    settings.max_in_flight = in_flight;
    return settings;
}

void BM_backend_sequential(benchmark::State& state) {
    FakeSendgridServer server;
    const SendgridBackend backend(settings_for(server, 1));
    int i = 0;
    for (auto _ : state) {
        EmailMessage m = message(i++);
        if (!backend.send_message(m)) state.SkipWithError("a send failed");
    }
    state.SetItemsProcessed(state.iterations());
}

std::size_t discard(char*, std::size_t size, std::size_t count, void*) { return size * count; }

void BM_raw_curl_sequential(benchmark::State& state) {
    FakeSendgridServer server;
    // The same bodies the backend sends, built up front: the loop is HTTP only.
    const SendgridBackend backend(settings_for(server, 1));
    std::vector<std::string> bodies;
    for (int i = 0; i < 1000; ++i) bodies.push_back(backend.build_payload(message(i)).dump());
    const std::string url = server.url() + "/v3/mail/send";
    const std::string authorization = "Authorization: Bearer " + server.api_key();

    CURL* curl = curl_easy_init();
    curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, authorization.c_str());
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Expect:");
    curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, &discard);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    std::size_t i = 0;
    for (auto _ : state) {
        const std::string& body = bodies[i++ % bodies.size()];
        curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body.data());
        curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
        long status = 0;
        if (curl_easy_perform(curl) != CURLE_OK) state.SkipWithError("curl failed");
        curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
        if (status != 202) state.SkipWithError("not accepted");
    }
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    state.SetItemsProcessed(state.iterations());
}

/// A batch of `messages` against a server answering after 20 ms, `in_flight` at a time.
void BM_batch_delayed(benchmark::State& state) {
    const auto in_flight = static_cast<std::size_t>(state.range(0));
    const auto count = static_cast<int>(state.range(1));
    FakeSendgridServer server("SG.fake-test-key.0123456789", 64);
    server.set_delay(20ms);
    const SendgridBackend backend(settings_for(server, in_flight));
    for (auto _ : state) {
        state.PauseTiming();
        std::vector<EmailMessage> batch;
        for (int i = 0; i < count; ++i) batch.push_back(message(i));
        state.ResumeTiming();
        if (backend.send_messages(batch) != batch.size()) state.SkipWithError("a send failed");
    }
    state.SetItemsProcessed(state.iterations() * count);
}

/// Answers at once: a request's first try gets a 429 asking for no wait, the next a 202. The
/// body names the request (its index).
class RefuseOnceTransport : public sendgrid_backend::Transport {
  public:
    explicit RefuseOnceTransport(std::size_t count) : refused_(count, false) {}

    sendgrid_backend::HttpResponse send(const sendgrid_backend::HttpRequest& request) override {
        sendgrid_backend::HttpResponse response;
        const auto i = static_cast<std::size_t>(std::stoul(request.body));
        if (!refused_[i]) {
            refused_[i] = true;
            response.status = 429;
            response.headers.emplace_back("Retry-After", "0");
        } else {
            response.status = 202;
            response.headers.emplace_back("X-Message-Id", "instant-0123456789abcdef");
        }
        return response;
    }

    void reset() { std::fill(refused_.begin(), refused_.end(), false); }

  private:
    std::vector<bool> refused_;
};

/// One Delivery::run of `count` requests through `transport`'s default batch (one at a time).
template <class Transport>
void delivery_runs(benchmark::State& state, Transport& transport, std::size_t count) {
    sendgrid_backend::Delivery delivery(transport, sendgrid_backend::DeliveryOptions{});
    std::vector<sendgrid_backend::HttpRequest> requests(count);
    for (std::size_t i = 0; i < count; ++i) requests[i].body = std::to_string(i);
    std::vector<sendgrid_backend::SendOutcome> outcomes(count);
    std::vector<sendgrid_backend::SendOutcome*> pointers;
    for (auto& outcome : outcomes) pointers.push_back(&outcome);
    std::size_t accepted = 0;
    for (auto _ : state) {
        state.PauseTiming();
        std::fill(outcomes.begin(), outcomes.end(), sendgrid_backend::SendOutcome{});
        if constexpr (std::is_same_v<Transport, RefuseOnceTransport>) transport.reset();
        state.ResumeTiming();
        delivery.run(requests, pointers,
                     [&](std::size_t i) { accepted += outcomes[i].accepted(); });
    }
    if (accepted != state.iterations() * count) state.SkipWithError("a request was not accepted");
    state.SetItemsProcessed(state.iterations() * static_cast<benchmark::IterationCount>(count));
}

void BM_delivery_instant(benchmark::State& state) {
    sendgrid_backend_bench::InstantTransport transport;
    delivery_runs(state, transport, static_cast<std::size_t>(state.range(0)));
}

void BM_delivery_refused_once(benchmark::State& state) {
    const auto count = static_cast<std::size_t>(state.range(0));
    RefuseOnceTransport transport(count);
    delivery_runs(state, transport, count);
}

}  // namespace

BENCHMARK(BM_delivery_instant)->Name("delivery/instant")->Arg(1)->Arg(100);
BENCHMARK(BM_delivery_refused_once)->Name("delivery/refused_once")->Arg(1)->Arg(100);
BENCHMARK(BM_raw_curl_sequential)->Name("sequential/raw_libcurl")->UseRealTime();
BENCHMARK(BM_backend_sequential)->Name("sequential/SendgridBackend")->UseRealTime();
// One at a time, 100 messages (2 s); the rate per message is what is compared.
BENCHMARK(BM_batch_delayed)
    ->Name("batch_20ms/in_flight_1")
    ->Args({1, 100})
    ->Iterations(1)
    ->UseRealTime();
BENCHMARK(BM_batch_delayed)
    ->Name("batch_20ms/in_flight_16")
    ->Args({16, 1000})
    ->Iterations(2)
    ->UseRealTime();

int main(int argc, char** argv) {
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("sequential/SendgridBackend", 0) == 0)
            return std::string("sequential/raw_libcurl");
        if (name.rfind("batch_20ms/in_flight_16", 0) == 0)
            return std::string("batch_20ms/in_flight_1/");
        return std::string();
    });
}
