#pragma once

/// @file
/// The umbrella header: sending mail and the signals around it (Boost.Signals2, and nlohmann/json's
/// json_fwd.hpp only: code that makes template data or reads build_payload's tree includes
/// <nlohmann/json.hpp> itself). Parts that not every program needs are included on their own, so
/// that they cost no compile time elsewhere: `transport/curl.hpp` (libcurl), `webhook.hpp`
/// (OpenSSL) and `webhook_events.hpp`, `message_json.hpp`, `metrics.hpp`, `redis/...` (hiredis) and
/// `testing/...` (cpp-httplib).

#include "sendgrid_backend/address.hpp"
#include "sendgrid_backend/api_errors.hpp"
#include "sendgrid_backend/backend.hpp"
#include "sendgrid_backend/clock.hpp"
#include "sendgrid_backend/delivery.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/message.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/outcome_recording.hpp"
#include "sendgrid_backend/payload.hpp"
#include "sendgrid_backend/rate_limit.hpp"
#include "sendgrid_backend/retry_policy.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/version.hpp"
