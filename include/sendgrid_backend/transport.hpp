#pragma once

/// @file
/// The HTTP seam: delivery hands requests to a `Transport` and reads responses back. The
/// transport knows HTTP only: it never sees an `EmailMessage` nor the backend's `Settings` (the
/// backend maps those to `TransportOptions`). The default transport is libcurl
/// (`<sendgrid_backend/transport/curl.hpp>`); tests use `testing::OutboxTransport` or a real
/// FakeSendgridServer.
///
/// A transport never re-sends a request by itself: retrying is delivery's decision, made on
/// what `HttpResponse` says about whether the request left the process.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/outcome.hpp"
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

namespace detail {
/// The answer headers delivery reads.
inline constexpr std::string_view delivery_headers[] = {"X-Message-Id", "Retry-After",
                                                        "X-RateLimit-Reset"};

/// Whether a header line starting with `first` may be one of `delivery_headers`.
inline bool may_start_delivery_header(char first) noexcept {
    for (std::string_view name : delivery_headers) {
        if (to_lower_ascii(name[0]) == to_lower_ascii(first)) return true;
    }
    return false;
}
}  // namespace detail

/// Whether delivery reads the answer header `name` (X-Message-Id, Retry-After,
/// X-RateLimit-Reset; any case). A transport may keep only these in `HttpResponse::headers`.
inline bool delivery_reads_header(std::string_view name) noexcept {
    for (std::string_view known : detail::delivery_headers) {
        if (detail::iequals(name, known)) return true;
    }
    return false;
}

/// One HTTP request. The Authorization header is in `headers`: a transport must never log it.
struct HttpRequest {
    std::string method = "POST";
    std::string url;
    HttpHeaders headers;
    std::string body;
};

/// The answer to one request, or why none arrived.
struct HttpResponse {
    /// The status of a complete answer head (status line and headers); 0 when none arrived. It
    /// can be set together with `error` when the body was cut short: the head is still the
    /// server's answer.
    int status = 0;
    /// The answer's headers; at least those `delivery_reads_header` names (CurlTransport keeps
    /// only those).
    HttpHeaders headers;
    std::string body;
    TransportError error = TransportError::none;
    std::string error_message;  ///< the transport's own words; never holds request headers
    /// Whether the whole request may have reached the server. A transport sets it to false only
    /// when it knows that no complete request left the process: no connection (DNS, refused,
    /// unreachable), a failed TLS handshake, or the body never handed to the connection. Only
    /// then may delivery retry a request without an answer. The default is the safe side.
    bool request_sent = true;
    /// How many times the request, or its head, was written to a connection (0 when it never
    /// reached one). Adds up to `SendOutcome::attempts`.
    int requests_on_wire = 1;

    std::string_view header(std::string_view name) const noexcept {
        return find_header(headers, name);
    }
};

/// How a transport connects. Plain HTTP options with documented defaults; the backend fills
/// them from its `Settings`.
struct TransportOptions {
    std::chrono::milliseconds timeout{30'000};  ///< the whole request; more than 0
    std::chrono::milliseconds connect_timeout{10'000};
    std::string ca_bundle;                   ///< empty: the system's CA store
    std::size_t gzip_min_bytes = 64 * 1024;  ///< bodies this large are gzipped; 0: never
    /// Kept-alive connections idle longer than this are not reused (whole seconds for libcurl).
    std::chrono::milliseconds max_idle_connection_age{3'000};
    std::string user_agent = "sendgrid_backend-cpp/" SENDGRID_BACKEND_VERSION_STRING;
};

/// A request's answer within a batch: `tag` is what the request was started with.
struct Completion {
    std::size_t tag;
    HttpResponse response;
};

/// Requests in flight from one thread at a time: start some, collect the answers as they come.
/// Made by `Transport::open_batch`; used by one thread only.
class TransportBatch {
  public:
    virtual ~TransportBatch() = default;

    /// Starts sending `request`; it must stay alive until its completion has been collected.
    /// `tag` names it in the completion and must not be in flight already.
    virtual void start(std::size_t tag, const HttpRequest& request) = 0;

    /// Waits up to `timeout` for started requests to complete and returns those that did, each
    /// exactly once; empty when the time passed first.
    virtual std::vector<Completion> wait_any(std::chrono::milliseconds timeout) = 0;

    /// How many started requests it really works on at once; delivery starts no more.
    virtual std::size_t concurrency() const noexcept = 0;
};

/// Sends HTTP requests. Implementations must be safe to call from many threads at once (one
/// backend may be shared by many threads) and should not throw for network failures: those are
/// answered with `HttpResponse::error`. A transport that only implements `send` gets one request
/// in flight at a time.
class Transport {
  public:
    virtual ~Transport() = default;

    /// Sends one request and waits for its answer.
    virtual HttpResponse send(const HttpRequest& request) = 0;

    /// A batch that keeps up to `max_in_flight` requests in flight. The default sends the
    /// started requests one after another with `send`, one per `wait_any`. (Declared inline:
    /// otherwise it is the class's key function and, defined in this header, makes every
    /// including file compile the vtable and the sequential batch behind it.)
    inline virtual std::unique_ptr<TransportBatch> open_batch(std::size_t max_in_flight);

    /// Why this transport cannot send to `url`, or empty. Asked once, when a backend is made.
    virtual std::string url_problem(const std::string& url) const {
        (void)url;
        return {};
    }
};

namespace detail {

/// The default batch: one request at a time through `Transport::send`.
class SequentialBatch : public TransportBatch {
  public:
    explicit SequentialBatch(Transport& transport) : transport_(transport) {}

    void start(std::size_t tag, const HttpRequest& request) override {
        started_.push_back({tag, &request});
    }

    std::vector<Completion> wait_any(std::chrono::milliseconds) override {
        std::vector<Completion> done;
        if (next_ == started_.size()) return done;
        const auto [tag, request] = started_[next_];
        if (++next_ == started_.size()) {
            started_.clear();
            next_ = 0;
        }
        done.push_back(Completion{tag, transport_.send(*request)});
        return done;
    }

    std::size_t concurrency() const noexcept override { return 1; }

  private:
    Transport& transport_;
    /// Started, not answered yet: [next_, size). Not std::queue, whose deque every file that
    /// includes this header would compile (benchmarks/compile_cost.sh).
    std::vector<std::pair<std::size_t, const HttpRequest*>> started_;
    std::size_t next_ = 0;
};

using TransportFactory = std::shared_ptr<Transport> (*)(const TransportOptions&);

/// The transport a backend uses when it is given none. `transport/curl.hpp` installs libcurl
/// here when it is included, so the core headers need no HTTP library.
inline std::atomic<TransportFactory>& default_transport_factory() noexcept {
    static std::atomic<TransportFactory> factory{nullptr};
    return factory;
}

}  // namespace detail

inline std::unique_ptr<TransportBatch> Transport::open_batch(std::size_t) {
    return std::make_unique<detail::SequentialBatch>(*this);
}

SENDGRID_BACKEND_NAMESPACE_END
