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

// The AVX2 encoder is written with GCC/Clang vector extensions, __builtin_shufflevector and the
// two AVX2 builtins <immintrin.h> wraps (vpshufb, vpmulhuw), not with that header: it alone cost
// every file including the library three quarters of a second to compile. GCC declares its AVX2
// builtins only inside target("avx2") functions, so __has_builtin cannot ask GCC for them; GCC
// has __builtin_shufflevector from version 12.
#if defined(__x86_64__) && defined(__clang__) && defined(__has_builtin)
#if __has_builtin(__builtin_shufflevector) && __has_builtin(__builtin_ia32_pshufb256) && \
    __has_builtin(__builtin_ia32_pmulhuw256)
#define SENDGRID_BACKEND_DETAIL_BASE64_AVX2 1
#endif
#elif defined(__x86_64__) && defined(__GNUC__) && __GNUC__ >= 12
#define SENDGRID_BACKEND_DETAIL_BASE64_AVX2 1
#endif

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

#ifdef SENDGRID_BACKEND_DETAIL_BASE64_AVX2
// The element types the builtins take (<immintrin.h>'s __v32qi and __v16hi).
using Bytes16 = unsigned char __attribute__((vector_size(16)));
using Chars32 = char __attribute__((vector_size(32)));
using SignedBytes32 = signed char __attribute__((vector_size(32)));
using Shorts16 = short __attribute__((vector_size(32)));
using Words32 = std::uint32_t __attribute__((vector_size(32)));

/// AVX2 encoder after Muła and Lemire ("Faster Base64 Encoding and Decoding Using AVX2
/// Instructions", 2018): 24 bytes -> 32 characters per step. Returns how many input bytes it
/// consumed (a multiple of 24); it reads 4 bytes past what it consumes, so it stops early.
__attribute__((target("avx2"))) inline std::size_t base64_encode_avx2(const unsigned char* in,
                                                                      std::size_t size,
                                                                      char* out) noexcept {
    // Added to a 6-bit index to give its character, chosen by the index's range.
    const Chars32 offsets = {'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                             '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A',
                             0,        0,        'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                             '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62,
                             '/' - 63, 'A',      0,        0};
    // Shifts as multiplications by powers of two, per 16-bit half of each 32-bit word: the high
    // half of the product (vpmulhuw) by 2^6 / 2^10 shifts right by 10 / 6, the low half
    // (vpmullw) by 2^4 / 2^8 shifts left by 4 / 8.
    const Shorts16 high_shifts = {0x40, 0x400, 0x40, 0x400, 0x40, 0x400, 0x40, 0x400,
                                  0x40, 0x400, 0x40, 0x400, 0x40, 0x400, 0x40, 0x400};
    const Shorts16 low_shifts = {0x10, 0x100, 0x10, 0x100, 0x10, 0x100, 0x10, 0x100,
                                 0x10, 0x100, 0x10, 0x100, 0x10, 0x100, 0x10, 0x100};
    std::size_t done = 0;
    for (; done + 28 <= size; done += 24, out += 32) {
        Bytes16 low;
        Bytes16 high;
        std::memcpy(&low, in + done, sizeof low);
        std::memcpy(&high, in + done + 12, sizeof high);
        // Bytes 0..11 in the low 128-bit lane, 12..23 in the high one; per 32-bit word the bytes
        // of one 3-byte group as [b1, b0, b2, b1] (one vinserti128 and one vpshufb).
        const Words32 words = (Words32)__builtin_shufflevector(
            low, high, 1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, 17, 16, 18, 17, 20, 19,
            21, 20, 23, 22, 24, 23, 26, 25, 27, 26);
        // The four 6-bit fields of each word into its four bytes.
        const Shorts16 shifted_down =
            __builtin_ia32_pmulhuw256((Shorts16)(words & 0x0fc0fc00u), high_shifts);
        const Shorts16 shifted_up = (Shorts16)(words & 0x003f03f0u) * low_shifts;
        const SignedBytes32 index = (SignedBytes32)(shifted_down | shifted_up);
        // 0..25 -> 13, 26..51 -> 0, 52..61 -> 1..10, 62 -> 11, 63 -> 12: a row of `offsets`. A
        // comparison is all ones where it holds.
        const SignedBytes32 row = ((index - 51) & (index > 51)) | ((index < 26) & 13);
        const SignedBytes32 chars =
            (SignedBytes32)__builtin_ia32_pshufb256(offsets, (Chars32)row) + index;
        std::memcpy(out, &chars, sizeof chars);
    }
    return done;
}

inline bool cpu_has_avx2() noexcept {
    static const bool has = __builtin_cpu_supports("avx2");
    return has;
}
#endif

/// Writes the base64 of `input` to `out`, which must have room for base64_encoded_size bytes.
/// Uses AVX2 where the CPU has it, a table-driven scalar loop elsewhere; both give the same text.
inline void base64_encode_into(std::string_view input, char* out) noexcept {
    const auto* in = reinterpret_cast<const unsigned char*>(input.data());
    std::size_t size = input.size();
#ifdef SENDGRID_BACKEND_DETAIL_BASE64_AVX2
    if (cpu_has_avx2()) {
        const std::size_t done = base64_encode_avx2(in, size, out);
        in += done;
        out += done / 3 * 4;
        size -= done;
    }
#endif
    base64_encode_groups(in, size / 3, out);
    in += size / 3 * 3;
    out += size / 3 * 4;
    const std::size_t rest = size % 3;
    if (rest != 0) {
        const std::uint32_t a =
            (std::uint32_t{in[0]} << 16) | (rest == 2 ? std::uint32_t{in[1]} << 8 : 0u);
        out[0] = base64_alphabet[(a >> 18) & 0x3f];
        out[1] = base64_alphabet[(a >> 12) & 0x3f];
        out[2] = rest == 2 ? base64_alphabet[(a >> 6) & 0x3f] : '=';
        out[3] = '=';
    }
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
