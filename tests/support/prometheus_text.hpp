#pragma once

// Reading a Prometheus text exposition in tests, and Prometheus' own linter on it.

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <string>

namespace test_support {

/// Every sample of a scrape by its series as written ("a_total{x=\"y\"}"), comments left out.
inline std::map<std::string, double> samples_of(const std::string& text) {
    std::map<std::string, double> samples;
    std::istringstream lines(text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.empty() || line[0] == '#') continue;
        const std::size_t space = line.rfind(' ');
        samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
    }
    return samples;
}

/// What `promtool check metrics` says about `text`: empty when it found nothing. A missing
/// promtool is a finding too (./setup.sh installs Debian's prometheus), never a skipped check.
inline std::string promtool_findings(const std::string& text) {
    char path[] = "/tmp/sendgrid_backend_scrape_XXXXXX";
    const int fd = mkstemp(path);
    if (fd < 0) return "mkstemp failed";
    ::close(fd);
    std::ofstream(path) << text;
    const std::string command = std::string("promtool check metrics < ") + path + " 2>&1";
    std::string output;
    FILE* pipe = popen(command.c_str(), "r");
    if (pipe == nullptr) {
        std::remove(path);
        return "popen failed";
    }
    char buffer[512];
    while (std::fgets(buffer, sizeof buffer, pipe) != nullptr) output += buffer;
    const int status = pclose(pipe);
    std::remove(path);
    if (status != 0 && output.empty()) output = "promtool failed (is it installed?)";
    if (status != 0 && output.find("not found") != std::string::npos) {
        output = "promtool is missing (Debian: prometheus): " + output;
    }
    return output;
}

}  // namespace test_support
