#pragma once

// Builds payloads in tests and writes each one to SENDGRID_BACKEND_PAYLOAD_DIR, where the
// `payload_schema` test validates them all against SendGrid's JSON Schema.

#include <sendgrid_backend/payload.hpp>

#include <fstream>
#include <string>

#include "catch.hpp"

namespace test_support {

inline nlohmann::json record_payload(const std::string& name, const nlohmann::json& payload) {
    std::ofstream out(std::string(SENDGRID_BACKEND_PAYLOAD_DIR) + "/" + name + ".json");
    REQUIRE(out);
    out << payload.dump();
    return payload;
}

/// build_payload, recorded under `name` for the schema check.
inline nlohmann::json build(const std::string& name, const sendgrid_backend::EmailMessage& message,
                            const sendgrid_backend::PayloadOptions& options = {}) {
    return record_payload(name, sendgrid_backend::build_payload(message, options));
}

/// The field an InvalidMessage names, or "<no error>" when build_payload accepts the message.
inline std::string invalid_field(const sendgrid_backend::EmailMessage& message,
                                 const sendgrid_backend::PayloadOptions& options = {}) {
    try {
        sendgrid_backend::build_payload(message, options);
    } catch (const sendgrid_backend::InvalidMessage& e) {
        return e.field();
    }
    return "<no error>";
}

}  // namespace test_support
