#pragma once

/// @file
/// What the programs share to read a command line: a usage error, bounded numbers, flags.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
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

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
