#pragma once

/// @file
/// Random keys for messages (tracking keys, queue keys): 128 bits from the kernel's generator.
/// Not a seeded engine: engines seeded with one 32-bit value repeat each other's keys across
/// enough threads and hosts, and two messages under one key would merge (or one not be queued).

#include <sys/random.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <stdexcept>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Fills `bytes` with random bytes; false when the kernel gave none.
inline bool kernel_random(unsigned char* bytes, std::size_t size) noexcept {
    std::size_t filled = 0;
    while (filled < size) {
        const ssize_t got = getrandom(bytes + filled, size - filled, 0);
        if (got > 0) {
            filled += static_cast<std::size_t>(got);
        } else if (got < 0 && errno != EINTR) {
            break;
        }
    }
    if (filled == size) return true;
    std::FILE* file = std::fopen("/dev/urandom", "rb");  // no getrandom: an old kernel
    if (file == nullptr) return false;
    const bool read = std::fread(bytes, 1, size, file) == size;
    std::fclose(file);
    return read;
}

/// 32 lower-case hex digits of fresh randomness. Each thread draws 16 keys' worth at a time.
/// @throws std::runtime_error when the system has no randomness to give.
inline std::string random_key() {
    constexpr std::size_t key_bytes = 16;
    constexpr std::size_t batch = 16 * key_bytes;
    thread_local unsigned char pool[batch];
    thread_local std::size_t used = batch;
    thread_local pid_t owner = 0;
    // A forked child inherits the pool: it draws anew, or parent and child would repeat keys.
    const pid_t pid = getpid();
    if (used == batch || owner != pid) {
        owner = pid;
        if (!kernel_random(pool, batch)) {
            throw std::runtime_error(
                "no randomness for a message key: getrandom and /dev/urandom failed");
        }
        used = 0;
    }
    static constexpr char hex[] = "0123456789abcdef";
    std::string key(2 * key_bytes, '0');
    for (std::size_t i = 0; i < key_bytes; ++i) {
        const unsigned char byte = pool[used + i];
        pool[used + i] = 0;
        key[2 * i] = hex[byte >> 4];
        key[2 * i + 1] = hex[byte & 15];
    }
    used += key_bytes;
    return key;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
