#pragma once

// A TCP forwarder on 127.0.0.1 in front of a server (Redis), for the tests that need a
// connection to break at one exact point: after the server received a request and answered it
// (the answer is dropped), or before the request reached it. Everything else is forwarded as it
// comes. Each connection is served by its own thread; the destructor joins them all.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

class CuttingProxy {
  public:
    enum class Cut {
        none,
        next_answer,   ///< the next bytes the server sends are dropped, and the connection closed
        next_request,  ///< the next bytes the client sends are dropped, and the connection closed
    };

    CuttingProxy(const std::string& host, int port) : target_host_(host), target_port_(port) {
        listen_on(0);
    }
    CuttingProxy(const CuttingProxy&) = delete;
    CuttingProxy& operator=(const CuttingProxy&) = delete;

    ~CuttingProxy() {
        stopping_ = true;
        stop_listening();
        std::lock_guard<std::mutex> lock(mutex_);
        for (std::thread& thread : connections_) thread.join();
    }

    int port() const noexcept { return port_; }
    std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_); }

    /// Arms one cut; it happens once, on whichever connection gets there first.
    void arm(Cut cut) { armed_ = cut; }
    /// How many cuts happened.
    int cuts() const noexcept { return cuts_; }
    /// Stops accepting: a new connection is refused, as by a server that is down (connections
    /// made before are still forwarded). `up()` listens on the same port again.
    void down() { stop_listening(); }
    void up() { listen_on(port_); }

  private:
    void listen_on(int port) {
        listener_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (listener_ < 0) throw std::runtime_error("CuttingProxy: socket");
        const int yes = 1;
        ::setsockopt(listener_, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = htons(static_cast<std::uint16_t>(port));
        socklen_t size = sizeof address;
        if (::bind(listener_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(listener_, 16) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&address), &size) != 0) {
            ::close(listener_);
            listener_ = -1;
            throw std::runtime_error("CuttingProxy: bind/listen");
        }
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    void stop_listening() {
        if (listener_ < 0) return;
        ::shutdown(listener_, SHUT_RDWR);
        acceptor_.join();
        ::close(listener_);
        listener_ = -1;
    }

    void accept_loop() {
        while (!stopping_) {
            const int client = ::accept(listener_, nullptr, nullptr);
            if (client < 0) {
                if (errno == EINTR || errno == ECONNABORTED) continue;
                return;
            }
            const int server = connect_target();
            if (server < 0) {
                ::close(client);
                continue;
            }
            std::lock_guard<std::mutex> lock(mutex_);
            connections_.emplace_back([this, client, server] { forward(client, server); });
        }
    }

    int connect_target() const {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_port = htons(static_cast<std::uint16_t>(target_port_));
        ::inet_pton(AF_INET, target_host_.c_str(), &address.sin_addr);
        if (fd >= 0 && ::connect(fd, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0)
            return fd;
        if (fd >= 0) ::close(fd);
        return -1;
    }

    /// Whether `cut` is armed; disarms it if so.
    bool take(Cut cut) {
        Cut expected = cut;
        if (!armed_.compare_exchange_strong(expected, Cut::none)) return false;
        ++cuts_;
        return true;
    }

    void forward(int client, int server) {
        char buffer[65536];
        while (!stopping_) {
            pollfd fds[2] = {{client, POLLIN, 0}, {server, POLLIN, 0}};
            if (::poll(fds, 2, 100) < 0) {
                if (errno == EINTR) continue;
                break;
            }
            bool done = false;
            for (int i = 0; i < 2 && !done; ++i) {
                if (fds[i].revents == 0) continue;
                const int from = fds[i].fd;
                const int to = i == 0 ? server : client;
                const ssize_t got = ::read(from, buffer, sizeof buffer);
                if (got <= 0 || take(i == 0 ? Cut::next_request : Cut::next_answer)) {
                    done = true;
                    break;
                }
                for (ssize_t sent = 0; sent < got;) {
                    const ssize_t wrote =
                        ::send(to, buffer + sent, static_cast<size_t>(got - sent), MSG_NOSIGNAL);
                    if (wrote <= 0) {
                        done = true;
                        break;
                    }
                    sent += wrote;
                }
            }
            if (done) break;
        }
        ::close(client);
        ::close(server);
    }

    std::string target_host_;
    int target_port_;
    int listener_ = -1;
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::atomic<Cut> armed_{Cut::none};
    std::atomic<int> cuts_{0};
    std::thread acceptor_;
    std::mutex mutex_;
    std::vector<std::thread> connections_;
};

}  // namespace test_support
