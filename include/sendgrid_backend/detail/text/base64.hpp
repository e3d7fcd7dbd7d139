#pragma once

/// @file
/// Base64 (RFC 4648, with padding) for attachments: encoding into a buffer, and checked decoding.

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

inline constexpr char base64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Every 12-bit value as its two base64 characters, so the hot loop does one lookup per two
/// output characters instead of one per character.
struct Base64PairTable {
    std::array<char, 4096 * 2> pairs{};
    constexpr Base64PairTable() {
        for (std::size_t i = 0; i < 4096; ++i) {
            pairs[2 * i] = base64_alphabet[i >> 6];
            pairs[2 * i + 1] = base64_alphabet[i & 0x3f];
        }
    }
};
inline constexpr Base64PairTable base64_pairs{};

inline std::size_t base64_encoded_size(std::size_t bytes) noexcept { return (bytes + 2) / 3 * 4; }

/// Scalar encoder of whole 3-byte groups: `groups` groups from `in` to `out`.
inline void base64_encode_groups(const unsigned char* in, std::size_t groups, char* out) noexcept {
    const char* pairs = base64_pairs.pairs.data();
    std::size_t g = 0;
    // Two groups (6 bytes -> 8 characters) per step.
    for (; g + 2 <= groups; g += 2, in += 6, out += 8) {
        const std::uint32_t a = (std::uint32_t{in[0]} << 16) | (std::uint32_t{in[1]} << 8) | in[2];
        const std::uint32_t b = (std::uint32_t{in[3]} << 16) | (std::uint32_t{in[4]} << 8) | in[5];
        std::memcpy(out, pairs + 2 * (a >> 12), 2);
        std::memcpy(out + 2, pairs + 2 * (a & 0xfff), 2);
        std::memcpy(out + 4, pairs + 2 * (b >> 12), 2);
        std::memcpy(out + 6, pairs + 2 * (b & 0xfff), 2);
    }
    if (g < groups) {
        const std::uint32_t a = (std::uint32_t{in[0]} << 16) | (std::uint32_t{in[1]} << 8) | in[2];
        std::memcpy(out, pairs + 2 * (a >> 12), 2);
        std::memcpy(out + 2, pairs + 2 * (a & 0xfff), 2);
    }
}

/// The last `rest` (1 or 2) bytes at `in` as four characters with padding.
inline void base64_encode_rest(const unsigned char* in, std::size_t rest, char* out) noexcept {
    const std::uint32_t a =
        (std::uint32_t{in[0]} << 16) | (rest == 2 ? std::uint32_t{in[1]} << 8 : 0u);
    out[0] = base64_alphabet[(a >> 18) & 0x3f];
    out[1] = base64_alphabet[(a >> 12) & 0x3f];
    out[2] = rest == 2 ? base64_alphabet[(a >> 6) & 0x3f] : '=';
    out[3] = '=';
}

/// Writes the base64 of `input` to `out`, which must have room for base64_encoded_size bytes.
/// Portable code only: a vector (AVX2) encoder saved little for a 20 MB attachment next to what
/// sending it costs, while the pair table keeps this loop ahead of Boost.Beast's encoder
/// (benchmarks/payload_bench.cpp, "Base64/").
inline void base64_encode_into(std::string_view input, char* out) noexcept {
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    const std::size_t size = input.size();
    base64_encode_groups(in, size / 3, out);
    if (size % 3 != 0) base64_encode_rest(in + size / 3 * 3, size % 3, out + size / 3 * 4);
}

/// Standard base64 (RFC 4648, with padding, no line breaks), as SendGrid wants attachments.
inline std::string base64_encode(std::string_view input) {
    std::string output(base64_encoded_size(input.size()), '\0');
    base64_encode_into(input, output.data());
    return output;
}

/// Decodes standard base64 (padding required, whitespace not allowed); nullopt when malformed.
inline std::optional<std::string> base64_decode(std::string_view input) {
    if (input.size() % 4 != 0) return std::nullopt;
    auto value_of = [](char c) -> int {
        if (c >= 'A' && c <= 'Z') return c - 'A';
        if (c >= 'a' && c <= 'z') return c - 'a' + 26;
        if (c >= '0' && c <= '9') return c - '0' + 52;
        if (c == '+') return 62;
        if (c == '/') return 63;
        return -1;
    };
    std::string output;
    output.reserve(input.size() / 4 * 3);
    for (std::size_t i = 0; i < input.size(); i += 4) {
        const bool last = i + 4 == input.size();
        const int padding = last ? (input[i + 3] == '=') + (input[i + 2] == '=') : 0;
        if (padding == 1 && input[i + 2] == '=') return std::nullopt;
        std::uint32_t group = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = input[i + static_cast<std::size_t>(k)];
            int v = 0;
            if (k >= 4 - padding) {
                if (c != '=') return std::nullopt;
            } else {
                v = value_of(c);
                if (v < 0) return std::nullopt;
            }
            group = (group << 6) | static_cast<std::uint32_t>(v);
        }
        output.push_back(static_cast<char>((group >> 16) & 0xff));
        if (padding < 2) output.push_back(static_cast<char>((group >> 8) & 0xff));
        if (padding < 1) output.push_back(static_cast<char>(group & 0xff));
    }
    return output;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
