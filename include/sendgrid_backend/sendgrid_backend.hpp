#pragma once

/// @file
/// The umbrella header over the dependency-light core (Boost.Signals2 and nlohmann/json only).
/// Optional parts are included on their own: `transport/curl.hpp` (libcurl), `webhook.hpp`
/// (OpenSSL) and `testing/...` (cpp-httplib).

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/delivery.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/mail.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/message_json.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/payload.hpp"
#include "sendgrid_backend/retry_policy.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/version.hpp"
#include "sendgrid_backend/webhook_events.hpp"
