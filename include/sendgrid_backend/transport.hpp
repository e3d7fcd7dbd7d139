#pragma once

/// @file
/// The HTTP seam: the backend hands requests to a `Transport` and reads responses back. The
/// transport never sees an `EmailMessage`; the backend never sees a socket. The default
/// transport is libcurl (`<sendgrid_backend/transport/curl.hpp>`); tests use
/// `testing::OutboxTransport` or a real FakeSendgridServer.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text.hpp"
#include "sendgrid_backend/outcome.hpp"
#include "sendgrid_backend/settings.hpp"
#include "sendgrid_backend/version.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// Header name/value pairs in the order they were sent or received.
using HttpHeaders = std::vector<std::pair<std::string, std::string>>;

/// The first value of a header, case-insensitively; empty when absent.
inline std::string_view find_header(const HttpHeaders& headers, std::string_view name) noexcept {
    for (const auto& [key, value] : headers) {
        if (detail::iequals(key, name)) return value;
    }
    return {};
}

/// One HTTP request. The Authorization header is in `headers`: a transport must never log it.
struct HttpRequest {
    std::string method = "POST";
    std::string url;
    HttpHeaders headers;
    std::string body;
};

/// The answer to one request, or why none arrived (`error` != none, `status` 0).
struct HttpResponse {
    int status = 0;
    HttpHeaders headers;
    std::string body;
    TransportError error = TransportError::none;
    std::string error_message;  ///< the transport's own words; never holds request headers
    std::chrono::steady_clock::time_point started{};
    std::chrono::steady_clock::time_point finished{};

    std::string_view header(std::string_view name) const noexcept {
        return find_header(headers, name);
    }
};

/// How a transport connects; filled from `Settings` by the backend.
struct TransportOptions {
    std::chrono::milliseconds timeout{30'000};
    std::chrono::milliseconds connect_timeout{10'000};
    std::string ca_bundle;  ///< empty: the system's CA store
    std::size_t gzip_min_bytes = 64 * 1024;
    std::string user_agent;

    static TransportOptions from(const Settings& settings);
};

/// Sends HTTP requests. Implementations must be safe to call from many threads at once (one
/// backend may be shared by many threads) and must not throw for network failures: those are
/// answered with `HttpResponse::error`.
class Transport {
  public:
    virtual ~Transport() = default;

    /// Sends one request and waits for its answer.
    virtual HttpResponse send(const HttpRequest& request) = 0;

    /// Sends every request, at most `max_in_flight` at a time, and returns the answers in the
    /// order of `requests`. The default sends them one after another.
    virtual std::vector<HttpResponse> send_batch(const std::vector<HttpRequest>& requests,
                                                 std::size_t max_in_flight) {
        (void)max_in_flight;
        std::vector<HttpResponse> responses;
        responses.reserve(requests.size());
        for (const auto& request : requests) responses.push_back(send(request));
        return responses;
    }
};

namespace detail {

using TransportFactory = std::shared_ptr<Transport> (*)(const TransportOptions&);

/// The transport a backend uses when it is given none. `transport/curl.hpp` installs libcurl
/// here when it is included, so the core headers need no HTTP library.
inline std::atomic<TransportFactory>& default_transport_factory() noexcept {
    static std::atomic<TransportFactory> factory{nullptr};
    return factory;
}

}  // namespace detail

inline TransportOptions TransportOptions::from(const Settings& settings) {
    TransportOptions options;
    options.timeout = settings.timeout;
    options.connect_timeout = settings.connect_timeout;
    options.ca_bundle = settings.ca_bundle;
    options.gzip_min_bytes = settings.gzip_min_bytes;
    options.user_agent = "sendgrid_backend-cpp/" SENDGRID_BACKEND_VERSION_STRING;
    return options;
}

SENDGRID_BACKEND_NAMESPACE_END
