#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/base64.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

// The payload is written once, through one of two sinks with the same members: JsonTextSink
// writes the JSON text that goes on the wire (no tree, no per-value allocation), JsonDomSink
// builds the nlohmann::json that build_payload returns. Strings handed to either are UTF-8
// already (the payload writer checks them first).

/// Writes compact JSON text into `out`.
class JsonTextSink {
  public:
    std::string out;

    void begin_object() {
        separate();
        out += '{';
        need_comma_ = false;
    }
    void end_object() {
        out += '}';
        need_comma_ = true;
    }
    void begin_array() {
        separate();
        out += '[';
        need_comma_ = false;
    }
    void end_array() {
        out += ']';
        need_comma_ = true;
    }
    void key(std::string_view name) {
        separate();
        quoted(name);
        out += ':';
        need_comma_ = false;
    }
    /// A key written in the source (the payload's own names): nothing in it needs escaping.
    template <std::size_t N>
    void key(const char (&name)[N]) {
        separate();
        out += '"';
        out.append(name, N - 1);
        out += "\":";
        need_comma_ = false;
    }
    void string(std::string_view value) {
        separate();
        quoted(value);
        need_comma_ = true;
    }
    void boolean(bool value) {
        separate();
        out += value ? "true" : "false";
        need_comma_ = true;
    }
    void integer(std::int64_t value) {
        separate();
        out += std::to_string(value);
        need_comma_ = true;
    }
    /// The base64 of `bytes`, as a string, encoded in place (base64 needs no escaping).
    void base64_string(std::string_view bytes) {
        separate();
        out += '"';
        const std::size_t at = out.size();
        out.resize(at + base64_encoded_size(bytes.size()));
        base64_encode_into(bytes, out.data() + at);
        out += '"';
        need_comma_ = true;
    }
    /// Any JSON value (dynamic_template_data), as nlohmann writes it.
    void json(const nlohmann::json& value) {
        separate();
        out += value.dump();
        need_comma_ = true;
    }

    /// Members written by `write` into an object, kept to be written again (make_private's
    /// shared envelope): text here.
    using Members = std::string;

    template <class Write>
    Members capture_members(Write&& write) {
        std::string saved = std::move(out);
        const bool comma = need_comma_;
        out.clear();
        need_comma_ = false;
        write();
        Members members = std::move(out);
        out = std::move(saved);
        need_comma_ = comma;
        return members;
    }
    void replay_members(const Members& members) {
        if (members.empty()) return;
        separate();
        out += members;
        need_comma_ = true;
    }

  private:
    void separate() {
        if (need_comma_) out += ',';
    }

    /// `text` quoted and escaped as RFC 8259 requires; other bytes (UTF-8) pass as they are.
    void quoted(std::string_view text) {
        out += '"';
        std::size_t run = 0;
        for (std::size_t i = 0; i < text.size(); ++i) {
            const auto c = static_cast<unsigned char>(text[i]);
            if (c >= 0x20 && c != '"' && c != '\\') continue;
            out.append(text.data() + run, i - run);
            run = i + 1;
            switch (c) {
                case '"':
                    out += "\\\"";
                    break;
                case '\\':
                    out += "\\\\";
                    break;
                case '\b':
                    out += "\\b";
                    break;
                case '\f':
                    out += "\\f";
                    break;
                case '\n':
                    out += "\\n";
                    break;
                case '\r':
                    out += "\\r";
                    break;
                case '\t':
                    out += "\\t";
                    break;
                default: {
                    static constexpr char hex[] = "0123456789abcdef";
                    const char escaped[] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
                    out.append(escaped, sizeof escaped);
                }
            }
        }
        out.append(text.data() + run, text.size() - run);
        out += '"';
    }

    bool need_comma_ = false;
};

/// Builds an nlohmann::json tree in `root`.
class JsonDomSink {
  public:
    nlohmann::json root;

    void begin_object() { open(nlohmann::json::object()); }
    void end_object() { open_.pop_back(); }
    void begin_array() { open(nlohmann::json::array()); }
    void end_array() { open_.pop_back(); }
    void key(std::string_view name) { key_.assign(name.data(), name.size()); }
    void string(std::string_view value) { place(nlohmann::json(std::string(value))); }
    void boolean(bool value) { place(nlohmann::json(value)); }
    void integer(std::int64_t value) { place(nlohmann::json(value)); }
    void base64_string(std::string_view bytes) { place(nlohmann::json(base64_encode(bytes))); }
    void json(const nlohmann::json& value) { place(value); }

    using Members = nlohmann::json;

    template <class Write>
    Members capture_members(Write&& write) {
        // `write` writes into this sink: point it at a fresh object for the time of the call.
        std::vector<nlohmann::json*> saved_open = std::move(open_);
        std::string saved_key = std::move(key_);
        Members members = nlohmann::json::object();
        open_ = {&members};
        write();
        open_ = std::move(saved_open);
        key_ = std::move(saved_key);
        return members;
    }
    void replay_members(const Members& members) {
        auto& object = open_.back()->get_ref<nlohmann::json::object_t&>();
        for (const auto& [name, value] : members.items()) object.emplace(name, value);
    }

  private:
    /// Puts `value` where the next value goes; returns it.
    nlohmann::json* place(nlohmann::json value) {
        if (open_.empty()) {
            root = std::move(value);
            return &root;
        }
        nlohmann::json& parent = *open_.back();
        if (parent.is_array()) {
            auto& array = parent.get_ref<nlohmann::json::array_t&>();
            array.push_back(std::move(value));
            return &array.back();
        }
        auto& object = parent.get_ref<nlohmann::json::object_t&>();
        return &object.insert_or_assign(std::move(key_), std::move(value)).first->second;
    }
    void open(nlohmann::json container) { open_.push_back(place(std::move(container))); }

    // Open containers, innermost last. A pointer into an array stays valid while it is open:
    // the array only grows again after it is closed.
    std::vector<nlohmann::json*> open_;
    std::string key_;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
