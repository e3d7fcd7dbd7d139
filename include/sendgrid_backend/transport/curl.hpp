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
/// stops the re-sends that need a rewind, but it costs a second send() per request, about
/// 5.5 us of CPU in our measurements, and guards fewer paths.) Whether a request may have
/// reached the server is then exact: only if the callback was called.

#include <curl/curl.h>
#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <new>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/linkage.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// curl_global_init once per process, before the first handle, cleaned up at exit.
inline void ensure_curl_initialized() {
    struct GlobalCurl {
        GlobalCurl() {
            if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                throw TransportSetupError("curl_global_init failed");
            }
        }
        ~GlobalCurl() { curl_global_cleanup(); }
    };
    static GlobalCurl global;
}

/// `input` gzip-compressed (RFC 1952), as `Content-Encoding: gzip` wants; nullopt when zlib
/// fails (the body is then sent as it is).
inline std::optional<std::string> gzip_compress(const std::string& input) {
    z_stream stream{};
    // 15 + 16: a gzip header instead of a zlib one.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        return std::nullopt;
    }
    std::string output(deflateBound(&stream, static_cast<uLong>(input.size())) + 32, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = reinterpret_cast<Bytef*>(output.data());
    stream.avail_out = static_cast<uInt>(output.size());
    const int result = deflate(&stream, Z_FINISH);
    deflateEnd(&stream);
    if (result != Z_STREAM_END) return std::nullopt;
    output.resize(stream.total_out);
    return output;
}

/// What kind of failure a libcurl code is. Whether the request left the process is decided
/// separately, by the pre-request callback.
inline TransportError classify_curl_error(CURLcode code) noexcept {
    switch (code) {
        case CURLE_OK:
            return TransportError::none;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
            return TransportError::connection_failed;
        case CURLE_OPERATION_TIMEDOUT:
            return TransportError::timeout;
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
        case CURLE_SSL_CRL_BADFILE:
            return TransportError::tls;
        case CURLE_SEND_ERROR:
            return TransportError::send_failed;
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
        case CURLE_SEND_FAIL_REWIND:     // our seek callback refused libcurl's re-send
        case CURLE_ABORTED_BY_CALLBACK:  // our pre-request callback refused it
            return TransportError::receive_failed;
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_UNSUPPORTED_PROTOCOL:  // also "HTTP/0.9 not allowed": garbage came back
        case CURLE_BAD_CONTENT_ENCODING:
            return TransportError::bad_answer;
        default:
            return TransportError::other;
    }
}

/// The proxy settings libcurl would read from the environment for requests to `url`.
struct ProxyEnvironment {
    std::string proxy;     ///< empty: none
    std::string no_proxy;  ///< hosts that go straight, as no_proxy lists them
};

/// Reads the environment as libcurl does before each request: no_proxy, then NO_PROXY; the
/// scheme's own variable (http_proxy only in lower case: a CGI program's Proxy: header may set
/// HTTP_PROXY), then all_proxy, then ALL_PROXY; an empty variable counts as unset.
inline ProxyEnvironment read_proxy_environment(std::string_view url) {
    auto first_set = [](std::initializer_list<const char*> names) {
        for (const char* name : names) {
            const char* value = std::getenv(name);
            if (value != nullptr && *value != '\0') return std::string(value);
        }
        return std::string();
    };
    const bool https = url.size() >= 6 && iequals(url.substr(0, 6), "https:");
    ProxyEnvironment environment;
    environment.no_proxy = first_set({"no_proxy", "NO_PROXY"});
    environment.proxy = https ? first_set({"https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"})
                              : first_set({"http_proxy", "all_proxy", "ALL_PROXY"});
    return environment;
}

/// Why libcurl's URL parser will not take `url` as an http(s) endpoint, or empty.
inline std::string curl_url_problem(const std::string& url) {
    std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> handle(curl_url(), &curl_url_cleanup);
    if (!handle) return "cannot be checked: libcurl is out of memory";
    const CURLUcode parsed = curl_url_set(handle.get(), CURLUPART_URL, url.c_str(), 0);
    if (parsed != CURLUE_OK) {
        return std::string("is not a URL libcurl accepts (") + curl_url_strerror(parsed) + ")";
    }
    auto has = [&handle](CURLUPart part) {
        char* value = nullptr;
        const CURLUcode found = curl_url_get(handle.get(), part, &value, 0);
        curl_free(value);
        return found == CURLUE_OK;
    };
    char* scheme = nullptr;
    curl_url_get(handle.get(), CURLUPART_SCHEME, &scheme, 0);
    const std::string scheme_text = scheme != nullptr ? scheme : "";
    curl_free(scheme);
    if (scheme_text != "http" && scheme_text != "https") return "is not http(s) for libcurl";
    if (!has(CURLUPART_HOST)) return "has no host for libcurl";
    if (has(CURLUPART_USER)) return "holds user credentials for libcurl";
    if (has(CURLUPART_QUERY)) return "has a query for libcurl";
    if (has(CURLUPART_FRAGMENT)) return "has a fragment for libcurl";
    return "";
}

}  // namespace detail

/// libcurl transport; thread-safe, connections reused. See the file comment.
class CurlTransport : public Transport {
  public:
    /// Answer bodies are kept up to this size; the rest is read and dropped (SendGrid's error
    /// bodies are a few hundred bytes; a server must not make us hold gigabytes).
    static constexpr std::size_t max_answer_body_bytes = 1 << 20;

    /// @throws TransportSetupError when libcurl cannot be initialised.
    explicit CurlTransport(TransportOptions options = {}) : options_(std::move(options)) {
        detail::ensure_curl_initialized();
        share_ = curl_share_init();
        if (share_ == nullptr) throw TransportSetupError("curl_share_init failed");
        curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &CurlTransport::lock_shared);
        curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &CurlTransport::unlock_shared);
        curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
        // Connections are not shared (libcurl does not support that across threads): each
        // handle, or batch session, keeps its own.
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }

    ~CurlTransport() override {
        idle_sessions_.clear();  // every easy handle goes before the share it uses
        idle_handles_.clear();
        curl_share_cleanup(share_);
    }

    CurlTransport(const CurlTransport&) = delete;
    CurlTransport& operator=(const CurlTransport&) = delete;

    /// One request with curl_easy_perform on a handle that keeps its connection between calls.
    HttpResponse send(const HttpRequest& request) override {
        Transfer transfer;
        transfer.handle = take_handle();
        prepare(transfer, request);
        finish(transfer, curl_easy_perform(transfer.easy()));
        unbind(transfer.easy());
        give_back_handle(std::move(transfer.handle));
        return std::move(transfer.response);
    }

    std::unique_ptr<TransportBatch> open_batch(std::size_t max_in_flight) override {
        if (max_in_flight <= 1) return Transport::open_batch(max_in_flight);
        return std::make_unique<Batch>(*this, max_in_flight);
    }

    std::string url_problem(const std::string& url) const override {
        return detail::curl_url_problem(url);
    }

    const TransportOptions& options() const noexcept { return options_; }

  private:
    /// An easy handle and what was last set on it, so that a request like the one before sets
    /// only what differs: libcurl parses a URL again each time it is set.
    struct Handle {
        CURL* easy = nullptr;
        std::string url;
        CURLU* parsed_url = nullptr;  ///< `url` parsed once, for CURLOPT_CURLU
        HttpHeaders headers;          ///< the request headers `header_list` was built from
        bool gzip = false;
        bool no_expect = false;  ///< whether `header_list` holds an empty Expect header
        curl_slist* header_list = nullptr;

        explicit Handle(CURL* handle) : easy(handle) {}
        ~Handle() {
            curl_easy_cleanup(easy);
            curl_url_cleanup(parsed_url);
            curl_slist_free_all(header_list);
        }
        Handle(const Handle&) = delete;
        Handle& operator=(const Handle&) = delete;
    };

    /// One request's state; libcurl's callbacks write into it, so it never moves while in use.
    struct Transfer {
        std::size_t tag = 0;
        std::unique_ptr<Handle> handle;  ///< taken from a pool until the request is done
        std::string gzipped;
        int prereq_calls = 0;  ///< times the request was about to be written
        bool refused_resend = false;
        int head_status = 0;  ///< the status line of the answer head being read
        bool head_complete = false;
        HttpResponse response;
        std::array<char, CURL_ERROR_SIZE> error{};

        CURL* easy() const noexcept { return handle->easy; }
        /// As made, for the next request (made again in place: a move assignment would be
        /// more code in every sending file).
        void reset() noexcept {
            this->~Transfer();
            new (this) Transfer();
        }
    };

    /// One multi handle with its connection cache and the easy handles it reuses.
    struct Session {
        CURLM* multi = nullptr;
        std::vector<std::unique_ptr<Handle>> idle;

        Session() : multi(curl_multi_init()) {
            if (multi == nullptr) throw TransportSetupError("curl_multi_init failed");
        }
        ~Session() {
            idle.clear();
            curl_multi_cleanup(multi);
        }
        Session(const Session&) = delete;
        Session& operator=(const Session&) = delete;
    };

    /// Requests in flight on one session's multi handle.
    class Batch : public TransportBatch {
      public:
        Batch(CurlTransport& owner, std::size_t max_in_flight)
            : owner_(owner), session_(owner.acquire_session()), max_in_flight_(max_in_flight) {
            curl_multi_setopt(session_->multi, CURLMOPT_MAXCONNECTS,
                              static_cast<long>(max_in_flight));
        }

        ~Batch() override {
            // Requests still in flight are abandoned: removing a handle stops its transfer.
            for (auto& transfer : active_) {
                curl_multi_remove_handle(session_->multi, transfer->easy());
                owner_.unbind(transfer->easy());
                session_->idle.push_back(std::move(transfer->handle));
            }
            owner_.release_session(std::move(session_));
        }

        Batch(const Batch&) = delete;
        Batch& operator=(const Batch&) = delete;

        void start(std::size_t tag, const HttpRequest& request) override {
            std::unique_ptr<Transfer> transfer;
            if (spare_.empty()) {
                transfer = std::make_unique<Transfer>();
            } else {
                transfer = std::move(spare_.back());
                spare_.pop_back();
                transfer->reset();
            }
            transfer->tag = tag;
            if (session_->idle.empty()) {
                transfer->handle = owner_.new_handle();
            } else {
                transfer->handle = std::move(session_->idle.back());
                session_->idle.pop_back();
            }
            owner_.prepare(*transfer, request);
            if (curl_multi_add_handle(session_->multi, transfer->easy()) != CURLM_OK) {
                owner_.unbind(transfer->easy());
                session_->idle.push_back(std::move(transfer->handle));
                throw TransportSetupError("curl_multi_add_handle failed");
            }
            active_.push_back(std::move(transfer));
        }

        std::vector<Completion> wait_any(std::chrono::milliseconds timeout) override {
            std::vector<Completion> done;
            const auto deadline = std::chrono::steady_clock::now() + timeout;
            for (;;) {
                int running = 0;
                curl_multi_perform(session_->multi, &running);
                int queued = 0;
                while (CURLMsg* message = curl_multi_info_read(session_->multi, &queued)) {
                    if (message->msg != CURLMSG_DONE) continue;
                    Transfer* transfer = nullptr;
                    curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
                    const CURLcode result = message->data.result;
                    curl_multi_remove_handle(session_->multi, transfer->easy());
                    finish(*transfer, result);
                    owner_.unbind(transfer->easy());
                    session_->idle.push_back(std::move(transfer->handle));
                    done.push_back(Completion{transfer->tag, std::move(transfer->response)});
                    forget(transfer);
                }
                if (!done.empty() || active_.empty()) return done;
                const auto left = std::chrono::ceil<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now());
                if (left.count() <= 0) return done;
                curl_multi_poll(session_->multi, nullptr, 0,
                                static_cast<int>(std::min<long long>(left.count(), 1'000'000)),
                                nullptr);
            }
        }

        std::size_t concurrency() const noexcept override { return max_in_flight_; }

      private:
        CurlTransport& owner_;
        std::unique_ptr<Session> session_;
        std::size_t max_in_flight_;
        /// Puts a finished transfer aside for the next start (a few are in flight: a scan beats
        /// a hash map's code).
        void forget(const Transfer* transfer) {
            for (auto& held : active_) {
                if (held.get() != transfer) continue;
                std::swap(held, active_.back());
                spare_.push_back(std::move(active_.back()));
                active_.pop_back();
                return;
            }
        }

        std::vector<std::unique_ptr<Transfer>> active_;  ///< in flight, in no order
        std::vector<std::unique_ptr<Transfer>> spare_;   ///< finished, reused by start
    };

    /// Called each time the request is about to be written to a connection. A second call is
    /// libcurl re-sending it on a new connection after the first connection died with no
    /// answer: the server may hold the whole request, so it is refused (at most once).
    static int on_prereq(void* user, char*, char*, int, int) {
        auto& transfer = *static_cast<Transfer*>(user);
        if (++transfer.prereq_calls > 1) {
            transfer.refused_resend = true;
            return CURL_PREREQFUNC_ABORT;
        }
        return CURL_PREREQFUNC_OK;
    }

    static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
        std::string& body = static_cast<Transfer*>(user)->response.body;
        const std::size_t n = size * count;
        if (body.size() < max_answer_body_bytes) {
            body.append(data, std::min(n, max_answer_body_bytes - body.size()));
        }
        return n;
    }

    /// Reads the answer head line by line: the status, whether the blank line that ends the
    /// head arrived, and only the headers delivery reads (copying every header cost more than
    /// the rest of the callback).
    static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
        auto& transfer = *static_cast<Transfer*>(user);
        HttpResponse& response = transfer.response;
        const std::string_view line(data, size * count);
        // Most lines are headers delivery does not read: one look at the first byte skips them.
        const char first = line.empty() ? '\n' : line[0];
        const bool may_matter = first == 'H' || first == '\r' || first == '\n' ||
                                detail::may_start_delivery_header(first);
        if (!may_matter) return size * count;
        if (line.rfind("HTTP/", 0) == 0) {
            // A new status line: an interim 1xx answer may have come first.
            response.headers.clear();
            transfer.head_complete = false;
            transfer.head_status = 0;
            const std::size_t space = line.find(' ');
            if (space != std::string_view::npos) {
                const auto code = detail::parse_decimal(line.substr(space + 1, 3), 3);
                if (code) transfer.head_status = static_cast<int>(*code);
            }
        } else if (line == "\r\n" || line == "\n") {
            transfer.head_complete = transfer.head_status >= 200;
        } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
            const auto name = detail::trim(line.substr(0, colon));
            if (!delivery_reads_header(name)) return size * count;
            const auto value = detail::trim(line.substr(colon + 1));
            const auto end = value.find_last_not_of("\r\n");
            response.headers.emplace_back(
                std::string(name),
                std::string(end == std::string_view::npos ? std::string_view()
                                                          : value.substr(0, end + 1)));
        }
        return size * count;
    }

    static void lock_shared(CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<CurlTransport*>(user)->share_locks_[static_cast<std::size_t>(data)].lock();
    }
    static void unlock_shared(CURL*, curl_lock_data data, void* user) {
        static_cast<CurlTransport*>(user)->share_locks_[static_cast<std::size_t>(data)].unlock();
    }

    std::unique_ptr<Session> acquire_session() {
        {
            std::lock_guard<std::mutex> lock(pool_mutex_);
            if (!idle_sessions_.empty()) {
                auto session = std::move(idle_sessions_.back());
                idle_sessions_.pop_back();
                return session;
            }
        }
        return std::make_unique<Session>();
    }

    void release_session(std::unique_ptr<Session> session) {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        idle_sessions_.push_back(std::move(session));
    }

    std::unique_ptr<Handle> take_handle() {
        {
            std::lock_guard<std::mutex> lock(pool_mutex_);
            if (!idle_handles_.empty()) {
                auto handle = std::move(idle_handles_.back());
                idle_handles_.pop_back();
                return handle;
            }
        }
        return new_handle();
    }

    void give_back_handle(std::unique_ptr<Handle> handle) {
        std::lock_guard<std::mutex> lock(pool_mutex_);
        idle_handles_.push_back(std::move(handle));
    }

    /// Points the transfer's handle at `request`. Handles are reused as they are: the options
    /// every request shares were set when the handle was made, the URL and the header list
    /// when they last changed, so only the per-request ones are set here.
    void prepare(Transfer& transfer, const HttpRequest& request) {
        Handle& handle = *transfer.handle;
        CURL* easy = handle.easy;
        const std::string* body = &request.body;
        bool gzip = false;
        if (options_.gzip_min_bytes > 0 && request.body.size() >= options_.gzip_min_bytes) {
            if (auto gzipped = detail::gzip_compress(request.body)) {
                transfer.gzipped = std::move(*gzipped);
                body = &transfer.gzipped;
                gzip = true;
            }
        }
        if (handle.url != request.url) {
            handle.url = request.url;
            // Parsed once: given CURLOPT_URL, libcurl parses the text again for every request
            // (some 12,000 instructions each in libcurl 7.88). A URL the parser refuses goes in
            // as text, so that the transfer fails with libcurl's own error.
            if (handle.parsed_url == nullptr) handle.parsed_url = curl_url();
            if (handle.parsed_url != nullptr && curl_url_set(handle.parsed_url, CURLUPART_URL,
                                                             handle.url.c_str(), 0) == CURLUE_OK) {
                curl_easy_setopt(easy, CURLOPT_CURLU, handle.parsed_url);
            } else {
                curl_easy_setopt(easy, CURLOPT_CURLU, nullptr);
                curl_easy_setopt(easy, CURLOPT_URL, handle.url.c_str());
            }
            // Given no proxy options, libcurl reads five environment variables for every
            // request (~1,500 instructions); read here, they are given as options (libcurl
            // copies them), an empty one meaning none.
            const detail::ProxyEnvironment proxy = detail::read_proxy_environment(handle.url);
            curl_easy_setopt(easy, CURLOPT_PROXY, proxy.proxy.c_str());
            curl_easy_setopt(easy, CURLOPT_NOPROXY, proxy.no_proxy.c_str());
        }
        // libcurl asks "Expect: 100-continue" (a round trip) before HTTP/1.1 bodies larger than
        // this; an empty Expect header stops it. Only then: each header in the list costs
        // libcurl some 2,000 instructions per request.
        constexpr std::size_t expect_threshold =
            LIBCURL_VERSION_NUM >= 0x074500 ? 1024 * 1024 : 1024;  // 1 MiB since 7.69
        const bool no_expect = body->size() > expect_threshold;
        if (handle.header_list == nullptr || handle.gzip != gzip || handle.no_expect != no_expect ||
            handle.headers != request.headers) {
            curl_slist* list = nullptr;
            if (gzip) list = curl_slist_append(list, "Content-Encoding: gzip");
            for (const auto& [name, value] : request.headers) {
                list = curl_slist_append(list, (name + ": " + value).c_str());
            }
            // In the list rather than CURLOPT_USERAGENT, which libcurl formats anew for every
            // request (about 2,500 instructions each).
            if (!options_.user_agent.empty() &&
                find_header(request.headers, "User-Agent").empty()) {
                list = curl_slist_append(list, ("User-Agent: " + options_.user_agent).c_str());
            }
            if (no_expect) list = curl_slist_append(list, "Expect:");
            curl_slist_free_all(handle.header_list);
            handle.header_list = list;
            handle.headers = request.headers;
            handle.gzip = gzip;
            handle.no_expect = no_expect;
            curl_easy_setopt(easy, CURLOPT_HTTPHEADER, list);
        }
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST,
                         request.method == "POST" ? nullptr : request.method.c_str());
        // Not copied by libcurl: the body lives in the request (or the transfer) until the end.
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body->data());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error.data());
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, &transfer);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, &transfer);
    }

    /// Leaves no pointer to a finished transfer in a handle going back to a pool (the URL and
    /// header list belong to the handle and stay).
    static void unbind(CURL* easy) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, nullptr);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, nullptr);
        curl_easy_setopt(easy, CURLOPT_PREREQDATA, nullptr);
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, nullptr);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, nullptr);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, nullptr);
    }

    /// A new easy handle with the options every request shares.
    std::unique_ptr<Handle> new_handle() {
        CURL* easy = curl_easy_init();
        if (easy == nullptr) throw TransportSetupError("curl_easy_init failed");
        auto handle = std::make_unique<Handle>(easy);
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(options_.connect_timeout.count()));
        curl_easy_setopt(easy, CURLOPT_MAXAGE_CONN,
                         static_cast<long>(options_.max_idle_connection_age.count() / 1000));
        curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, static_cast<long>(CURL_HTTP_VERSION_2TLS));
        curl_easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(easy, CURLOPT_SSL_VERIFYHOST, 2L);
        if (!options_.ca_bundle.empty()) {
            curl_easy_setopt(easy, CURLOPT_CAINFO, options_.ca_bundle.c_str());
        }
        curl_easy_setopt(easy, CURLOPT_SHARE, share_);
        curl_easy_setopt(easy, CURLOPT_PREREQFUNCTION, &CurlTransport::on_prereq);
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlTransport::on_body);
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &CurlTransport::on_header);
        return handle;
    }

    static void finish(Transfer& transfer, CURLcode code) {
        HttpResponse& response = transfer.response;
        // A refused re-send was never written.
        response.requests_on_wire = transfer.prereq_calls - (transfer.refused_resend ? 1 : 0);
        if (code == CURLE_OK && transfer.head_complete) {
            long status = 0;
            curl_easy_getinfo(transfer.easy(), CURLINFO_RESPONSE_CODE, &status);
            response.status = static_cast<int>(status);
            response.request_sent = true;
            return;
        }
        if (code == CURLE_OK) {
            // libcurl takes a connection closed inside the answer head as the end of the head;
            // without its blank line, it is not an answer.
            response.error = TransportError::bad_answer;
            response.status = 0;
            response.request_sent = true;
            response.error_message = "the connection closed inside the answer head";
            if (transfer.head_status != 0) {
                response.error_message +=
                    " (its status line said " + std::to_string(transfer.head_status) + ")";
            }
            return;
        }
        response.error = detail::classify_curl_error(code);
        // A complete answer head is the server's answer even if the body was cut short.
        response.status = transfer.head_complete ? transfer.head_status : 0;
        // Before the pre-request callback (DNS, connect, TLS handshake) nothing was written.
        response.request_sent = transfer.prereq_calls > 0;
        if (transfer.refused_resend) {
            response.error_message =
                "the connection closed after the request was written, before any answer; "
                "libcurl's re-send on a new connection was refused (at most once on the wire)";
        } else {
            response.error_message =
                transfer.error[0] != '\0' ? transfer.error.data() : curl_easy_strerror(code);
        }
    }

    TransportOptions options_;
    CURLSH* share_ = nullptr;
    std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks_;
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<Session>> idle_sessions_;
    std::vector<std::unique_ptr<Handle>> idle_handles_;
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
