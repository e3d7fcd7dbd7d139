#pragma once

/// @file
/// The default transport: libcurl. Link `sendgrid_backend::curl`.
///
/// Connections are kept alive and reused across sends; DNS results and TLS sessions are shared
/// between handles. A batch keeps its requests in flight on one curl multi handle (HTTP/2 over
/// TLS multiplexes them when the server offers it). TLS peers are always verified. The proxy
/// environment (https_proxy, no_proxy, ...) is honoured as libcurl does, read when a handle
/// first sends to a URL rather than before every request. Including this header
/// makes libcurl the transport of every `SendgridBackend` that is not given one.
///
/// At most once on the wire. libcurl re-sends a request by itself on a fresh connection when a
/// reused one dies before any answer, even after the server has read the whole request (with
/// CURLOPT_POSTFIELDS it needs no rewind, so it does so silently). Every such re-send passes
/// through the DO state again, where libcurl calls the pre-request callback: here that callback
/// counts each write of the request and refuses a second one, so no request is written twice,
/// whatever the body mechanism. (A read callback whose seek callback refuses to rewind also
/// stops the re-sends that need a rewind, but it costs a second send() per request, see
/// docs/benchmarks.md, and guards fewer paths.) Whether a request may have reached the server
/// is then exact: only if the callback was called.
///
/// The pieces, each in transport/curl/: pool.hpp (where connections live between requests),
/// batch.hpp (requests in flight together), request.hpp (one request on one easy handle),
/// errors.hpp (what a libcurl failure means).

#include <curl/curl.h>

#include <cstddef>
#include <memory>
#include <string>
#include <utility>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/transport/curl/batch.hpp"
#include "sendgrid_backend/transport/curl/errors.hpp"
#include "sendgrid_backend/transport/curl/pool.hpp"
#include "sendgrid_backend/transport/curl/request.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

/// libcurl transport; thread-safe, connections reused. See the file comment.
class CurlTransport : public Transport {
  public:
    /// Answer bodies are kept up to this size; the rest is read and dropped (SendGrid's error
    /// bodies are a few hundred bytes; a server must not make us hold gigabytes).
    static constexpr std::size_t max_answer_body_bytes = detail::curl::max_answer_body_bytes;

    /// @throws TransportSetupError when libcurl cannot be initialised.
    explicit CurlTransport(TransportOptions options = {}) : pool_(std::move(options)) {}

    CurlTransport(const CurlTransport&) = delete;
    CurlTransport& operator=(const CurlTransport&) = delete;

    /// One request with curl_easy_perform on a handle that keeps its connection between calls.
    HttpResponse send(const HttpRequest& request) override {
        detail::curl::Transfer transfer;
        transfer.handle = pool_.take_handle();
        detail::curl::prepare(transfer, request, pool_.options());
        detail::curl::finish(transfer, curl_easy_perform(transfer.easy()));
        detail::curl::unbind_transfer(transfer.easy());
        pool_.give_back_handle(std::move(transfer.handle));
        return std::move(transfer.response);
    }

    std::unique_ptr<TransportBatch> open_batch(std::size_t max_in_flight) override {
        if (max_in_flight <= 1) return Transport::open_batch(max_in_flight);
        return std::make_unique<detail::curl::Batch>(pool_, max_in_flight);
    }

    std::string url_problem(const std::string& url) const override {
        return detail::curl::url_problem(url);
    }

    const TransportOptions& options() const noexcept { return pool_.options(); }

  private:
    detail::curl::Pool pool_;
};

namespace detail {

/// A new CurlTransport: the default transport factory (what makes the transport's code part
/// of the program).
SENDGRID_BACKEND_COMPILED std::shared_ptr<Transport> make_curl_transport(
    const TransportOptions& options);

#if SENDGRID_BACKEND_DEFINE_COMPILED
SENDGRID_BACKEND_COMPILED std::shared_ptr<Transport> make_curl_transport(
    const TransportOptions& options) {
    return std::make_shared<CurlTransport>(options);
}
#endif

/// Installs libcurl as the default transport in every program that includes this header.
inline const bool curl_transport_installed =
    (default_transport_factory().store(&make_curl_transport), true);

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
