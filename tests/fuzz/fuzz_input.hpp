#pragma once

// Reads typed values off a fuzz input, front to back (libFuzzer's FuzzedDataProvider does the
// same, but is clang's: the corpus runners also build with GCC). Past the end: zeros, "".

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

namespace fuzz {

class Input {
  public:
    Input(const std::uint8_t* data, std::size_t size)
        : bytes_(reinterpret_cast<const char*>(data), size) {}

    std::uint8_t byte() {
        return at_ < bytes_.size() ? static_cast<std::uint8_t>(bytes_[at_++]) : 0;
    }
    bool flag() { return (byte() & 1) != 0; }
    /// 0 .. limit-1.
    std::size_t below(std::size_t limit) { return limit == 0 ? 0 : byte() % limit; }
    std::int64_t integer() {
        std::uint64_t value = 0;
        for (int i = 0; i < 8; ++i) value = (value << 8) | byte();
        return static_cast<std::int64_t>(value);
    }
    /// A string of up to `max` bytes, length first.
    std::string text(std::size_t max = 64) {
        const std::size_t length =
            std::min<std::size_t>(below(max + 1), bytes_.size() - std::min(at_, bytes_.size()));
        std::string value(bytes_.substr(std::min(at_, bytes_.size()), length));
        at_ += length;
        return value;
    }
    /// One of `choices`, or a fuzzed string.
    template <std::size_t N>
    std::string pick(const char* const (&choices)[N]) {
        const std::size_t which = below(N + 1);
        return which < N ? choices[which] : text();
    }
    std::string_view rest() const {
        return at_ < bytes_.size() ? bytes_.substr(at_) : std::string_view();
    }

  private:
    std::string_view bytes_;
    std::size_t at_ = 0;
};

/// A broken invariant: report and crash, so libFuzzer keeps the input and ctest fails.
[[noreturn]] inline void fail(const char* what) {
    std::fprintf(stderr, "fuzz invariant broken: %s\n", what);
    std::abort();
}

}  // namespace fuzz
