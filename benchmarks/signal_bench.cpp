// Emission cost of sendgrid_backend::Signal against raw Boost.Signals2 with the same handlers and
// against a loop over std::vector<std::function>, with 0, 1 and 10 handlers.
//
//   signal_bench                          Google Benchmark table + ratios to raw Boost
//   signal_bench --count IMPL HANDLERS N  N emissions between callgrind start/stop markers,
//                                         for exact instruction counts (callgrind_signals.sh)
#include <sendgrid_backend/signals.hpp>

#include <valgrind/callgrind.h>

#include <boost/signals2/signal.hpp>
#include <boost/signals2/signal_type.hpp>

#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "ratio_reporter.hpp"

namespace {

struct Sender {
    int id = 1;
};
struct Message {
    int id = 2;
};

// The handler every variant calls: cheap, but not optimised away.
struct Handler {
    long* counter;
    void operator()(const Sender& sender, const Message& message, bool fail_flag) const {
        *counter += sender.id + message.id + (fail_flag ? 1 : 0);
    }
};

using RawBoost = boost::signals2::signal<void(const Sender&, const Message&, bool)>;
using RawBoostDummyMutex = boost::signals2::signal_type<
    void(const Sender&, const Message&, bool),
    boost::signals2::keywords::mutex_type<boost::signals2::dummy_mutex>>::type;
using Wrapper = sendgrid_backend::Signal<Sender, Message>;
using WrapperSingleThreaded =
    sendgrid_backend::Signal<Sender, Message, sendgrid_backend::SingleThreaded>;

struct FunctionVector {
    std::vector<std::function<void(const Sender&, const Message&, bool)>> handlers;
    void connect(Handler handler) { handlers.emplace_back(handler); }
    void send(const Sender& s, const Message& m, bool f) const {
        for (const auto& handler : handlers) handler(s, m, f);
    }
};

template <class SignalType>
void emit(const SignalType& signal, const Sender& s, const Message& m, bool f) {
    if constexpr (std::is_same_v<SignalType, RawBoost> ||
                  std::is_same_v<SignalType, RawBoostDummyMutex>) {
        signal(s, m, f);
    } else {
        signal.send(s, m, f);
    }
}

template <class SignalType>
void connect_handlers(SignalType& signal, int count, long* counter) {
    for (int i = 0; i < count; ++i) signal.connect(Handler{counter});
}

template <class SignalType>
void BM_emit(benchmark::State& state) {
    SignalType signal;
    long counter = 0;
    connect_handlers(signal, static_cast<int>(state.range(0)), &counter);
    const Sender sender;
    const Message message;
    for (auto _ : state) {
        emit(signal, sender, message, false);
        benchmark::DoNotOptimize(counter);
    }
}

#define SENDGRID_BACKEND_EMIT_BENCH(Type) \
    BENCHMARK_TEMPLATE(BM_emit, Type)->Name("emit/" #Type)->Arg(0)->Arg(1)->Arg(10)

SENDGRID_BACKEND_EMIT_BENCH(RawBoost);
SENDGRID_BACKEND_EMIT_BENCH(Wrapper);
SENDGRID_BACKEND_EMIT_BENCH(FunctionVector);
SENDGRID_BACKEND_EMIT_BENCH(RawBoostDummyMutex);
SENDGRID_BACKEND_EMIT_BENCH(WrapperSingleThreaded);

template <class SignalType>
int count_instructions(int handlers, long iterations) {
    SignalType signal;
    long counter = 0;
    connect_handlers(signal, handlers, &counter);
    const Sender sender;
    const Message message;
    emit(signal, sender, message, false);  // warm up: first-call costs are not per-emission
    CALLGRIND_START_INSTRUMENTATION;
    for (long i = 0; i < iterations; ++i) emit(signal, sender, message, false);
    CALLGRIND_STOP_INSTRUMENTATION;
    std::printf("%ld\n", counter);
    return 0;
}

int count_mode(const std::string& impl, int handlers, long iterations) {
    if (impl == "RawBoost") return count_instructions<RawBoost>(handlers, iterations);
    if (impl == "Wrapper") return count_instructions<Wrapper>(handlers, iterations);
    if (impl == "FunctionVector") return count_instructions<FunctionVector>(handlers, iterations);
    if (impl == "RawBoostDummyMutex") {
        return count_instructions<RawBoostDummyMutex>(handlers, iterations);
    }
    if (impl == "WrapperSingleThreaded") {
        return count_instructions<WrapperSingleThreaded>(handlers, iterations);
    }
    std::fprintf(stderr, "unknown implementation %s\n", impl.c_str());
    return 2;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--count") {
        return count_mode(argv[2], std::atoi(argv[3]), std::atol(argv[4]));
    }
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        if (name.rfind("emit/WrapperSingleThreaded/", 0) == 0) {
            return sendgrid_backend_bench::swap_part(name, "WrapperSingleThreaded",
                                                     "RawBoostDummyMutex");
        }
        if (name.rfind("emit/Wrapper/", 0) == 0) {
            return sendgrid_backend_bench::swap_part(name, "Wrapper", "RawBoost");
        }
        if (name.rfind("emit/FunctionVector/", 0) == 0) {
            return sendgrid_backend_bench::swap_part(name, "FunctionVector", "RawBoost");
        }
        return std::string();
    });
}
