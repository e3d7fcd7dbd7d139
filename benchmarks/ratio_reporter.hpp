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

/// Maps a benchmark name to the name of its baseline, or "" when it is not compared.
using BaselineOf = std::function<std::string(const std::string&)>;

class RatioReporter : public benchmark::ConsoleReporter {
  public:
    explicit RatioReporter(BaselineOf baseline_of) : baseline_of_(std::move(baseline_of)) {}

    void ReportRuns(const std::vector<Run>& runs) override {
        // With --benchmark_repetitions the median stands for the benchmark; otherwise its one run.
        for (const auto& run : runs) {
            const bool single = run.run_type == Run::RT_Iteration && run.iterations > 0;
            const bool median = run.run_type == Run::RT_Aggregate && run.aggregate_name == "median";
            if (!single && !median) continue;
            const std::string name = run.run_name.str();
            if (ns_per_iteration_.count(name) == 0) names_.push_back(name);
            ns_per_iteration_[name] = run.GetAdjustedRealTime();
        }
        ConsoleReporter::ReportRuns(runs);
    }

    void Finalize() override {
        ConsoleReporter::Finalize();
        std::printf(
            "\nratio = time / time of the baseline (same run, median if repeated; < 1 is "
            "faster)\n");
        for (const auto& name : names_) {
            const std::string baseline = baseline_of_(name);
            auto found = ns_per_iteration_.find(baseline);
            if (baseline.empty() || found == ns_per_iteration_.end() || found->second <= 0) {
                continue;
            }
            std::printf("  %-60s vs %-40s %6.3f\n", name.c_str(), baseline.c_str(),
                        ns_per_iteration_[name] / found->second);
        }
    }

  private:
    BaselineOf baseline_of_;
    std::vector<std::string> names_;
    std::map<std::string, double> ns_per_iteration_;
};

/// Replaces `from` with `to` in `name` once; "" when `from` is not there.
inline std::string swap_part(const std::string& name, const std::string& from,
                             const std::string& to) {
    const auto at = name.find(from);
    if (at == std::string::npos) return "";
    return name.substr(0, at) + to + name.substr(at + from.size());
}

/// Runs the registered benchmarks with a RatioReporter; use as the body of main().
inline int run_with_ratios(int argc, char** argv, BaselineOf baseline_of) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
    RatioReporter reporter(std::move(baseline_of));
    benchmark::RunSpecifiedBenchmarks(&reporter);
    benchmark::Shutdown();
    return 0;
}

}  // namespace sendgrid_backend_bench
