#pragma once

/// @file
/// The library's exception types. Each `what()` starts with a stable id in brackets, e.g.
/// `[sendgrid_backend.invalid_message] to[1]: ...`, so that logs can be matched without parsing
/// the prose. No message ever contains the API key.

#include <stdexcept>
#include <string>
#include <utility>

namespace sendgrid_backend {
inline namespace v0 {

/// Base of every exception the library throws on purpose.
class Error : public std::runtime_error {
  public:
    /// The stable id, e.g. "sendgrid_backend.invalid_message".
    const std::string& id() const noexcept { return id_; }

  protected:
    Error(std::string id, const std::string& what)
        : std::runtime_error("[" + id + "] " + what), id_(std::move(id)) {}

  private:
    std::string id_;
};

/// Bad or missing configuration: no API key, an unparsable setting (Django's exception name).
class ImproperlyConfigured : public Error {
  public:
    /// `setting` names what is wrong, e.g. "SENDGRID_API_KEY".
    ImproperlyConfigured(std::string setting, const std::string& reason)
        : Error("sendgrid_backend.improperly_configured", setting + ": " + reason),
          setting_(std::move(setting)) {}

    const std::string& setting() const noexcept { return setting_; }

  private:
    std::string setting_;
};

/// A message SendGrid would refuse, found before anything was sent. `field()` names the
/// offending field as a path into the message, e.g. `to[2]`, `personalizations[0].cc[1]`,
/// `extra_headers["X-Tag"]`, `attachments[1].filename`.
class InvalidMessage : public Error {
  public:
    InvalidMessage(std::string field, const std::string& reason)
        : Error("sendgrid_backend.invalid_message", field + ": " + reason),
          field_(std::move(field)),
          reason_(reason) {}

    const std::string& field() const noexcept { return field_; }
    /// The explanation without the id and field prefix.
    const std::string& reason() const noexcept { return reason_; }

  private:
    std::string field_;
    std::string reason_;
};

}  // namespace v0
}  // namespace sendgrid_backend
