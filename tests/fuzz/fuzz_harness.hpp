#pragma once

// A fuzz harness's entry point under its own name, for the corpus runner that replays every
// harness's seed corpus in one program (tests/CMakeLists.txt generates the table).
#include <cstddef>
#include <cstdint>

struct FuzzHarness {
    const char* name;  // null ends the table
    int (*run)(const std::uint8_t* data, std::size_t size);
};

extern const FuzzHarness fuzz_harnesses[];
