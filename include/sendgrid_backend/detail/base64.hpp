#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>
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
/// AVX2 encoder after Muła and Lemire ("Faster Base64 Encoding and Decoding Using AVX2
/// Instructions", 2018): 24 bytes -> 32 characters per step. Returns how many input bytes it
/// consumed (a multiple of 24); it reads 4 bytes past what it consumes, so it stops early.
__attribute__((target("avx2"))) inline std::size_t base64_encode_avx2(const unsigned char* in,
                                                                      std::size_t size,
                                                                      char* out) noexcept {
    // Per 32-bit lane, the bytes of one 3-byte group as [b1, b0, b2, b1].
    const __m256i spread = _mm256_setr_epi8(1, 0, 2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10, 1, 0,
                                            2, 1, 4, 3, 5, 4, 7, 6, 8, 7, 10, 9, 11, 10);
    // Added to a 6-bit index to give its character, chosen by the index's range.
    const __m256i offsets =
        _mm256_setr_epi8('a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                         '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0,
                         'a' - 26, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52, '0' - 52,
                         '0' - 52, '0' - 52, '0' - 52, '0' - 52, '+' - 62, '/' - 63, 'A', 0, 0);
    std::size_t done = 0;
    for (; done + 28 <= size; done += 24, out += 32) {
        const __m128i low = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + done));
        const __m128i high = _mm_loadu_si128(reinterpret_cast<const __m128i*>(in + done + 12));
        __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(low), high, 1);
        v = _mm256_shuffle_epi8(v, spread);
        // Move the four 6-bit fields of each lane into the four bytes of the lane.
        const __m256i t0 = _mm256_and_si256(v, _mm256_set1_epi32(0x0fc0fc00));
        const __m256i t1 = _mm256_mulhi_epu16(t0, _mm256_set1_epi32(0x04000040));
        const __m256i t2 = _mm256_and_si256(v, _mm256_set1_epi32(0x003f03f0));
        const __m256i t3 = _mm256_mullo_epi16(t2, _mm256_set1_epi32(0x01000010));
        const __m256i indices = _mm256_or_si256(t1, t3);
        // 0..25 -> 13, 26..51 -> 0, 52..61 -> 1..10, 62 -> 11, 63 -> 12: a row of `offsets`.
        __m256i row = _mm256_subs_epu8(indices, _mm256_set1_epi8(51));
        const __m256i upper = _mm256_cmpgt_epi8(_mm256_set1_epi8(26), indices);
        row = _mm256_or_si256(row, _mm256_and_si256(upper, _mm256_set1_epi8(13)));
        const __m256i chars = _mm256_add_epi8(_mm256_shuffle_epi8(offsets, row), indices);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), chars);
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
