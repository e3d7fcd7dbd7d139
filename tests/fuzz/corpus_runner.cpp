// Runs a fuzz harness over every file of a corpus folder, so that plain ctest builds (without
// libFuzzer) replay the seed corpora too. Fails when the harness is unknown or the folder holds
// no file.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "fuzz_harness.hpp"

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fprintf(stderr, "usage: %s HARNESS CORPUS_DIR\n", argv[0]);
        return 2;
    }
    const FuzzHarness* harness = fuzz_harnesses;
    while (harness->name != nullptr && std::strcmp(harness->name, argv[1]) != 0) ++harness;
    if (harness->name == nullptr) {
        std::fprintf(stderr, "%s: no harness named %s\n", argv[0], argv[1]);
        return 2;
    }
    std::size_t inputs = 0;
    for (const auto& entry : std::filesystem::directory_iterator(argv[2])) {
        if (!entry.is_regular_file()) continue;
        std::ifstream file(entry.path(), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(file)),
                                std::istreambuf_iterator<char>());
        harness->run(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
        ++inputs;
    }
    std::printf("%zu passed, 0 failed\n", inputs);
    return inputs > 0 ? 0 : 1;
}
