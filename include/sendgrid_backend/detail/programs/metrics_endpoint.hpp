#pragma once

/// @file
/// The programs' `--metrics` endpoint (sendgrid-worker, sendgrid-fake-server) on prometheus-cpp's
/// Exposer. A header of its own, included only by their metrics builds: command_line.hpp is in
/// every build of the programs, and must not need prometheus-cpp.

#include <exception>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <prometheus/collectable.h>
#include <prometheus/exposer.h>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/programs/command_line.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// Serves `collectables` at http://`address`/metrics until the endpoint is destroyed, which
/// also keeps them and `owner` (what they count for, e.g. a PrometheusMetrics) alive.
/// @throws ImproperlyConfigured naming --metrics when it cannot listen there.
inline MetricsEndpoint expose_metrics(
    const MetricsAddress& address,
    const std::vector<std::shared_ptr<prometheus::Collectable>>& collectables,
    std::shared_ptr<void> owner = nullptr) {
    // Destroyed bottom up: the Exposer stops serving before what it reads goes.
    struct Serving {
        std::shared_ptr<void> owner;
        std::vector<std::shared_ptr<prometheus::Collectable>> collectables;
        std::unique_ptr<prometheus::Exposer> exposer;  // holds only weak_ptrs to them
    };
    auto serving = std::make_shared<Serving>();
    serving->owner = std::move(owner);
    serving->collectables = collectables;
    try {
        serving->exposer = std::make_unique<prometheus::Exposer>(address.to_string());
    } catch (const std::exception& error) {
        throw ImproperlyConfigured(
            "--metrics " + address.to_string(),
            "cannot listen there (is the port taken, or the address not one of this host's?): " +
                std::string(error.what()));
    }
    for (const auto& collectable : collectables) serving->exposer->RegisterCollectable(collectable);
    // Port 0 has become a free one.
    const std::vector<int> ports = serving->exposer->GetListeningPorts();
    const int port = ports.empty() ? address.port : ports.front();
    return {"http://" + address.host + ":" + std::to_string(port) + "/metrics", serving};
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
