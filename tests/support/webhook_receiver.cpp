// The receiving end of the browser test: an Event Webhook endpoint on 127.0.0.1 that checks each
// request with the library's EventWebhook and writes what it decided to a file, one JSON line
// per event it verified, or {"refused": reason} for a request it refused.
//
//   webhook_receiver KEY_FILE EVENTS_FILE
//
// Prints its URL alone on the first line of stdout and stops on SIGINT or SIGTERM. The key file
// (base64 DER or PEM, as sendgrid-fake-server --webhook-key-out writes it) is read at each
// request, not at start: the fake server that writes it needs this URL first.
#include <pthread.h>
#include <signal.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <exception>
#include <fstream>
#include <mutex>
#include <sstream>
#include <string>
#include <thread>

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <sendgrid_backend/webhook.hpp>

namespace sg = sendgrid_backend;

namespace {

std::string read_whole_file(const std::string& path) {
    std::ifstream file(path);
    std::ostringstream text;
    text << file.rdbuf();
    return text.str();
}

/// Appends lines to the events file, one request's lines at a time.
class EventsFile {
  public:
    explicit EventsFile(std::string path) : path_(std::move(path)) {}

    void append(const std::string& lines) {
        const std::lock_guard<std::mutex> lock(mutex_);
        std::ofstream file(path_, std::ios::app);
        file << lines;
    }

  private:
    std::string path_;
    std::mutex mutex_;
};

/// Verifies one request; the lines to record and the answer's status.
std::string receive(const std::string& key_file, const httplib::Request& request, int& status) {
    try {
        sg::WebhookOptions options;
        options.public_key = read_whole_file(key_file);
        // A file ends with a newline, which EventWebhook does not take as part of a key.
        while (!options.public_key.empty() &&
               std::isspace(static_cast<unsigned char>(options.public_key.back()))) {
            options.public_key.pop_back();
        }
        const sg::EventWebhook webhook(options);
        const sg::HttpHeaders headers(request.headers.begin(), request.headers.end());
        const sg::WebhookResult result = webhook.handle(headers, request.body);
        status = result.http_status;
        if (!result.accepted()) {
            return nlohmann::json{{"refused", result.refusal_reason}}.dump() + "\n";
        }
        std::string lines;
        for (const auto& event : nlohmann::json::parse(request.body)) lines += event.dump() + "\n";
        return lines;
    } catch (const std::exception& error) {  // no key file yet, or not a key
        status = 500;
        const std::string reason = "key file " + key_file + ": " + error.what();
        return nlohmann::json{{"refused", reason}}.dump() + "\n";
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc != 3) {
        std::fputs("usage: webhook_receiver KEY_FILE EVENTS_FILE\n", stderr);
        return 2;
    }
    const std::string key_file = argv[1];
    EventsFile events(argv[2]);
    sigset_t stop_signals;
    sigemptyset(&stop_signals);
    sigaddset(&stop_signals, SIGINT);
    sigaddset(&stop_signals, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);  // the server's threads inherit it

    httplib::Server server;
    server.Post("/events", [&](const httplib::Request& request, httplib::Response& response) {
        int status = 500;
        const std::string lines = receive(key_file, request, status);
        events.append(lines);
        response.status = status;
        response.set_content(lines, "application/json");
    });
    const int port = server.bind_to_any_port("127.0.0.1");
    if (port <= 0) {
        std::fputs("webhook_receiver: cannot bind 127.0.0.1\n", stderr);
        return 1;
    }
    std::thread serving([&] { server.listen_after_bind(); });
    while (!server.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::printf("http://127.0.0.1:%d/events\n", port);
    std::fflush(stdout);
    int received = 0;
    sigwait(&stop_signals, &received);
    server.stop();
    serving.join();
    return 0;
}
