// Statuses in Redis from the Event Webhook, each comparison in the same run (status_bench.sh
// starts its own redis-server; the ctest smoke run uses the tests' one):
//  - status/handle_redis: a signed 1,000-event POST body through EventWebhook::handle with
//    `statuses` = StatusTracker over RedisStatusStore: verified, parsed, turned into facts and
//    applied to Redis in one transaction a part, all in one round trip per batch, and every status
//    change worked out and signalled to a counting sendgrid_status_changed handler;
//  - status/raw_hset (the baseline): the same 1,000 events, already parsed, written the plainest
//    way: one HSET per event (field "<email>|<event>|<sg_event_id>", value its timestamp) into
//    a hash per tracking key, all 1,000 pipelined in one round trip with RedisClient::pipeline;
//  - status/raw_hset_lua: the same 1,000 HSETs run by one Lua script (one EVALSHA, the keys as
//    KEYS, fields and values as ARGV): what one script per batch costs before it does anything
//    of its own, the floor of the design the statuses use;
//  - status/handle_no_statuses and status/handle_raw_hset, to tell where the time goes:
//    handle without statuses (verify + parse), and a naive receiver (handle, then the raw
//    pipelined HSETs of its events).
//  - status/nlohmann_accept and status/nlohmann_parse: nlohmann's reading of the same body,
//    only checked and as a tree: the floor of a receiver whose events carry nlohmann::json.
//  - status/sketch_fact_log: a lean receiver's sketch, no tree and the status folded in the
//    client (fact_log_sketch.hpp), to set the library's store against.
// Every benchmark counts events (items_per_second is events per second). Ratios are printed
// after the table (ratio_reporter.hpp). Where Redis is written, redis_cpu_ms/batch is
// redis-server's CPU time a batch (INFO cpu, the pauses between passes left out).
//
// The work is never all duplicates: kBatches distinct batches (distinct tracking keys and
// event ids) are cycled through, and each pass over them writes under a prefix of its own, the
// previous pass's keys deleted (SCAN + UNLINK, outside the timing) when the next begins. So
// every fact applied is new to its store, as a receiver's steady state has it. A batch holds
// 250 messages x 4 events (processed, delivered, then open, click, deferred or bounce).
//
//   benchmarks/status_bench.sh [path/to/status_bench]
#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/redis/scripts.hpp>
#include <sendgrid_backend/status/redis_store.hpp>
#include <sendgrid_backend/status/tracker.hpp>
#include <sendgrid_backend/testing/webhook_signer.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "fact_log_sketch.hpp"
#include "ratio_reporter.hpp"
#include "redis_server.hpp"

namespace {

namespace sg = sendgrid_backend;

constexpr int kEventsPerBatch = 1000;
constexpr int kEventsPerMessage = 4;
constexpr int kBatches = 32;
constexpr std::int64_t kTimestamp = 1'800'000'000;

bool redis_missing(benchmark::State& state) {
    return ::redis_missing(state, "benchmarks/status_bench.sh");
}

/// One event as SendGrid posts it, with the tracking key as a custom arg.
void append_event(std::string& out, int batch, int i) {
    const int message = i / kEventsPerMessage;
    const std::string key = "b" + std::to_string(batch) + "-m" + std::to_string(message);
    const std::string message_id =
        "14c5d75ce93.dfd." + std::to_string(batch) + "." + std::to_string(message);
    const std::int64_t time = kTimestamp - 600 + (i % kEventsPerMessage) * 60 + message % 60;
    out += R"({"email":"user)" + std::to_string(message) + R"(@example.com","timestamp":)" +
           std::to_string(time) + R"(,"smtp-id":"<)" + message_id + R"(@ismtpd-555>",)";
    switch (i % kEventsPerMessage) {
        case 0:
            out += R"("event":"processed","category":"receipts",)";
            break;
        case 1:
            out += R"("event":"delivered","response":"250 OK",)";
            break;
        case 2:
            out += R"("event":"open","useragent":"Mozilla/5.0 (Windows NT 5.1; rv:11.0) Gecko )"
                   R"(Firefox/11.0","ip":"255.255.255.255",)";
            break;
        default:
            switch (message % 3) {
                case 0:
                    out += R"("event":"click","url":"https://shop.example.com/orders/)" +
                           std::to_string(message) + R"(",)";
                    break;
                case 1:
                    out += R"("event":"deferred","response":"421 try again later",)"
                           R"("attempt":"1",)";
                    break;
                default:
                    out += R"("event":"bounce","type":"bounce","status":"5.1.1",)"
                           R"("reason":"550 5.1.1 The email account does not exist",)";
                    break;
            }
            break;
    }
    out += R"("sg_event_id":"ev-)" + std::to_string(batch) + "-" + std::to_string(i) +
           R"(","sg_message_id":")" + message_id + R"(.filter0001.16648.5515E0B88.0",)" +
           R"("sendgrid_backend_key":")" + key + R"(","order_id":"ord-)" + std::to_string(message) +
           R"("})";
}

struct SignedBatch {
    std::string body;
    sg::HttpHeaders headers;
    /// The baseline's HSETs: key (without the prefix), field, value.
    std::vector<std::vector<std::string>> hsets;
};

struct Batches {
    sg::testing::WebhookSigner signer;
    std::vector<SignedBatch> batches;

    Batches() {
        for (int b = 0; b < kBatches; ++b) {
            SignedBatch batch;
            batch.body = "[";
            for (int i = 0; i < kEventsPerBatch; ++i) {
                if (i > 0) batch.body += ',';
                append_event(batch.body, b, i);
            }
            batch.body += ']';
            batch.headers = signer.headers(batch.body, kTimestamp);
            for (const sg::WebhookEvent& event : sg::parse_webhook_events(batch.body)) {
                batch.hsets.push_back({"HSET", sg::tracking_key_of(event, sg::default_tracking_arg),
                                       event.email + "|" + std::string(sg::to_string(event.type)) +
                                           "|" + event.sg_event_id,
                                       std::to_string(event.timestamp)});
            }
            batches.push_back(std::move(batch));
        }
        const auto events = sg::parse_webhook_events(batches[0].body);
        if (events.size() != kEventsPerBatch || events[3].type != sg::EventType::click ||
            events[7].type != sg::EventType::deferred || events[11].type != sg::EventType::bounce ||
            sg::tracking_key_of(events[999], sg::default_tracking_arg) != "b0-m249") {
            throw std::logic_error("status_bench: the batch is not what it should be");
        }
    }
};

const Batches& batches() {
    static const Batches made;
    return made;
}

/// Deletes every key under `prefix` (a pass's keys, once the next pass has begun).
void delete_prefix(sg::RedisClient& redis, const std::string& prefix) {
    std::string cursor = "0";
    do {
        const sg::RedisValue page =
            redis.command({"SCAN", cursor, "MATCH", prefix + "*", "COUNT", "10000"});
        if (page.type != sg::RedisValue::Type::array || page.elements.size() != 2) return;
        cursor = page.elements[0].text;
        std::vector<std::string> unlink{"UNLINK"};
        for (const sg::RedisValue& key : page.elements[1].elements) unlink.push_back(key.text);
        if (unlink.size() > 1) redis.command(unlink);
    } while (cursor != "0");
}

/// A number on `command`'s line of INFO commandstats ("calls", "usec"): round trips counted,
/// and the time Redis spent running them, apart from the client's.
std::int64_t command_stat(sg::RedisClient& redis, const std::string& command,
                          const std::string& stat) {
    const sg::RedisValue info = redis.command({"INFO", "commandstats"});
    const auto line = info.text.find("cmdstat_" + command + ":");
    if (line == std::string::npos) return 0;
    const auto at = info.text.find(stat + "=", line);
    if (at == std::string::npos || at > info.text.find('\n', line)) return 0;
    return std::strtoll(info.text.c_str() + at + stat.size() + 1, nullptr, 10);
}

/// The CPU time redis-server has used (INFO cpu: all its threads), in milliseconds.
double redis_cpu_ms(sg::RedisClient& redis) {
    const std::string info = redis.command({"INFO", "cpu"}).text;
    double total = 0;
    for (const char* field : {"used_cpu_sys:", "used_cpu_user:"}) {
        const auto at = info.find(field);
        if (at != std::string::npos)
            total += std::strtod(info.c_str() + at + std::strlen(field), nullptr);
    }
    return total * 1e3;
}

/// What the batches cost Redis: its CPU time a batch (all it did, the pauses between passes left
/// out: see Pass), and its transactions and script calls a batch.
struct RedisCost {
    sg::RedisClient& redis;
    const double& paused_ms;  ///< Redis' CPU time spent while the timing was paused
    double cpu_ms = redis_cpu_ms(redis);
    double paused_before = paused_ms;
    std::int64_t calls =
        command_stat(redis, "evalsha", "calls") + command_stat(redis, "exec", "calls");

    void report(benchmark::State& state) {
        const auto iterations = static_cast<double>(state.iterations());
        const std::int64_t now =
            command_stat(redis, "evalsha", "calls") + command_stat(redis, "exec", "calls");
        state.counters["calls/batch"] = static_cast<double>(now - calls) / iterations;
        state.counters["redis_cpu_ms/batch"] =
            (redis_cpu_ms(redis) - cpu_ms - (paused_ms - paused_before)) / iterations;
    }
};

/// A pass over the batches: a prefix of its own, and (for handle_redis) the objects using it.
struct Pass {
    std::shared_ptr<sg::RedisClient> redis =
        std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_url()));
    std::string name;
    int number = 0;
    std::string prefix;
    std::size_t next = kBatches;  // starts a pass at the first batch
    double paused_ms = 0;         // Redis' CPU time deleting old passes (outside the timing)

    explicit Pass(std::string which) : name(std::move(which)) {}
    ~Pass() { delete_prefix(*redis, prefix); }

    /// The next batch; at the end of a pass (outside the timing) a new prefix, the old deleted.
    template <class OnNewPass>
    const SignedBatch& advance(benchmark::State& state, OnNewPass&& on_new_pass) {
        if (next == kBatches) {
            state.PauseTiming();
            const double cpu = redis_cpu_ms(*redis);
            if (!prefix.empty()) delete_prefix(*redis, prefix);
            paused_ms += redis_cpu_ms(*redis) - cpu;
            prefix = "bench:status:" + name + ":" + std::to_string(++number) + ":";
            on_new_pass();
            next = 0;
            state.ResumeTiming();
        }
        return batches().batches[next++];
    }
};

sg::WebhookOptions webhook_options() {
    sg::WebhookOptions options;
    options.public_key = batches().signer.public_key_base64();
    options.now = [] { return kTimestamp; };
    return options;
}

/// Ours: verify, parse, facts, one transaction a part, one round trip a batch.
void BM_handle_redis(benchmark::State& state) {
    if (redis_missing(state)) return;
    batches();
    Pass pass("ours");
    std::unique_ptr<sg::EventWebhook> webhook;
    std::shared_ptr<sg::RedisStatusStore> store;
    RedisCost script{*pass.redis, pass.paused_ms};
    std::size_t applied = 0;
    // A handler, so that the changes are worked out (the tracker skips that for nobody).
    std::int64_t changes = 0;
    sg::ScopedConnection counting = sg::sendgrid_status_changed.connect(
        [&changes](const std::string&, const std::string&, const sg::RecipientState&,
                   const sg::RecipientState&, const sg::StatusEvent&) { ++changes; });
    for (auto _ : state) {
        const SignedBatch& batch = pass.advance(state, [&] {
            sg::RedisStatusStoreOptions store_options;
            store_options.prefix = pass.prefix;
            store = std::make_shared<sg::RedisStatusStore>(pass.redis, store_options);
            sg::StatusTrackerOptions tracker_options;
            tracker_options.store = store;
            sg::WebhookOptions options = webhook_options();
            options.statuses = std::make_shared<sg::StatusTracker>(tracker_options);
            webhook = std::make_unique<sg::EventWebhook>(options);
        });
        const sg::WebhookResult result = webhook->handle(batch.headers, batch.body);
        if (!result.accepted() || result.statuses_applied != kEventsPerBatch) {
            state.SkipWithError(("handle: " + std::to_string(result.statuses_applied) +
                                 " applied, " + result.refusal_reason)
                                    .c_str());
            break;
        }
        applied += result.statuses_applied;
    }
    const double iterations = static_cast<double>(state.iterations());
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
    state.counters["applied/event"] = static_cast<double>(applied) / (iterations * kEventsPerBatch);
    state.counters["changes/event"] = static_cast<double>(changes) / (iterations * kEventsPerBatch);
    script.report(state);
}
BENCHMARK(BM_handle_redis)->Name("status/handle_redis")->UseRealTime();

/// A lean receiver's sketch (fact_log_sketch.hpp): verified, read without a tree, applied to a
/// hash of facts per message in one script call, statuses folded in the client.
void BM_sketch_fact_log(benchmark::State& state) {
    if (redis_missing(state)) return;
    batches();
    Pass pass("sketch");
    std::unique_ptr<fact_log_sketch::Receiver> receiver;
    std::int64_t changes = 0;
    RedisCost script{*pass.redis, pass.paused_ms};
    for (auto _ : state) {
        const SignedBatch& batch = pass.advance(state, [&] {
            receiver = std::make_unique<fact_log_sketch::Receiver>(
                batches().signer.public_key_base64(), pass.prefix);
        });
        const auto result = receiver->handle(batch.headers, batch.body, *pass.redis);
        if (result.applied != kEventsPerBatch) {
            state.SkipWithError(("sketch: " + std::to_string(result.applied) + " applied").c_str());
            break;
        }
        changes += result.changes;
    }
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
    state.counters["changes/event"] =
        static_cast<double>(changes) / (static_cast<double>(state.iterations()) * kEventsPerBatch);
    script.report(state);
}
BENCHMARK(BM_sketch_fact_log)->Name("status/sketch_fact_log")->UseRealTime();

/// The baseline: the parsed events as pipelined HSETs, one round trip per batch. Its commands
/// (with the pass's prefix) are made outside the timing.
void BM_raw_hset(benchmark::State& state) {
    if (redis_missing(state)) return;
    batches();
    Pass pass("raw");
    std::vector<std::vector<std::vector<std::string>>> prefixed;
    RedisCost cost{*pass.redis, pass.paused_ms};
    for (auto _ : state) {
        const SignedBatch& batch = pass.advance(state, [&] {
            prefixed.clear();
            for (const SignedBatch& each : batches().batches) {
                prefixed.push_back(each.hsets);
                for (auto& command : prefixed.back()) command[1] = pass.prefix + command[1];
            }
        });
        const auto& commands = prefixed[static_cast<std::size_t>(&batch - &batches().batches[0])];
        const std::vector<sg::RedisValue> answers = pass.redis->pipeline(commands);
        if (answers.size() != commands.size() || answers.back().is_error()) {
            state.SkipWithError("HSET refused");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
    cost.report(state);
}
BENCHMARK(BM_raw_hset)->Name("status/raw_hset")->UseRealTime();

/// The same HSETs from one script call. Its arguments are made outside the timing.
void BM_raw_hset_lua(benchmark::State& state) {
    if (redis_missing(state)) return;
    batches();
    Pass pass("raw_lua");
    sg::detail::StoredScript script(
        "for i = 1, #KEYS do redis.call('HSET', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i]) end "
        "return #KEYS");
    std::vector<std::vector<std::string>> calls;
    for (auto _ : state) {
        const SignedBatch& batch = pass.advance(state, [&] {
            calls.clear();
            for (const SignedBatch& each : batches().batches) {
                std::vector<std::string> call{std::to_string(each.hsets.size())};
                for (const auto& command : each.hsets) call.push_back(pass.prefix + command[1]);
                for (const auto& command : each.hsets) {
                    call.push_back(command[2]);
                    call.push_back(command[3]);
                }
                calls.push_back(std::move(call));
            }
        });
        const auto& call = calls[static_cast<std::size_t>(&batch - &batches().batches[0])];
        const std::vector<sg::RedisValue> answers = script.run(*pass.redis, {call});
        if (answers.size() != 1 || answers[0].integer != kEventsPerBatch) {
            state.SkipWithError(("script: " + answers.at(0).text).c_str());
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
}
BENCHMARK(BM_raw_hset_lua)->Name("status/raw_hset_lua")->UseRealTime();

/// EventWebhook::handle without statuses (verify, parse, de-duplication, emission), then, with
/// `write`, a naive receiver's raw pipelined HSET of the events it returned.
void run_handle(benchmark::State& state, bool write) {
    if (redis_missing(state)) return;
    batches();
    Pass pass(write ? "handle_raw" : "handle_only");
    std::unique_ptr<sg::EventWebhook> webhook;
    std::vector<std::vector<std::string>> commands;
    for (auto _ : state) {
        const SignedBatch& batch = pass.advance(
            state, [&] { webhook = std::make_unique<sg::EventWebhook>(webhook_options()); });
        const sg::WebhookResult result = webhook->handle(batch.headers, batch.body);
        if (result.events.size() != kEventsPerBatch) {
            state.SkipWithError(("handle: " + result.refusal_reason).c_str());
            break;
        }
        if (!write) continue;
        commands.clear();
        for (const sg::WebhookEvent& event : result.events) {
            commands.push_back({"HSET",
                                pass.prefix + sg::tracking_key_of(event, sg::default_tracking_arg),
                                event.email + "|" + std::string(sg::to_string(event.type)) + "|" +
                                    event.sg_event_id,
                                std::to_string(event.timestamp)});
        }
        const std::vector<sg::RedisValue> answers = pass.redis->pipeline(commands);
        if (answers.size() != commands.size() || answers.back().is_error()) {
            state.SkipWithError("HSET refused");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
}
void BM_handle_no_statuses(benchmark::State& state) { run_handle(state, false); }
void BM_handle_raw_hset(benchmark::State& state) { run_handle(state, true); }
BENCHMARK(BM_handle_no_statuses)->Name("status/handle_no_statuses")->UseRealTime();
BENCHMARK(BM_handle_raw_hset)->Name("status/handle_raw_hset")->UseRealTime();

/// The floor of any receiver that hands its handlers nlohmann::json events, as WebhookEvent
/// did before its `raw` and `custom_args` became text: nlohmann's reading of the same batch, only
/// checked (`accept`, nothing built) and as a tree (`parse`). No signature, no events, no Redis.
void run_nlohmann(benchmark::State& state, bool build) {
    batches();
    std::size_t next = 0;
    for (auto _ : state) {
        const std::string& body = batches().batches[next++ % kBatches].body;
        if (build) {
            nlohmann::json tree = nlohmann::json::parse(body);
            benchmark::DoNotOptimize(tree);
        } else {
            bool ok = nlohmann::json::accept(body);
            benchmark::DoNotOptimize(ok);
        }
    }
    state.SetItemsProcessed(state.iterations() * kEventsPerBatch);
}
void BM_nlohmann_accept(benchmark::State& state) { run_nlohmann(state, false); }
void BM_nlohmann_parse(benchmark::State& state) { run_nlohmann(state, true); }
BENCHMARK(BM_nlohmann_accept)->Name("status/nlohmann_accept")->UseRealTime();
BENCHMARK(BM_nlohmann_parse)->Name("status/nlohmann_parse")->UseRealTime();

}  // namespace

int main(int argc, char** argv) {
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("status/raw_hset", 0) == 0) return std::string();
        return std::string("status/raw_hset");
    });
}
