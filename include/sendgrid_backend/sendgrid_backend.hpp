#pragma once

/// @file
/// The umbrella header over the dependency-light core (Boost.Signals2 and nlohmann/json only).
/// Optional parts are included on their own: `transport/curl.hpp` (libcurl), `webhook.hpp`
/// (OpenSSL) and `testing/...` (cpp-httplib).

#include "sendgrid_backend/fwd.hpp"
#include "sendgrid_backend/signals.hpp"
#include "sendgrid_backend/version.hpp"
