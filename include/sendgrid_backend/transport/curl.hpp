#pragma once

/// @file
/// The default transport: libcurl's multi interface. Link `sendgrid_backend::curl`.
///
/// Connections are kept alive and reused across sends (a pool of sessions, each one curl multi
/// handle with its own connection cache, taken by one thread at a time); DNS results and TLS
/// sessions are shared between sessions. HTTP/2 is used when the server offers it over TLS.
/// TLS peers are always verified. The proxy environment (https_proxy, no_proxy, ...) is
/// honoured as libcurl does. Including this header makes libcurl the transport of every
/// `SendgridBackend` that is not given one.

#include <curl/curl.h>
#include <zlib.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/transport.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// curl_global_init once per process, before the first handle, cleaned up at exit.
inline void ensure_curl_initialized() {
    struct GlobalCurl {
        GlobalCurl() {
            if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
                throw std::runtime_error("[sendgrid_backend.curl] curl_global_init failed");
            }
        }
        ~GlobalCurl() { curl_global_cleanup(); }
    };
    static GlobalCurl global;
}

/// gzip-compresses `input` (RFC 1952), as `Content-Encoding: gzip` wants.
inline std::string gzip_compress(const std::string& input) {
    z_stream stream{};
    // 15 + 16: a gzip header instead of a zlib one.
    if (deflateInit2(&stream, Z_DEFAULT_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) !=
        Z_OK) {
        throw std::runtime_error("[sendgrid_backend.curl] deflateInit2 failed");
    }
    std::string output(deflateBound(&stream, static_cast<uLong>(input.size())) + 32, '\0');
    stream.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(input.data()));
    stream.avail_in = static_cast<uInt>(input.size());
    stream.next_out = reinterpret_cast<Bytef*>(output.data());
    stream.avail_out = static_cast<uInt>(output.size());
    const int result = deflate(&stream, Z_FINISH);
    deflateEnd(&stream);
    if (result != Z_STREAM_END) throw std::runtime_error("[sendgrid_backend.curl] gzip failed");
    output.resize(stream.total_out);
    return output;
}

inline TransportError classify_curl_error(CURLcode code, CURL* handle) noexcept {
    switch (code) {
        case CURLE_OK:
            return TransportError::none;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_COULDNT_CONNECT:
            return TransportError::connection_failed;
        case CURLE_OPERATION_TIMEDOUT: {
            // A timeout before the connection was made sent nothing: as safe as a refusal.
            curl_off_t connected_after = 0;
            curl_easy_getinfo(handle, CURLINFO_CONNECT_TIME_T, &connected_after);
            return connected_after == 0 ? TransportError::connection_failed
                                        : TransportError::timeout;
        }
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_PEER_FAILED_VERIFICATION:
        case CURLE_SSL_CERTPROBLEM:
        case CURLE_SSL_CIPHER:
        case CURLE_SSL_CACERT_BADFILE:
        case CURLE_SSL_ISSUER_ERROR:
        case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
        case CURLE_SSL_INVALIDCERTSTATUS:
            return TransportError::tls;
        case CURLE_SEND_ERROR:
            return TransportError::send_failed;
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
            return TransportError::receive_failed;
        default:
            return TransportError::other;
    }
}

}  // namespace detail

/// libcurl transport; thread-safe, connections reused. See the file comment.
class CurlTransport : public Transport {
  public:
    explicit CurlTransport(TransportOptions options = {}) : options_(std::move(options)) {
        detail::ensure_curl_initialized();
        share_ = curl_share_init();
        if (share_ == nullptr) throw std::runtime_error("[sendgrid_backend.curl] no share handle");
        curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &CurlTransport::lock_shared);
        curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &CurlTransport::unlock_shared);
        curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
        // Connections are not shared (libcurl does not support that across threads): each
        // session keeps its own.
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }

    ~CurlTransport() override {
        idle_sessions_.clear();  // every easy handle goes before the share it uses
        curl_share_cleanup(share_);
    }

    CurlTransport(const CurlTransport&) = delete;
    CurlTransport& operator=(const CurlTransport&) = delete;

    HttpResponse send(const HttpRequest& request) override {
        HttpResponse response;
        run(&request, &response, 1, 1);
        return response;
    }

    std::vector<HttpResponse> send_batch(const std::vector<HttpRequest>& requests,
                                         std::size_t max_in_flight) override {
        std::vector<HttpResponse> responses(requests.size());
        run(requests.data(), responses.data(), requests.size(), max_in_flight);
        return responses;
    }

    const TransportOptions& options() const noexcept { return options_; }

  private:
    /// One multi handle with its connection cache and the easy handles it reuses; used by one
    /// thread at a time.
    struct Session {
        CURLM* multi = nullptr;
        std::vector<CURL*> idle_easy;

        Session() : multi(curl_multi_init()) {
            if (multi == nullptr)
                throw std::runtime_error("[sendgrid_backend.curl] no multi handle");
        }
        ~Session() {
            for (CURL* easy : idle_easy) curl_easy_cleanup(easy);
            curl_multi_cleanup(multi);
        }
        Session(const Session&) = delete;
        Session& operator=(const Session&) = delete;

        /// An idle easy handle, or nullptr when a new one is needed.
        CURL* take_idle_easy() {
            if (idle_easy.empty()) return nullptr;
            CURL* easy = idle_easy.back();
            idle_easy.pop_back();
            return easy;
        }
    };

    /// Per-request state that libcurl's callbacks write into.
    struct Transfer {
        const HttpRequest* request = nullptr;
        HttpResponse* response = nullptr;
        CURL* easy = nullptr;  ///< taken from the session until given back
        bool in_multi = false;
        curl_slist* header_list = nullptr;
        std::string gzipped_body;
        std::array<char, CURL_ERROR_SIZE> error{};

        ~Transfer() { curl_slist_free_all(header_list); }
    };

    static std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
        auto* transfer = static_cast<Transfer*>(user);
        transfer->response->body.append(data, size * count);
        return size * count;
    }

    static std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
        auto* response = static_cast<Transfer*>(user)->response;
        std::string_view line(data, size * count);
        if (line.rfind("HTTP/", 0) == 0) {
            response->headers.clear();  // a new status line: an interim 100 answer came first
        } else if (const auto colon = line.find(':'); colon != std::string_view::npos) {
            const auto value = detail::trim(line.substr(colon + 1));
            const auto end = value.find_last_not_of("\r\n");
            response->headers.emplace_back(
                std::string(detail::trim(line.substr(0, colon))),
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

    void prepare(Transfer& transfer, Session& session) {
        const HttpRequest& request = *transfer.request;
        // Handles are reused as they are: the options every request shares were set when the
        // handle was made, so only the per-request ones are set here.
        CURL* easy = session.take_idle_easy();
        if (easy == nullptr) easy = new_easy();
        transfer.easy = easy;

        const std::string* body = &request.body;
        if (options_.gzip_min_bytes > 0 && request.body.size() >= options_.gzip_min_bytes) {
            transfer.gzipped_body = detail::gzip_compress(request.body);
            body = &transfer.gzipped_body;
            transfer.header_list =
                curl_slist_append(transfer.header_list, "Content-Encoding: gzip");
        }
        for (const auto& [name, value] : request.headers) {
            transfer.header_list =
                curl_slist_append(transfer.header_list, (name + ": " + value).c_str());
        }
        // No "Expect: 100-continue" round trip before large bodies.
        transfer.header_list = curl_slist_append(transfer.header_list, "Expect:");

        curl_easy_setopt(easy, CURLOPT_URL, request.url.c_str());
        curl_easy_setopt(easy, CURLOPT_POST, 1L);
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST,
                         request.method == "POST" ? nullptr : request.method.c_str());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, body->data());
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, transfer.header_list);
        curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, transfer.error.data());
        curl_easy_setopt(easy, CURLOPT_WRITEDATA, &transfer);
        curl_easy_setopt(easy, CURLOPT_HEADERDATA, &transfer);
        curl_easy_setopt(easy, CURLOPT_PRIVATE, &transfer);
    }

    /// A new easy handle with the options every request shares.
    CURL* new_easy() {
        CURL* easy = curl_easy_init();
        if (easy == nullptr) throw std::runtime_error("[sendgrid_backend.curl] no easy handle");
        curl_easy_setopt(easy, CURLOPT_USERAGENT, options_.user_agent.c_str());
        curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, static_cast<long>(options_.timeout.count()));
        curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS,
                         static_cast<long>(options_.connect_timeout.count()));
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
        curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, &CurlTransport::on_body);
        curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, &CurlTransport::on_header);
        return easy;
    }

    static void finish(Transfer& transfer, CURLcode code) {
        HttpResponse& response = *transfer.response;
        response.finished = std::chrono::steady_clock::now();
        response.error = detail::classify_curl_error(code, transfer.easy);
        if (response.error == TransportError::none) {
            long status = 0;
            curl_easy_getinfo(transfer.easy, CURLINFO_RESPONSE_CODE, &status);
            response.status = static_cast<int>(status);
        } else {
            response.status = 0;
            response.error_message =
                transfer.error[0] != '\0' ? transfer.error.data() : curl_easy_strerror(code);
        }
    }

    void run(const HttpRequest* requests, HttpResponse* responses, std::size_t count,
             std::size_t max_in_flight) {
        if (count == 0) return;
        if (max_in_flight == 0) max_in_flight = 1;
        std::unique_ptr<Session> session = acquire_session();
        std::vector<Transfer> transfers(count);
        try {
            if (count == 1) {
                perform_one(*session, transfers[0], requests[0], responses[0]);
            } else {
                drive(*session, transfers, requests, responses, max_in_flight);
            }
        } catch (...) {
            // Leave the session clean for the next caller: no handle stays in its multi.
            for (Transfer& transfer : transfers) give_back(*session, transfer);
            release_session(std::move(session));
            throw;
        }
        release_session(std::move(session));
    }

    /// Returns a transfer's easy handle to the session (removing it from the multi first).
    static void give_back(Session& session, Transfer& transfer) {
        if (transfer.easy == nullptr) return;
        if (transfer.in_multi) curl_multi_remove_handle(session.multi, transfer.easy);
        transfer.in_multi = false;
        session.idle_easy.push_back(transfer.easy);
        transfer.easy = nullptr;
    }

    /// One request on its own: curl_easy_perform, which spares the multi loop's bookkeeping
    /// (the easy handle keeps its own connection alive between calls).
    void perform_one(Session& session, Transfer& transfer, const HttpRequest& request,
                     HttpResponse& response) {
        transfer.request = &request;
        transfer.response = &response;
        prepare(transfer, session);
        response.started = std::chrono::steady_clock::now();
        finish(transfer, curl_easy_perform(transfer.easy));
        give_back(session, transfer);
    }

    void drive(Session& session, std::vector<Transfer>& transfers, const HttpRequest* requests,
               HttpResponse* responses, std::size_t max_in_flight) {
        const std::size_t count = transfers.size();
        curl_multi_setopt(session.multi, CURLMOPT_MAXCONNECTS, static_cast<long>(max_in_flight));
        std::size_t next = 0;
        std::size_t active = 0;
        while (next < count || active > 0) {
            while (active < max_in_flight && next < count) {
                Transfer& transfer = transfers[next];
                transfer.request = &requests[next];
                transfer.response = &responses[next];
                prepare(transfer, session);
                transfer.response->started = std::chrono::steady_clock::now();
                curl_multi_add_handle(session.multi, transfer.easy);
                transfer.in_multi = true;
                ++next;
                ++active;
            }
            int running = 0;
            curl_multi_perform(session.multi, &running);
            int queued = 0;
            while (CURLMsg* message = curl_multi_info_read(session.multi, &queued)) {
                if (message->msg != CURLMSG_DONE) continue;
                Transfer* transfer = nullptr;
                curl_easy_getinfo(message->easy_handle, CURLINFO_PRIVATE, &transfer);
                finish(*transfer, message->data.result);
                give_back(session, *transfer);
                --active;
            }
            if (active > 0 && (next == count || active >= max_in_flight)) {
                curl_multi_poll(session.multi, nullptr, 0, 100, nullptr);
            }
        }
    }

    TransportOptions options_;
    CURLSH* share_ = nullptr;
    std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks_;
    std::mutex pool_mutex_;
    std::vector<std::unique_ptr<Session>> idle_sessions_;
};

namespace detail {

inline std::shared_ptr<Transport> make_curl_transport(const TransportOptions& options) {
    return std::make_shared<CurlTransport>(options);
}

/// Installs libcurl as the default transport in every program that includes this header.
inline const bool curl_transport_installed =
    (default_transport_factory().store(&make_curl_transport), true);

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
