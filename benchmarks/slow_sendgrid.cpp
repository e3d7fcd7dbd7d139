// A SendGrid that answers as slowly as the real one: an HTTP/1.1 server on 127.0.0.1 that
// answers POST /v3/mail/send with 202 and an X-Message-Id a fixed delay after the whole request
// arrived (default 100 ms; SendGrid's own answers take ~100-300 ms). One thread, Boost.Asio,
// asynchronous: any number of keep-alive connections wait at once, so a client's throughput is
// its requests in flight / the delay, and what the server counts is what the client achieved.
// The request is not checked (the payload's rules are FakeSendgridServer's job, not a
// benchmark's).
//
//   slow_sendgrid [--port N] [--port-file PATH] [--delay-ms MS]
//
// It counts each mail/send request in the tick of 100 ms (since it started) in which the
// request arrived. GET /__stats answers {"received": total, "tick_ms": 100, "tick": the tick
// now, "per_tick": [count of tick 0, tick 1, ...], "most_waiting": the most requests waiting
// for their answer at once since the previous /__stats, "connections": accepted since it started};
// latency_bench reads it. SIGINT or SIGTERM stops it, printing the total on stdout. --port-file
// receives the port (useful with --port 0, the default: any free port) once the server listens.

#include <boost/asio.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace {

namespace asio = boost::asio;
using asio::ip::tcp;
using Clock = std::chrono::steady_clock;

/// What the server counted, shared by every connection (one thread: no locks): requests per
/// tick of 100 ms since it started, fine enough to find the busiest 1-second window, and the
/// most requests waiting for their answer at once: what a client really had in flight.
struct Counts {
    static constexpr long tick_ms = 100;
    Clock::time_point started = Clock::now();
    std::vector<long> per_tick;
    long received = 0;
    long waiting = 0;
    long most_waiting = 0;  ///< since the last /__stats
    long connections = 0;   ///< accepted since the start

    long tick_now() const {
        return static_cast<long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count() /
            tick_ms);
    }
    void count_one() {
        const auto tick = static_cast<std::size_t>(tick_now());
        if (per_tick.size() <= tick) per_tick.resize(tick + 1, 0);
        ++per_tick[tick];
        ++received;
        most_waiting = std::max(most_waiting, ++waiting);
    }
    void answered() { --waiting; }
    /// The counts as JSON; most_waiting starts again from the requests waiting now.
    std::string json() {
        std::string text = "{\"received\":" + std::to_string(received) +
                           ",\"most_waiting\":" + std::to_string(most_waiting) +
                           ",\"connections\":" + std::to_string(connections) +
                           ",\"tick_ms\":" + std::to_string(tick_ms) +
                           ",\"tick\":" + std::to_string(tick_now()) + ",\"per_tick\":[";
        for (std::size_t i = 0; i < per_tick.size(); ++i) {
            if (i > 0) text += ',';
            text += std::to_string(per_tick[i]);
        }
        most_waiting = waiting;
        return text + "]}";
    }
};

/// The longest request head, and body, this server reads; past them it closes the connection.
constexpr std::size_t max_head_bytes = 64 * 1024;
constexpr std::size_t max_body_bytes = 32 * 1024 * 1024;

bool iequals_prefix(std::string_view line, std::string_view name) {
    if (line.size() < name.size()) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        const char a = line[i] >= 'A' && line[i] <= 'Z' ? static_cast<char>(line[i] + 32) : line[i];
        if (a != name[i]) return false;
    }
    return true;
}

/// What the server needs of a request head: its line, body length, and the connection's fate.
struct Head {
    std::string method;
    std::string target;
    std::size_t content_length = 0;
    bool keep_alive = true;
    bool expects_continue = false;
    bool chunked = false;
    bool valid = false;
};

Head parse_head(std::string_view text) {
    Head head;
    const std::size_t line_end = text.find("\r\n");
    const std::string_view line = text.substr(0, line_end);
    const std::size_t space = line.find(' ');
    const std::size_t second_space = line.find(' ', space + 1);
    if (space == std::string_view::npos || second_space == std::string_view::npos) return head;
    head.method = std::string(line.substr(0, space));
    head.target = std::string(line.substr(space + 1, second_space - space - 1));
    head.keep_alive = line.substr(second_space + 1) != "HTTP/1.0";
    std::size_t at = line_end + 2;
    while (at < text.size()) {
        const std::size_t end = text.find("\r\n", at);
        const std::string_view field = text.substr(at, end - at);
        at = end == std::string_view::npos ? text.size() : end + 2;
        const std::size_t colon = field.find(':');
        if (colon == std::string_view::npos) continue;
        std::string_view value = field.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) {
            value.remove_prefix(1);
        }
        const std::string_view name = field.substr(0, colon + 1);
        if (iequals_prefix(name, "content-length:")) {
            head.content_length = std::strtoull(std::string(value).c_str(), nullptr, 10);
        } else if (iequals_prefix(name, "connection:")) {
            if (iequals_prefix(value, "close")) head.keep_alive = false;
            if (iequals_prefix(value, "keep-alive")) head.keep_alive = true;
        } else if (iequals_prefix(name, "expect:")) {
            head.expects_continue = iequals_prefix(value, "100-continue");
        } else if (iequals_prefix(name, "transfer-encoding:")) {
            head.chunked = true;
        }
    }
    // A chunked body is not read here (libcurl sends a body it is given with a length).
    head.valid = head.content_length <= max_body_bytes && !head.chunked;
    return head;
}

/// One keep-alive connection: read a request, wait the delay, answer, read the next.
class Connection : public std::enable_shared_from_this<Connection> {
  public:
    Connection(tcp::socket socket, Counts& counts, std::chrono::milliseconds delay)
        : socket_(std::move(socket)),
          timer_(socket_.get_executor()),
          counts_(counts),
          delay_(delay) {}

    void start() { read_head(); }

  private:
    void read_head() {
        auto self = shared_from_this();
        asio::async_read_until(socket_, asio::dynamic_buffer(buffer_, max_head_bytes), "\r\n\r\n",
                               [self](boost::system::error_code error, std::size_t head_size) {
                                   if (!error) self->on_head(head_size);
                               });
    }

    void on_head(std::size_t head_size) {
        head_ = parse_head(std::string_view(buffer_).substr(0, head_size));
        buffer_.erase(0, head_size);
        if (!head_.valid) return;  // dropping the last reference closes the socket
        if (head_.expects_continue && buffer_.size() < head_.content_length) {
            auto self = shared_from_this();
            asio::async_write(socket_, asio::buffer(continue_line),
                              [self](boost::system::error_code error, std::size_t) {
                                  if (!error) self->read_body();
                              });
            return;
        }
        read_body();
    }

    void read_body() {
        if (buffer_.size() >= head_.content_length) return on_request();
        auto self = shared_from_this();
        asio::async_read(socket_, asio::dynamic_buffer(buffer_),
                         asio::transfer_exactly(head_.content_length - buffer_.size()),
                         [self](boost::system::error_code error, std::size_t) {
                             if (!error) self->on_request();
                         });
    }

    /// The whole request is here: the delay starts now.
    void on_request() {
        buffer_.erase(0, head_.content_length);  // a pipelined request's bytes stay
        if (head_.method == "POST" && head_.target == "/v3/mail/send") {
            counts_.count_one();
            answer_ = "HTTP/1.1 202 Accepted\r\nX-Message-Id: slow-" +
                      std::to_string(counts_.received) + "\r\nContent-Length: 0\r\n" +
                      connection_header() + "\r\n";
            auto self = shared_from_this();
            timer_.expires_after(delay_);
            timer_.async_wait([self](boost::system::error_code error) {
                self->counts_.answered();
                if (!error) self->write_answer();
            });
            return;
        }
        if (head_.method == "GET" && head_.target == "/__stats") {
            const std::string body = counts_.json();
            answer_ = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " +
                      std::to_string(body.size()) + "\r\n" + connection_header() + "\r\n" + body;
        } else {
            answer_ =
                "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n" + connection_header() + "\r\n";
        }
        write_answer();
    }

    std::string connection_header() const {
        return head_.keep_alive ? "" : "Connection: close\r\n";
    }

    void write_answer() {
        auto self = shared_from_this();
        asio::async_write(socket_, asio::buffer(answer_),
                          [self](boost::system::error_code error, std::size_t) {
                              if (!error && self->head_.keep_alive) self->read_head();
                          });
    }

    static constexpr std::string_view continue_line = "HTTP/1.1 100 Continue\r\n\r\n";

    tcp::socket socket_;
    asio::steady_timer timer_;
    Counts& counts_;
    std::chrono::milliseconds delay_;
    std::string buffer_;
    Head head_;
    std::string answer_;
};

void accept_next(tcp::acceptor& acceptor, Counts& counts, std::chrono::milliseconds delay) {
    acceptor.async_accept(
        [&acceptor, &counts, delay](boost::system::error_code error, tcp::socket socket) {
            if (!error) {
                socket.set_option(tcp::no_delay(true));
                ++counts.connections;
                std::make_shared<Connection>(std::move(socket), counts, delay)->start();
            }
            if (acceptor.is_open()) accept_next(acceptor, counts, delay);
        });
}

long option(int argc, char** argv, const char* name, long fallback) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return std::atol(argv[i + 1]);
    }
    return fallback;
}

const char* text_option(int argc, char** argv, const char* name) {
    for (int i = 1; i + 1 < argc; ++i) {
        if (std::strcmp(argv[i], name) == 0) return argv[i + 1];
    }
    return nullptr;
}

}  // namespace

int main(int argc, char** argv) {
    const long port = option(argc, argv, "--port", 0);
    const long delay_ms = option(argc, argv, "--delay-ms", 100);
    const char* port_file = text_option(argc, argv, "--port-file");
    if (port < 0 || port > 65535 || delay_ms < 0 || delay_ms > 60'000) {
        std::fprintf(stderr,
                     "usage: slow_sendgrid [--port 0-65535] [--port-file PATH] "
                     "[--delay-ms 0-60000]\n");
        return 2;
    }
    asio::io_context io(1);
    tcp::acceptor acceptor(
        io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), static_cast<unsigned short>(port)));
    Counts counts;
    accept_next(acceptor, counts, std::chrono::milliseconds(delay_ms));
    asio::signal_set signals(io, SIGINT, SIGTERM);
    signals.async_wait([&](boost::system::error_code, int) { io.stop(); });
    const unsigned short bound = acceptor.local_endpoint().port();
    if (port_file != nullptr) {  // whole or not at all, for a script waiting for it
        const std::string partial = std::string(port_file) + ".partial";
        std::ofstream(partial) << bound << '\n';
        std::rename(partial.c_str(), port_file);
    }
    std::fprintf(stderr, "slow_sendgrid: http://127.0.0.1:%u, answering after %ld ms\n", bound,
                 delay_ms);
    io.run();
    std::printf("slow_sendgrid: %ld mail/send requests received\n", counts.received);
    return 0;
}
