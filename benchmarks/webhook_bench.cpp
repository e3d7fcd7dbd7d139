// EventWebhook::handle of a signed batch of 1,000 typical events (verify + parse + emit) against
// nlohmann::json::parse of the same body alone (goal: at most 2x), and with de-duplication on
// (the default in-memory SeenEventIds) against off (goal: at most 1.3x). Every benchmark counts
// events (items_per_second is events per second) and heap allocations per event: this program
// replaces the global operator new with one that counts.
//
// Each iteration takes the next of kBatches distinct signed batches, so that with de-duplication
// on every event is new and the seen set, past its capacity after the first 100 batches, keeps
// evicting: the steady state of a receiver. The other benchmarks cycle through the same bodies.
//
//   webhook_bench --benchmark_repetitions=15 --benchmark_enable_random_interleaving=true
//                                               Google Benchmark table (medians) + ratios
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <string>
#include <vector>

#include "ratio_reporter.hpp"

namespace {

// Heap allocations made on this thread (the benchmarks run on the main thread); thread_local so
// that counting costs no atomic instruction and never races with another thread's allocations.
thread_local std::size_t allocations = 0;

void* counted_allocation(std::size_t size) {
    ++allocations;
    if (void* block = std::malloc(size == 0 ? 1 : size)) return block;
    throw std::bad_alloc();
}

}  // namespace

void* operator new(std::size_t size) { return counted_allocation(size); }
void* operator new[](std::size_t size) { return counted_allocation(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    ++allocations;
    return std::malloc(size == 0 ? 1 : size);
}
void* operator new[](std::size_t size, const std::nothrow_t&) noexcept {
    ++allocations;
    return std::malloc(size == 0 ? 1 : size);
}
void operator delete(void* block) noexcept { std::free(block); }
void operator delete[](void* block) noexcept { std::free(block); }
void operator delete(void* block, std::size_t) noexcept { std::free(block); }
void operator delete[](void* block, std::size_t) noexcept { std::free(block); }
void operator delete(void* block, const std::nothrow_t&) noexcept { std::free(block); }
void operator delete[](void* block, const std::nothrow_t&) noexcept { std::free(block); }

namespace {

namespace sg = sendgrid_backend;

constexpr int kEventsPerBatch = 1000;
constexpr int kBatches = 128;  // > 100: the default seen set (100,000 ids) is full and evicting
constexpr std::int64_t kTimestamp = 1'800'000'000;

/// A base64-looking id of SendGrid's length, distinct for each (batch, event).
std::string event_id(int batch, int event) {
    static const char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    std::uint64_t state = static_cast<std::uint64_t>(batch) * 1'000'003u +
                          static_cast<std::uint64_t>(event) + 0x9e3779b97f4a7c15u;
    std::string id;
    for (int i = 0; i < 22; ++i) {
        state = state * 6364136223846793005u + 1442695040888963407u;
        id += alphabet[(state >> 58) & 63];
    }
    return id;
}

/// Appends one typical event: what SendGrid posts for a transactional message, keys in the order
/// of SendGrid's documentation, with one or two custom args. Written as text, not through
/// nlohmann::json, so that the ctest smoke run of a Debug build makes its batches quickly.
void append_typical_event(std::string& out, int batch, int i) {
    const std::string n = std::to_string(i);
    const std::string message = "14c5d75ce93.dfd.64b" + std::to_string(100 + i % 900);
    out += R"({"email":"user)" + n + R"(@example.com","timestamp":)" +
           std::to_string(kTimestamp - 60 + i % 60) + R"(,"smtp-id":"<)" + message +
           R"(@ismtpd-555>",)";
    switch (i % 10) {
        case 0:
        case 1:
        case 2:
            out += R"("event":"processed","category":"receipts",)";
            break;
        case 3:
        case 4:
        case 5:
            out += R"("event":"delivered","category":["receipts","transactional"],)"
                   R"("response":"250 OK",)";
            break;
        case 6:
        case 7:
            out += R"("event":"open","useragent":"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko )"
                   R"(Firefox/11.0","ip":"255.255.255.255",)";
            break;
        case 8:
            out += R"("event":"click","url":"https://shop.example.com/orders/)" + n +
                   R"(","url_offset":{"index":0,"type":"html"},)";
            break;
        default:
            out += R"("event":"bounce","type":"bounce","status":"5.1.1",)"
                   R"("reason":"550 5.1.1 The email account does not exist",)";
            break;
    }
    out += R"("sg_event_id":")" + event_id(batch, i) + R"(","sg_message_id":")" + message +
           R"(.filter0001.16648.5515E0B88.0","user_id":")" + n + '"';
    if (i % 2 == 0) out += R"(,"order_id":"ord-)" + n + '"';
    out += '}';
}

struct SignedBatch {
    std::string body;
    sg::HttpHeaders headers;
};

struct Batches {
    sg::testing::WebhookSigner signer;
    std::vector<SignedBatch> batches;

    Batches() {
        for (int b = 0; b < kBatches; ++b) {
            std::string body = "[";
            for (int i = 0; i < kEventsPerBatch; ++i) {
                if (i > 0) body += ',';
                append_typical_event(body, b, i);
            }
            body += ']';
            sg::HttpHeaders headers = signer.headers(body, kTimestamp);
            batches.push_back({std::move(body), std::move(headers)});
        }
        // What is measured is what it claims to be: the five kinds, every field and arg read.
        const auto events = sg::parse_webhook_events(batches[0].body);
        const bool typical =
            events.size() == kEventsPerBatch && events[0].type == sg::EventType::processed &&
            events[3].categories.size() == 2 && events[6].type == sg::EventType::open &&
            !events[6].useragent.empty() && events[8].url_offset_type == "html" &&
            events[9].status == "5.1.1" && events[0].custom_args.size() == 2 &&
            events[1].custom_args.size() == 1 && events[999].timestamp > 0 &&
            !events[999].sg_message_id.empty();
        if (!typical) throw std::logic_error("webhook_bench: the batch is not what it should be");
    }
};

const Batches& batches() {
    static const Batches made;
    return made;
}

sg::WebhookOptions options(bool deduplicate) {
    sg::WebhookOptions result;
    result.public_key = batches().signer.public_key_base64();
    result.now = [] { return kTimestamp; };
    if (!deduplicate) result.seen.reset();
    return result;
}

/// Runs `work` on each batch in turn from `next` (kept between runs, so that a webhook kept with
/// it never sees a batch again before the seen set forgot it) and reports events per second and
/// allocations per event.
template <class Work>
void run(benchmark::State& state, std::size_t& next, Work&& work) {
    const auto& all = batches().batches;
    const std::size_t before = allocations;
    for (auto _ : state) {
        work(all[next]);
        next = (next + 1) % all.size();
    }
    const double events = static_cast<double>(state.iterations()) * kEventsPerBatch;
    state.SetItemsProcessed(static_cast<std::int64_t>(events));
    state.counters["allocs/event"] = static_cast<double>(allocations - before) / events;
    state.counters["body_bytes"] = static_cast<double>(all[0].body.size());
}

/// The floor: nlohmann parsing the body into a tree (and freeing it), nothing else.
void BM_json_parse(benchmark::State& state) {
    static std::size_t next = 0;
    run(state, next, [](const SignedBatch& batch) {
        auto json = nlohmann::json::parse(batch.body);
        benchmark::DoNotOptimize(json);
    });
}
BENCHMARK(BM_json_parse)->Name("webhook/json_parse");

/// The signature check alone.
void BM_verify(benchmark::State& state) {
    const sg::EventWebhookVerifier verifier(batches().signer.public_key_base64());
    const std::string stamp = std::to_string(kTimestamp);
    static std::size_t next = 0;
    run(state, next, [&](const SignedBatch& batch) {
        bool ok = verifier.verify(batch.body, batch.headers[0].second, stamp);
        if (!ok) state.SkipWithError("the signature does not verify");
        benchmark::DoNotOptimize(ok);
    });
}
BENCHMARK(BM_verify)->Name("webhook/verify");

/// Parsing alone (no signature), as parse_webhook_events gives it.
void BM_parse_events(benchmark::State& state) {
    static std::size_t next = 0;
    run(state, next, [](const SignedBatch& batch) {
        auto events = sg::parse_webhook_events(batch.body);
        benchmark::DoNotOptimize(events);
    });
}
BENCHMARK(BM_parse_events)->Name("webhook/parse_webhook_events");

/// The whole request: size check, signature, parse, de-duplication (or not), emission (no handler
/// connected). The webhook lives as long as the program: its seen set stays in its steady state.
void BM_handle(benchmark::State& state, bool deduplicate) {
    static const sg::EventWebhook with_dedup(options(true));
    static const sg::EventWebhook without_dedup(options(false));
    static std::size_t next[2] = {0, 0};
    const sg::EventWebhook& webhook = deduplicate ? with_dedup : without_dedup;
    run(state, next[deduplicate ? 1 : 0], [&](const SignedBatch& batch) {
        auto result = webhook.handle(batch.headers, batch.body);
        if (result.events.size() != kEventsPerBatch) {
            state.SkipWithError(("handle: " + std::to_string(result.events.size()) + " events, " +
                                 result.refusal_reason)
                                    .c_str());
        }
        benchmark::DoNotOptimize(result);
    });
}
BENCHMARK_CAPTURE(BM_handle, no_dedup, false)->Name("webhook/handle/no_dedup");
BENCHMARK_CAPTURE(BM_handle, dedup, true)->Name("webhook/handle/dedup");

}  // namespace

int main(int argc, char** argv) {
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("webhook/handle/dedup", 0) == 0)
            return std::string("webhook/handle/no_dedup");
        if (name.rfind("webhook/json_parse", 0) == 0) return std::string();
        return std::string("webhook/json_parse");
    });
}
