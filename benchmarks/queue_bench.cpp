// The Redis mail queue, each comparison in the same run (queue_bench.sh starts its own
// redis-server and FakeSendgridServer runs in this process):
//  - enqueue: RedisMailQueue::enqueue (serializing the message, the one-script XADD with its
//    status hash) against a raw hiredis XADD of the same serialized bytes, one at a time;
//  - end to end against a server that answers after 20 ms: 1 and 2 RedisMailWorker threads
//    (each with its own backend and Redis connection, as separate processes would have) against
//    send_messages straight to the same server, all with max_in_flight 8.
// The message is the nginx benchmark's: 2 to, cc, bcc, reply_to, plain text.
#include <sendgrid_backend/message_json.hpp>
#include <sendgrid_backend/redis/queue.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <benchmark/benchmark.h>
#include <hiredis/hiredis.h>
#include <nlohmann/json.hpp>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "ratio_reporter.hpp"
#include "redis_server.hpp"
#include "simple_message.hpp"

namespace {

namespace sg = sendgrid_backend;
using namespace std::chrono_literals;

constexpr std::size_t in_flight = 8;
constexpr int end_to_end_messages = 480;  // per iteration

bool redis_missing(benchmark::State& state) {
    return ::redis_missing(state, "benchmarks/queue_bench.sh");
}

std::shared_ptr<sg::RedisClient> redis() {
    return std::make_shared<sg::RedisClient>(sg::RedisOptions::from_url(redis_url()));
}

using sendgrid_backend_bench::simple_message;

/// Names of its own for each benchmark run, removed afterwards.
struct ScratchQueue {
    std::shared_ptr<sg::RedisClient> client = redis();
    sg::RedisQueueOptions names;
    explicit ScratchQueue(const std::string& name) {
        static int counter = 0;
        const std::string prefix = "bench:" + name + ":" + std::to_string(++counter);
        names.stream = prefix + ":stream";
        names.group = prefix + ":group";
        names.status_prefix = prefix + ":status:";
    }
    ~ScratchQueue() {
        // The statuses expire on their own (status_ttl); the stream can be long.
        client->command({"DEL", names.stream});
    }
};

void BM_raw_xadd(benchmark::State& state) {
    if (redis_missing(state)) return;
    ScratchQueue scratch("raw");
    const sg::RedisOptions where = sg::RedisOptions::from_url(redis_url());
    redisContext* context = redisConnect(where.host.c_str(), where.port);
    if (context == nullptr || context->err != 0) {
        state.SkipWithError("cannot connect to Redis");
        return;
    }
    const std::string entry = sg::serialize_message(simple_message(0));
    const std::string key(32, 'k');
    const char* argv[] = {
        "XADD", scratch.names.stream.c_str(), "*", "key", key.c_str(), "message", entry.c_str()};
    const std::size_t lengths[] = {4,           scratch.names.stream.size(), 1, 3, key.size(), 7,
                                   entry.size()};
    for (auto _ : state) {
        auto* reply = static_cast<redisReply*>(redisCommandArgv(context, 7, argv, lengths));
        if (reply == nullptr || reply->type != REDIS_REPLY_STRING) state.SkipWithError("XADD");
        if (reply != nullptr) freeReplyObject(reply);
    }
    redisFree(context);
    state.SetItemsProcessed(state.iterations());
}

void BM_enqueue(benchmark::State& state) {
    if (redis_missing(state)) return;
    ScratchQueue scratch("enqueue");
    sg::RedisMailQueue queue(scratch.client, scratch.names);
    const sg::EmailMessage message = simple_message(0);
    for (auto _ : state) benchmark::DoNotOptimize(queue.enqueue(message));
    state.SetItemsProcessed(state.iterations());
}

/// The server every end-to-end benchmark sends to: each answer 20 ms late.
sg::testing::FakeSendgridServer& slow_server() {
    static sg::testing::FakeSendgridServer server("SG.benchmark-key", 64);
    server.set_delay(20ms);
    return server;
}

std::shared_ptr<sg::SendgridBackend> backend() {
    sg::Settings settings = slow_server().settings();
    settings.max_in_flight = in_flight;
    sg::BackendOptions options;
    options.fail_silently = true;
    return std::make_shared<sg::SendgridBackend>(settings, options);
}

std::vector<sg::EmailMessage> batch(int count) {
    std::vector<sg::EmailMessage> list;
    for (int i = 0; i < count; ++i) list.push_back(simple_message(i));
    return list;
}

void BM_direct(benchmark::State& state) {
    const auto sender = backend();
    std::size_t accepted = 0;
    for (auto _ : state) {
        auto list = batch(end_to_end_messages);
        accepted += sender->send_messages(list);
    }
    if (accepted != static_cast<std::size_t>(state.iterations()) * end_to_end_messages) {
        state.SkipWithError("not all sent");
    }
    state.SetItemsProcessed(state.iterations() * end_to_end_messages);
}

/// Per iteration: the messages are queued (not timed), then `workers` threads drain the queue.
void BM_workers(benchmark::State& state) {
    if (redis_missing(state)) return;
    const auto workers = static_cast<int>(state.range(0));
    ScratchQueue scratch("workers");
    sg::RedisMailQueue queue(scratch.client, scratch.names);
    std::vector<std::shared_ptr<sg::SendgridBackend>> backends;
    std::vector<std::unique_ptr<sg::RedisMailWorker>> pool;
    for (int w = 0; w < workers; ++w) {
        backends.push_back(backend());
        sg::WorkerOptions options;
        options.consumer = "worker-" + std::to_string(w);
        options.block = 2ms;
        options.key_custom_arg.clear();
        pool.push_back(std::make_unique<sg::RedisMailWorker>(backends.back(), redis(),
                                                             scratch.names, options));
    }
    std::vector<std::string> keys;
    const std::size_t received_before = slow_server().received().size();
    for (auto _ : state) {
        state.PauseTiming();
        keys.clear();
        for (int i = 0; i < end_to_end_messages; ++i)
            keys.push_back(queue.enqueue(simple_message(i)));
        state.ResumeTiming();
        std::atomic<int> finished{0};
        std::vector<std::thread> threads;
        for (auto& worker : pool) {
            threads.emplace_back([&finished, &worker] {
                while (finished.load() < end_to_end_messages) {
                    finished += static_cast<int>(worker->run_once());
                }
            });
        }
        for (auto& thread : threads) thread.join();
    }
    // Counted where they landed: each message reached the server once, and every key of the
    // last round says accepted.
    const std::size_t reached = slow_server().received().size() - received_before;
    if (reached != static_cast<std::size_t>(state.iterations()) * end_to_end_messages) {
        state.SkipWithError("the server did not receive each message once");
    }
    for (const auto& key : keys) {
        const auto status = queue.status(key);
        if (!status || status->state != sg::QueuedState::accepted) {
            state.SkipWithError("a queued message was not accepted");
            break;
        }
    }
    state.SetItemsProcessed(state.iterations() * end_to_end_messages);
}

}  // namespace

BENCHMARK(BM_raw_xadd)->Name("enqueue/raw_hiredis_xadd")->UseRealTime();
BENCHMARK(BM_enqueue)->Name("enqueue/RedisMailQueue_enqueue")->UseRealTime();
BENCHMARK(BM_direct)->Name("end_to_end_20ms/direct_send_messages")->UseRealTime();
BENCHMARK(BM_workers)->Name("end_to_end_20ms/workers")->Arg(1)->Arg(2)->UseRealTime();

int main(int argc, char** argv) {
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("enqueue/RedisMailQueue_enqueue", 0) == 0) {
            return std::string("enqueue/raw_hiredis_xadd");
        }
        if (name.rfind("end_to_end_20ms/workers", 0) == 0) {
            return std::string("end_to_end_20ms/workers/1");
        }
        return std::string();
    });
}
