#pragma once

// Builds payloads in tests and writes each one to SENDGRID_BACKEND_PAYLOAD_DIR, where the
// `payload_schema` test validates them all against SendGrid's JSON Schema. Every payload is
// made both ways, as a tree (build_payload) and as the wire text (serialize_payload): the two
// must be the same JSON, and fail with the same field.

#include <sendgrid_backend/payload.hpp>

#include <nlohmann/json.hpp>

#include <fstream>
#include <string>

#include "catch.hpp"

namespace test_support {

inline void write_payload_file(const std::string& name, const std::string& text) {
    std::ofstream out(std::string(SENDGRID_BACKEND_PAYLOAD_DIR) + "/" + name + ".json");
    REQUIRE(out);
    out << text;
}

inline nlohmann::json record_payload(const std::string& name, const nlohmann::json& payload) {
    write_payload_file(name, payload.dump());
    return payload;
}

/// build_payload, checked against serialize_payload, with the wire text recorded under `name`.
inline nlohmann::json build(const std::string& name, const sendgrid_backend::EmailMessage& message,
                            const sendgrid_backend::PayloadOptions& options = {}) {
    const nlohmann::json tree = sendgrid_backend::build_payload(message, options);
    const std::string text = sendgrid_backend::serialize_payload(message, options);
    INFO(text);
    CHECK(nlohmann::json::parse(text) == tree);
    write_payload_file(name, text);
    return tree;
}

/// The field an InvalidMessage names, or "<no error>" when build_payload accepts the message;
/// serialize_payload must name the same one.
inline std::string invalid_field(const sendgrid_backend::EmailMessage& message,
                                 const sendgrid_backend::PayloadOptions& options = {}) {
    std::string tree_field = "<no error>";
    std::string text_field = "<no error>";
    try {
        sendgrid_backend::build_payload(message, options);
    } catch (const sendgrid_backend::InvalidMessage& e) {
        tree_field = e.field();
    }
    try {
        sendgrid_backend::serialize_payload(message, options);
    } catch (const sendgrid_backend::InvalidMessage& e) {
        text_field = e.field();
    }
    CHECK(text_field == tree_field);
    return tree_field;
}

}  // namespace test_support
