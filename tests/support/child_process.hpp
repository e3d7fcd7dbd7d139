#pragma once

// Programs run by the tests as processes of their own (sendgrid-worker, sendgrid-fake-server):
// started without the SENDGRID_* variables of the test's environment, their output in files, and
// never left running or waited for forever.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "catch.hpp"

extern char** environ;

namespace test_support {

/// "/tmp/sendgrid-test-<what>-<pid>-<n>": a name no other process or call uses.
inline std::string unique_base(const char* what) {
    static std::atomic<int> counter{0};
    return std::string("/tmp/sendgrid-test-") + what + "-" + std::to_string(::getpid()) + "-" +
           std::to_string(++counter);
}

inline std::string read_file(const std::string& path) {
    std::ifstream file(path);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

/// Starts `program` with `args` in this environment without SENDGRID_* variables, plus `env`;
/// stdin empty, stdout and stderr to the files `out` and `err`.
inline pid_t spawn(const char* program, const std::vector<std::string>& args,
                   const std::vector<std::string>& env, const std::string& out,
                   const std::string& err) {
    std::vector<std::string> arguments{program};
    arguments.insert(arguments.end(), args.begin(), args.end());
    std::vector<std::string> variables;
    for (char** entry = environ; *entry != nullptr; ++entry) {
        if (std::string(*entry).rfind("SENDGRID_", 0) != 0) variables.emplace_back(*entry);
    }
    variables.insert(variables.end(), env.begin(), env.end());
    std::vector<char*> argv;
    for (auto& arg : arguments) argv.push_back(arg.data());
    argv.push_back(nullptr);
    std::vector<char*> envp;
    for (auto& variable : variables) envp.push_back(variable.data());
    envp.push_back(nullptr);

    posix_spawn_file_actions_t files;
    posix_spawn_file_actions_init(&files);
    posix_spawn_file_actions_addopen(&files, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&files, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&files, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    pid_t pid = -1;
    const int spawned = posix_spawn(&pid, program, &files, nullptr, argv.data(), envp.data());
    posix_spawn_file_actions_destroy(&files);
    REQUIRE(spawned == 0);
    return pid;
}

/// The exit status of `pid`; -1 when it did not exit within 20 s (it is then killed), so a
/// program that runs on (a value let through) fails the test rather than hanging it.
inline int wait_for_exit(pid_t pid) {
    int status = 0;
    bool exited = false;
    const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
    while (!exited && std::chrono::steady_clock::now() < give_up) {
        exited = waitpid(pid, &status, WNOHANG) == pid;
        if (!exited) std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!exited) {
        ::kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    return exited && WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/// A program left running until stop(); killed on scope exit if the test failed before.
class Running {
  public:
    Running(const char* program, const std::vector<std::string>& args,
            const std::vector<std::string>& env = {})
        : base_(unique_base("running")),
          pid_(spawn(program, args, env, base_ + ".out", base_ + ".err")) {}
    ~Running() {
        if (pid_ > 0) {
            ::kill(pid_, SIGKILL);
            waitpid(pid_, nullptr, 0);
        }
        std::remove((base_ + ".out").c_str());
        std::remove((base_ + ".err").c_str());
    }
    Running(const Running&) = delete;
    Running& operator=(const Running&) = delete;

    /// The first `count` lines of stdout, once printed (fewer after 20 s).
    std::vector<std::string> stdout_lines(std::size_t count) const {
        std::vector<std::string> lines;
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(20);
        while (lines.size() < count && std::chrono::steady_clock::now() < give_up) {
            lines.clear();
            std::istringstream text(read_file(base_ + ".out"));
            for (std::string line; lines.size() < count && std::getline(text, line);) {
                if (!text.eof()) lines.push_back(line);  // a whole line only
            }
            if (lines.size() < count) std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        return lines;
    }
    std::string err() const { return read_file(base_ + ".err"); }

    /// SIGTERM, then the exit status (-1 when it did not exit in 20 s).
    int stop() {
        ::kill(pid_, SIGTERM);
        const int status = wait_for_exit(pid_);
        pid_ = -1;
        return status;
    }

  private:
    std::string base_;
    pid_t pid_;
};

}  // namespace test_support
