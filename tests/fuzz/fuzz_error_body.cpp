// libFuzzer harness for the reader of SendGrid's error bodies (detail::JsonScanner), checked
// against nlohmann's parser: whatever our reader takes, nlohmann must parse as JSON too, with
// the same errors[]; nothing nlohmann refuses is taken.
#include <sendgrid_backend/delivery.hpp>

#include <nlohmann/json.hpp>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "fuzz_input.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::string_view body(reinterpret_cast<const char*>(data), size);
    const auto ours = sendgrid_backend::parse_api_errors(body);
    if (ours.empty()) return 0;
    const nlohmann::json reference =
        nlohmann::json::parse(body.begin(), body.end(), nullptr, false);
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
