#pragma once

// A raw-socket HTTP/1.1 server on 127.0.0.1 for the tests that need faults an HTTP library will
// not produce: answering after the client's timeout, closing or resetting right after reading a
// whole request, half a status line, half a body, garbage. It counts what reached it, so a test
// can check the server side: how many complete requests arrived, on how many connections.
//
// Each connection is served by its own thread; every thread is joined by the destructor.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace test_support {

/// What the server does with one complete request.
enum class FaultAction {
    accept,               ///< 202 with an X-Message-Id, keep-alive
    accept_late,          ///< 202, but only after `delay` (the client has given up by then)
    close_after_request,  ///< read the whole request, then close without a byte of answer
    reset_after_request,  ///< read the whole request, then reset the connection (RST)
    half_status_line,     ///< "HTTP/1.1 20", then close
    half_headers,         ///< a status line and part of the headers, then close
    half_body,            ///< complete 400 headers promising 100 bytes, 10 of them, then close
    accept_half_body,     ///< complete 202 headers with an X-Message-Id, half the body, close
    garbage,              ///< bytes that are not HTTP, then close
    rate_limited,         ///< 429 with Retry-After: 0
    reject,               ///< 400 with a SendGrid-style error body
    accept_without_id,    ///< 202 with no X-Message-Id
    huge_error_body,      ///< 400 with a 5 MB error body
    echo_authorization,   ///< 401 whose error body quotes the request's Authorization header
};

struct FaultStep {
    FaultAction action = FaultAction::accept;
    std::chrono::milliseconds delay{0};
    std::string marker;  ///< only for requests whose body holds this text; empty: any
};

class FaultServer {
  public:
    FaultServer() {
        listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
        if (listen_fd_ < 0) throw std::runtime_error("FaultServer: socket");
        int one = 1;
        ::setsockopt(listen_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        sockaddr_in address{};
        address.sin_family = AF_INET;
        address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        address.sin_port = 0;
        if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
            ::listen(listen_fd_, 128) != 0) {
            ::close(listen_fd_);
            throw std::runtime_error("FaultServer: bind/listen on 127.0.0.1");
        }
        socklen_t length = sizeof address;
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&address), &length);
        port_ = ntohs(address.sin_port);
        acceptor_ = std::thread([this] { accept_loop(); });
    }

    ~FaultServer() {
        stopping_ = true;
        acceptor_.join();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
        }
        for (auto& worker : workers_) worker.join();
        ::close(listen_fd_);
    }

    FaultServer(const FaultServer&) = delete;
    FaultServer& operator=(const FaultServer&) = delete;

    std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

    /// The next complete request gets `step` (steps are taken in order; then: accept).
    void push(FaultAction action, std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
        std::lock_guard<std::mutex> lock(mutex_);
        steps_.push_back(FaultStep{action, delay, ""});
    }

    /// Every request whose body holds `marker` (e.g. a recipient's address) gets `action`.
    void always_for(const std::string& marker, FaultAction action,
                    std::chrono::milliseconds delay = std::chrono::milliseconds(0)) {
        std::lock_guard<std::mutex> lock(mutex_);
        targeted_.push_back(FaultStep{action, delay, marker});
    }

    /// Complete requests whose body held `marker`.
    std::size_t requests_with(const std::string& marker) const {
        std::lock_guard<std::mutex> lock(mutex_);
        std::size_t count = 0;
        for (const auto& body : bodies_) count += body.find(marker) != std::string::npos ? 1 : 0;
        return count;
    }

    /// Complete requests (head and whole body) that reached the server.
    std::size_t requests() const { return requests_.load(); }
    /// Request heads that arrived, complete bodies or not.
    std::size_t heads() const { return heads_.load(); }
    /// Connections accepted.
    std::size_t connections() const { return connections_.load(); }
    /// Requests answered 202.
    std::size_t accepted() const { return accepted_.load(); }

    /// Waits (up to 5 s) until `count` requests arrived: a client may give up before the server
    /// has read what it sent.
    bool wait_for_requests(std::size_t count) const {
        const auto give_up = std::chrono::steady_clock::now() + std::chrono::seconds(5);
        while (requests_.load() < count) {
            if (std::chrono::steady_clock::now() > give_up) return false;
            std::this_thread::sleep_for(std::chrono::milliseconds(1));
        }
        return true;
    }

  private:
    void accept_loop() {
        while (!stopping_) {
            pollfd waiting{listen_fd_, POLLIN, 0};
            if (::poll(&waiting, 1, 20) <= 0) continue;
            const int fd = ::accept(listen_fd_, nullptr, nullptr);
            if (fd < 0) continue;
            int one = 1;
            ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            ++connections_;
            std::lock_guard<std::mutex> lock(mutex_);
            open_fds_.push_back(fd);
            workers_.emplace_back([this, fd] { serve(fd); });
        }
    }

    FaultStep next_step(const std::string& request) {
        std::lock_guard<std::mutex> lock(mutex_);
        bodies_.push_back(request.substr(request.find("\r\n\r\n") + 4));
        for (const FaultStep& step : targeted_) {
            if (request.find(step.marker) != std::string::npos) return step;
        }
        if (steps_.empty()) return FaultStep{};
        FaultStep step = steps_.front();
        steps_.pop_front();
        return step;
    }

    /// Reads one whole request into `request`; false when the connection ended first.
    bool read_request(int fd, std::string& buffer, std::string& request) {
        std::size_t head_end = std::string::npos;
        bool counted_head = false;
        for (;;) {
            if (head_end == std::string::npos) head_end = buffer.find("\r\n\r\n");
            if (head_end != std::string::npos) {
                if (!counted_head) {
                    ++heads_;
                    counted_head = true;
                }
                const std::size_t length = content_length(buffer.substr(0, head_end));
                if (buffer.size() >= head_end + 4 + length) {
                    request = buffer.substr(0, head_end + 4 + length);
                    buffer.erase(0, head_end + 4 + length);
                    return true;
                }
            }
            char chunk[16384];
            const ssize_t got = ::recv(fd, chunk, sizeof chunk, 0);
            if (got <= 0) return false;
            buffer.append(chunk, static_cast<std::size_t>(got));
        }
    }

    static std::size_t content_length(const std::string& head) {
        std::string lower = head;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto at = lower.find("\r\ncontent-length:");
        if (at == std::string::npos) return 0;
        return static_cast<std::size_t>(std::stoull(head.substr(at + 17)));
    }

    static void write_all(int fd, const std::string& bytes) {
        std::size_t sent = 0;
        while (sent < bytes.size()) {
            const ssize_t n = ::send(fd, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
            if (n <= 0) return;
            sent += static_cast<std::size_t>(n);
        }
    }

    /// Sleeps `delay` unless the server stops first.
    void pause(std::chrono::milliseconds delay) const {
        const auto until = std::chrono::steady_clock::now() + delay;
        while (!stopping_ && std::chrono::steady_clock::now() < until) {
            std::this_thread::sleep_for(std::chrono::milliseconds(2));
        }
    }

    std::string accepted_answer() {
        const std::string id = "fault-" + std::to_string(++accepted_);
        return "HTTP/1.1 202 Accepted\r\nX-Message-Id: " + id +
               "\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n";
    }

    static std::string header_value(const std::string& request, const std::string& name) {
        std::string lower = request;
        for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        const auto at = lower.find("\r\n" + name + ":");
        if (at == std::string::npos) return "";
        const auto start = request.find_first_not_of(' ', at + 3 + name.size());
        return request.substr(start, request.find("\r\n", start) - start);
    }

    static std::string error_answer(int status, const std::string& reason,
                                    const std::string& body) {
        return "HTTP/1.1 " + std::to_string(status) + " " + reason +
               "\r\nContent-Type: application/json\r\nContent-Length: " +
               std::to_string(body.size()) + "\r\n\r\n" + body;
    }

    void serve(int fd) {
        std::string buffer;
        std::string request;
        bool open = true;
        while (open && !stopping_ && read_request(fd, buffer, request)) {
            ++requests_;
            const FaultStep step = next_step(request);
            switch (step.action) {
                case FaultAction::accept:
                    write_all(fd, accepted_answer());
                    break;
                case FaultAction::accept_late:
                    pause(step.delay);
                    write_all(fd, accepted_answer());
                    break;
                case FaultAction::close_after_request:
                    open = false;
                    break;
                case FaultAction::reset_after_request: {
                    linger reset{1, 0};  // close() now sends RST instead of FIN
                    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof reset);
                    open = false;
                    break;
                }
                case FaultAction::half_status_line:
                    write_all(fd, "HTTP/1.1 20");
                    open = false;
                    break;
                case FaultAction::half_headers:
                    write_all(fd, "HTTP/1.1 202 Accepted\r\nX-Message-Id: cut");
                    open = false;
                    break;
                case FaultAction::half_body:
                    write_all(fd,
                              "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                              "Content-Length: 100\r\n\r\n{\"errors\":");
                    open = false;
                    break;
                case FaultAction::accept_half_body: {
                    const std::string id = "fault-" + std::to_string(++accepted_);
                    write_all(fd, "HTTP/1.1 202 Accepted\r\nX-Message-Id: " + id +
                                      "\r\nContent-Length: 100\r\n\r\n{\"ok\":");
                    open = false;
                    break;
                }
                case FaultAction::garbage:
                    write_all(fd, "\x01\x02garbage, not HTTP\r\n\r\n");
                    open = false;
                    break;
                case FaultAction::rate_limited:
                    write_all(fd,
                              "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 0\r\n"
                              "Content-Length: 0\r\n\r\n");
                    break;
                case FaultAction::reject:
                    write_all(fd, error_answer(400, "Bad Request",
                                               R"({"errors":[{"message":"rejected by FaultServer",)"
                                               R"("field":"from"}]})"));
                    break;
                case FaultAction::accept_without_id:
                    ++accepted_;
                    write_all(fd, "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n");
                    break;
                case FaultAction::huge_error_body:
                    write_all(fd, error_answer(400, "Bad Request",
                                               R"({"errors":[{"message":")" +
                                                   std::string(5'000'000, 'x') + "\"}]}"));
                    break;
                case FaultAction::echo_authorization:
                    // A careless proxy quoting the credentials it was given.
                    write_all(fd,
                              error_answer(401, "Unauthorized",
                                           R"({"errors":[{"message":"bad credentials: )" +
                                               header_value(request, "authorization") +
                                               R"(","field":null,"help":")" +
                                               header_value(request, "authorization") + "\"}]}"));
                    break;
            }
        }
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = open_fds_.begin(); it != open_fds_.end(); ++it) {
            if (*it == fd) {
                open_fds_.erase(it);
                break;
            }
        }
        ::close(fd);
    }

    int listen_fd_ = -1;
    int port_ = 0;
    std::atomic<bool> stopping_{false};
    std::thread acceptor_;
    mutable std::mutex mutex_;
    std::vector<std::thread> workers_;
    std::vector<int> open_fds_;
    std::deque<FaultStep> steps_;
    std::vector<FaultStep> targeted_;
    std::vector<std::string> bodies_;
    std::atomic<std::size_t> requests_{0};
    std::atomic<std::size_t> heads_{0};
    std::atomic<std::size_t> connections_{0};
    std::atomic<std::size_t> accepted_{0};
};

}  // namespace test_support
