// libFuzzer harness for the reader of SendGrid's error bodies (detail::JsonScanner), checked
// against nlohmann's parser both ways: whatever our reader takes, nlohmann must parse as JSON
// too, with the same errors[]; nothing nlohmann refuses is taken; and no error object nlohmann
// reads is dropped, unless the body nests deeper than the scanner's bound (64).
#include <sendgrid_backend/api_errors.hpp>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_input.hpp"

namespace {

constexpr int scanner_depth = 64;

/// How deeply `value` nests (a scalar is 0), counted no further than `limit` + 1.
int depth(const nlohmann::json& value, int limit = scanner_depth) {
    if (!value.is_structured()) return 0;
    int deepest = 0;
    for (const auto& item : value) {
        if (deepest > limit) break;
        deepest = std::max(deepest, depth(item, limit - 1));
    }
    return deepest + 1;
}

bool has_error_object(const nlohmann::json& body) {
    if (!body.is_object()) return false;
    const auto list = body.find("errors");
    if (list == body.end() || !list->is_array()) return false;
    return std::any_of(list->begin(), list->end(),
                       [](const nlohmann::json& item) { return item.is_object(); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const auto ours = sendgrid_backend::parse_api_errors(body);
    const nlohmann::json reference =
        nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
    if (ours.empty()) {
        // nlohmann stops at a NUL byte outside a string (it reads C strings); JSON has none.
        const bool plain_json = body.find('\0') == std::string_view::npos;
        if (plain_json && !reference.is_discarded() && has_error_object(reference) &&
            depth(reference) <= scanner_depth) {
            fuzz::fail("dropped errors that nlohmann reads");
        }
        return 0;
    }
    if (reference.is_discarded()) fuzz::fail("took a body that is not JSON");
    const auto& list = reference.at("errors");
    std::size_t objects = 0;
    for (const auto& item : list) {
        if (!item.is_object()) continue;
        if (objects >= ours.size()) fuzz::fail("more errors than we read");
        const auto& error = ours[objects++];
        auto same = [](const nlohmann::json& object, const char* key, const std::string& text) {
            const auto found = object.find(key);
            if (found == object.end() || found->is_null()) return text.empty();
            if (found->is_string()) return found->get<std::string>() == text;
            return nlohmann::json::parse(text, nullptr, false) == *found;  // kept as JSON text
        };
        if (!same(item, "message", error.message) || !same(item, "field", error.field) ||
            !same(item, "help", error.help)) {
            fuzz::fail("an error differs from nlohmann's reading");
        }
    }
    if (objects != ours.size()) fuzz::fail("fewer errors than we read");
    return 0;
}
