#pragma once

/// @file
/// What the programs share to read a command line: a usage error, bounded numbers, flags.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// A command line or setting a program refuses. what() carries the id like every Error; a
/// program prints message(), the prose alone, for its user.
class UsageError : public Error {
  public:
    explicit UsageError(const std::string& message, bool show_usage = false)
        : Error("sendgrid_backend.usage", message), message_(message), show_usage_(show_usage) {}

    /// The whole message for the user, without the "[id] " what() starts with.
    const std::string& message() const noexcept { return message_; }
    /// Whether the usage should follow (an unknown flag: the user needs the list).
    bool show_usage() const noexcept { return show_usage_; }

  private:
    std::string message_;
    bool show_usage_;
};

/// Prints "program: message" on stderr, then the usage when the error asks for it.
/// Returns 2, the exit status of a bad command line.
inline int report_usage_error(const char* program, const UsageError& error, const char* usage) {
    std::fprintf(stderr, "%s: %s\n%s", program, error.message().c_str(),
                 error.show_usage() ? usage : "");
    return 2;
}

/// What a number should be, for an error: "a number of tries 1-100".
inline std::string number_range(std::string_view what, std::int64_t min, std::int64_t max) {
    return std::string(what) + " " + std::to_string(min) + "-" + std::to_string(max);
}

/// A whole number from `min` to `max` (digits only: no sign, no spaces), or nullopt and the
/// reason in `error`: "'x' is not a number; give <range>" or "'70000' is out of range; give
/// <range>". A number of any length is refused, never overflowed.
inline std::optional<std::int64_t> bounded_number(std::string_view text, std::int64_t min,
                                                  std::int64_t max, const std::string& range,
                                                  std::string& error) {
    const bool negative = text.size() > 1 && text[0] == '-' &&
                          text.find_first_not_of("0123456789", 1) == std::string_view::npos;
    if (negative) {
        error = quote_for_error(text) + " is out of range; give " + range;
        return std::nullopt;
    }
    if (text.empty() || text.find_first_not_of("0123456789") != std::string_view::npos) {
        error = quote_for_error(text) + " is not a number; give " + range;
        return std::nullopt;
    }
    const auto number = parse_decimal(text, 18);
    if (!number || *number < min || *number > max) {
        error = quote_for_error(text) + " is out of range; give " + range;
        return std::nullopt;
    }
    return number;
}

/// The refusal of an argument no flag takes: "unknown option '--x'" for a flag, "unexpected
/// argument 'x'" for a stray value; either shows the usage.
inline UsageError unknown_argument(std::string_view arg) {
    if (arg.rfind("-", 0) == 0) return UsageError("unknown option " + quote_for_error(arg), true);
    return UsageError(
        "unexpected argument " + quote_for_error(arg) + " (every value follows its flag)", true);
}

/// Reads one command line flag after another: `--flag VALUE` or `--flag=VALUE`. Every refusal
/// is a UsageError naming the flag.
class FlagReader {
  public:
    FlagReader(int argc, const char* const* argv) : argc_(argc), argv_(argv) {}

    /// Moves to the next argument (argv[0], the program, is skipped); false at the end, and at
    /// `--help` or `-h`: a program asked for its usage reads no further (see help()).
    bool next() {
        if (++i_ >= argc_) return false;
        const std::string_view arg = argv_[i_];
        const std::size_t equals = arg.find('=');
        if (arg.rfind("--", 0) == 0 && equals != std::string_view::npos) {
            flag_ = arg.substr(0, equals);
            inline_value_ = arg.substr(equals + 1);
        } else {
            flag_ = arg;
            inline_value_.reset();
        }
        help_ = flag_ == "--help" || flag_ == "-h";
        return !help_;
    }

    /// Whether next() stopped at `--help` or `-h`.
    bool help() const noexcept { return help_; }

    /// The flag (before any "="), or the stray argument.
    std::string_view flag() const noexcept { return flag_; }

    /// The flag's value. @throws UsageError "--redis needs a value (what)" when there is none:
    /// the flag ends the line, the next argument starts with "--", or the value is empty.
    std::string value(std::string_view what) {
        std::string_view value;
        if (inline_value_) {
            value = *inline_value_;
        } else if (i_ + 1 < argc_ && std::string_view(argv_[i_ + 1]).rfind("--", 0) != 0) {
            value = argv_[++i_];
        }
        if (value.empty()) {
            throw UsageError(std::string(flag_) + " needs a value (" + std::string(what) + ")");
        }
        return std::string(value);
    }

    /// The flag's value as a whole number from `min` to `max`; `what` says what it counts,
    /// e.g. "a number of tries". @throws UsageError naming the flag and the range.
    std::int64_t number(std::string_view what, std::int64_t min, std::int64_t max) {
        const std::string range = number_range(what, min, max);
        std::string error;
        const auto number = bounded_number(value(range), min, max, range, error);
        if (!number) throw UsageError(std::string(flag_) + ": " + error);
        return *number;
    }

    /// @throws UsageError when a flag that takes no value was given one.
    void no_value() const {
        if (inline_value_) {
            throw UsageError(std::string(flag_) + " takes no value (it was given " +
                             quote_for_error(*inline_value_) + ")");
        }
    }

  private:
    int argc_;
    const char* const* argv_;
    int i_ = 0;
    std::string_view flag_;
    std::optional<std::string_view> inline_value_;
    bool help_ = false;
};

/// The programs' --metrics flag (sendgrid-worker, sendgrid-fake-server).
/// Where --metrics listens: an IPv4 address or "localhost" (what prometheus-cpp's server
/// binds), and a port, 0 for any free one.
struct MetricsAddress {
    std::string host;
    int port = 0;

    std::string to_string() const { return host + ":" + std::to_string(port); }
};

/// A MetricsAddress from "IP:PORT"; the error text on failure (its example port
/// `example_port`, the program's usual one).
inline std::optional<MetricsAddress> parse_metrics_address(std::string_view text, int example_port,
                                                           std::string& error) {
    const std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0) {
        error = "give IP:PORT, e.g. 127.0.0.1:" + std::to_string(example_port) +
                " (port 0: any free port)";
        return std::nullopt;
    }
    const std::string_view host = text.substr(0, colon);
    if (host != "localhost") {
        // Four numbers 0-255: prometheus-cpp's server resolves no other host name. Nor does it
        // bind a number with a leading zero ("010"), which the user would then blame on the port.
        std::size_t start = 0;
        for (int part = 0; part < 4; ++part) {
            const std::size_t dot = part < 3 ? host.find('.', start) : host.size();
            const std::string_view octet = host.substr(start, dot - start);
            std::string why;
            if (dot == std::string_view::npos || (octet.size() > 1 && octet[0] == '0') ||
                !bounded_number(octet, 0, 255, "0-255", why)) {
                error = quote_for_error(host) +
                        " is no IPv4 address; give one such as 127.0.0.1 (this host only) or "
                        "0.0.0.0 (every interface), or localhost";
                return std::nullopt;
            }
            start = dot + 1;
        }
    }
    const auto port = bounded_number(text.substr(colon + 1), 0, 65535,
                                     number_range("a port number", 0, 65535), error);
    if (!port) return std::nullopt;
    return MetricsAddress{std::string(host), static_cast<int>(*port)};
}

/// What serves /metrics while the program runs: its URL, and what keeps it serving.
struct MetricsEndpoint {
    std::string url;
    std::shared_ptr<void> keep_alive;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
