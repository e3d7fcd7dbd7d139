#pragma once

// The no-network path of the benchmarks: a backend whose transport answers every request at
// once, in the process, as nginx does (202 and an X-Message-Id), so that what is timed is the
// library's own CPU work per message.

#include <sendgrid_backend/backend.hpp>

#include <memory>

namespace sendgrid_backend_bench {

class InstantTransport : public sendgrid_backend::Transport {
  public:
    sendgrid_backend::HttpResponse send(const sendgrid_backend::HttpRequest&) override {
        sendgrid_backend::HttpResponse response;
        response.status = 202;
        response.headers.emplace_back("X-Message-Id", "instant-0123456789abcdef");
        return response;
    }
};

inline sendgrid_backend::SendgridBackend no_network_backend() {
    sendgrid_backend::Settings settings;
    settings.api_key = "SG.benchmark-key";
    sendgrid_backend::BackendOptions options;
    options.transport = std::make_shared<InstantTransport>();
    return sendgrid_backend::SendgridBackend(settings, options);
}

}  // namespace sendgrid_backend_bench
