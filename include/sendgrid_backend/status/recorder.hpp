#pragma once

/// @file
/// `StatusRecorder`: what the backend hands each message's final outcome to, before
/// `sendgrid_email_sent` fires (`BackendOptions::statuses`). `StatusTracker`
/// (status/tracker.hpp) is the one the library has; this header keeps the backend free of it.

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/fwd.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Receives every message whose outcome became final. Called on the sending thread; what it
/// throws is reported to the backend's `on_handler_error` and the send goes on.
class StatusRecorder {
  public:
    virtual ~StatusRecorder() = default;
    virtual void record(const EmailMessage& message) = 0;
};

SENDGRID_BACKEND_NAMESPACE_END
