#pragma once

// A console reporter that also prints, after the table, each benchmark's time relative to a
// baseline run in the same process: "name  ratio" lines, so a claim and its comparison always
// come from one run on one machine.

#include <benchmark/benchmark.h>

#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace sendgrid_backend_bench {

/// Maps a benchmark name to the name (or a prefix of the name) of its baseline, or "" when it
/// is not compared.
using BaselineOf = std::function<std::string(const std::string&)>;

class RatioReporter : public benchmark::ConsoleReporter {
  public:
    explicit RatioReporter(BaselineOf baseline_of) : baseline_of_(std::move(baseline_of)) {}

    void ReportRuns(const std::vector<Run>& runs) override {
        // With --benchmark_repetitions the median stands for the benchmark; otherwise its one run.
        for (const auto& run : runs) {
            if (run.error_occurred)
                failures_.push_back(run.benchmark_name() + ": " + run.error_message);
            const bool single = run.run_type == Run::RT_Iteration && run.iterations > 0;
            const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
            if (!single && !median) continue;
            const std::string name = run.run_name.str();
            if (cost_.count(name) == 0) names_.push_back(name);
            // Benchmarks that count items (messages, bytes) compare cost per item, so that runs
            // of different sizes compare fairly; the others compare time per iteration.
            double cost = run.GetAdjustedRealTime();
            for (const char* counter : {"items_per_second", "bytes_per_second"}) {
                auto found = run.counters.find(counter);
                if (found != run.counters.end() && found->second.value > 0) {
                    cost = 1.0 / found->second.value;
                }
            }
            cost_[name] = cost;
        }
        ConsoleReporter::ReportRuns(runs);
    }

    void Finalize() override {
        ConsoleReporter::Finalize();
        std::printf(
            "\nratio = cost / cost of the baseline, where cost is the time per item for "
            "benchmarks\n"
            "that count items or bytes and the time per iteration otherwise (same run, median\n"
            "if repeated; < 1 is cheaper)\n");
        for (const auto& name : names_) {
            std::string baseline = baseline_of_(name);
            if (baseline.empty()) continue;
            auto found = cost_.find(baseline);
            if (found == cost_.end()) {
                // Not an exact name: the first benchmark whose name starts with it.
                for (const auto& candidate : names_) {
                    if (candidate.rfind(baseline, 0) == 0) {
                        baseline = candidate;
                        found = cost_.find(candidate);
                        break;
                    }
                }
            }
            if (found == cost_.end() || found->second <= 0) continue;
            std::printf("  %-60s vs %-40s %6.3f\n", name.c_str(), baseline.c_str(),
                        cost_[name] / found->second);
        }
    }

    /// "name: message" of each run that stopped with SkipWithError (a failed send, a missing
    /// server): the program then fails, so that a smoke run cannot pass over an error.
    const std::vector<std::string>& failures() const noexcept { return failures_; }

  private:
    BaselineOf baseline_of_;
    std::vector<std::string> failures_;
    std::vector<std::string> names_;
    std::map<std::string, double> cost_;
};

/// Replaces `from` with `to` in `name` once; "" when `from` is not there.
inline std::string swap_part(const std::string& name, const std::string& from,
                             const std::string& to) {
    const auto at = name.find(from);
    if (at == std::string::npos) return "";
    return name.substr(0, at) + to + name.substr(at + from.size());
}

/// Runs the registered benchmarks with a RatioReporter; use as the body of main(). Returns 1
/// when a benchmark stopped with an error.
inline int run_with_ratios(int argc, char** argv, BaselineOf baseline_of) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    RatioReporter reporter(std::move(baseline_of));
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    for (const auto& failure : reporter.failures())
        std::fprintf(stderr, "FAILED %s\n", failure.c_str());
    return reporter.failures().empty() ? 0 : 1;
}

}  // namespace sendgrid_backend_bench
