#pragma once

/// @file
/// Where connections live between requests: the shared DNS/TLS caches and the idle easy handles
/// and batch sessions that keep connections alive. Part of `transport/curl.hpp`; include that.

#include <curl/curl.h>

#include <array>
#include <cstddef>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/transport/curl/request.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail::curl {

/// curl_global_init once per process, before the first handle, cleaned up at exit.
inline void ensure_initialized() {
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

/// The handles of one transport: idle easy handles for single sends, idle sessions for
/// batches, all sharing one DNS cache and TLS session cache. Thread-safe; never moves (the
/// share handle's lock callbacks point at it).
class Pool {
  public:
    /// @throws TransportSetupError when libcurl cannot be initialised.
    explicit Pool(TransportOptions options) : options_(std::move(options)) {
        ensure_initialized();
        share_ = curl_share_init();
        if (share_ == nullptr) throw TransportSetupError("curl_share_init failed");
        curl_share_setopt(share_, CURLSHOPT_LOCKFUNC, &Pool::lock_shared);
        curl_share_setopt(share_, CURLSHOPT_UNLOCKFUNC, &Pool::unlock_shared);
        curl_share_setopt(share_, CURLSHOPT_USERDATA, this);
        // Connections are not shared (libcurl does not support that across threads): each
        // handle, or batch session, keeps its own.
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
        curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_SSL_SESSION);
    }

    ~Pool() {
        idle_sessions_.clear();  // every easy handle goes before the share it uses
        idle_handles_.clear();
        curl_share_cleanup(share_);
    }

    Pool(const Pool&) = delete;
    Pool& operator=(const Pool&) = delete;

    const TransportOptions& options() const noexcept { return options_; }

    /// An idle easy handle, or a new one.
    std::unique_ptr<Handle> take_handle() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_handles_.empty()) {
                auto handle = std::move(idle_handles_.back());
                idle_handles_.pop_back();
                return handle;
            }
        }
        return new_handle();
    }

    /// Keeps `handle`, and the connection it holds, for the next send.
    void give_back_handle(std::unique_ptr<Handle> handle) {
        std::lock_guard<std::mutex> lock(mutex_);
        idle_handles_.push_back(std::move(handle));
    }

    /// An idle session, or a new one.
    std::unique_ptr<Session> acquire_session() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!idle_sessions_.empty()) {
                auto session = std::move(idle_sessions_.back());
                idle_sessions_.pop_back();
                return session;
            }
        }
        return std::make_unique<Session>();
    }

    /// Keeps `session`, its connections and handles, for the next batch.
    void release_session(std::unique_ptr<Session> session) {
        std::lock_guard<std::mutex> lock(mutex_);
        idle_sessions_.push_back(std::move(session));
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
        set_callbacks(easy);
        return handle;
    }

  private:
    static void lock_shared(CURL*, curl_lock_data data, curl_lock_access, void* user) {
        static_cast<Pool*>(user)->share_locks_[static_cast<std::size_t>(data)].lock();
    }
    static void unlock_shared(CURL*, curl_lock_data data, void* user) {
        static_cast<Pool*>(user)->share_locks_[static_cast<std::size_t>(data)].unlock();
    }

    TransportOptions options_;
    CURLSH* share_ = nullptr;
    std::array<std::mutex, CURL_LOCK_DATA_LAST> share_locks_;
    std::mutex mutex_;  ///< guards the idle lists
    std::vector<std::unique_ptr<Session>> idle_sessions_;
    std::vector<std::unique_ptr<Handle>> idle_handles_;
};

}  // namespace detail::curl
SENDGRID_BACKEND_NAMESPACE_END
