#pragma once

// A fake clock and a scripted transport for testing delivery without sockets or sleeping: each
// request body names a script of steps (latency, response), one step per try. Batches run the
// steps concurrently in fake time; the clock jumps to the next completion. A request's script
// entry is its body, or what `key_of` makes of the body (e.g. the payload's subject, for tests
// that send EmailMessages through a backend).

#include <sendgrid_backend/delivery.hpp>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace test_support {

using namespace std::chrono_literals;
namespace sg = sendgrid_backend;

class FakeClock : public sg::Clock {
  public:
    time_point now() override { return now_; }
    std::int64_t unix_now() override {
        return 1'700'000'000 +
               std::chrono::duration_cast<std::chrono::seconds>(now_ - start_).count();
    }
    void sleep_until(time_point when) override {
        ++sleeps;
        if (when > now_) now_ = when;
    }
    void advance(std::chrono::milliseconds by) { now_ += by; }
    /// Fake time since the clock was made.
    std::chrono::milliseconds elapsed() const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(now_ - start_);
    }

    int sleeps = 0;

  private:
    time_point start_ = time_point(std::chrono::hours(1000));
    time_point now_ = start_;
};

// --- responses ---
inline sg::HttpResponse accepted(const std::string& id = "id") {
    sg::HttpResponse response;
    response.status = 202;
    response.headers = {{"X-Message-Id", id}};
    return response;
}
inline sg::HttpResponse answered(int status, sg::HttpHeaders headers = {}, std::string body = "") {
    sg::HttpResponse response;
    response.status = status;
    response.headers = std::move(headers);
    response.body = std::move(body);
    return response;
}
inline sg::HttpResponse rate_limited(const std::string& retry_after) {
    return answered(429, {{"Retry-After", retry_after}});
}
/// No connection: nothing left the process.
inline sg::HttpResponse refused() {
    sg::HttpResponse response;
    response.error = sg::TransportError::connection_failed;
    response.error_message = "Connection refused";
    response.request_sent = false;
    response.requests_on_wire = 0;
    return response;
}
/// Sent, then no answer in time.
inline sg::HttpResponse timed_out() {
    sg::HttpResponse response;
    response.error = sg::TransportError::timeout;
    response.error_message = "Operation timed out";
    return response;
}

struct Step {
    std::chrono::milliseconds latency{0};
    sg::HttpResponse response;
};

/// Requests whose body is a key of `script` get its steps in order, one per try (the last step
/// repeats). Records the fake time each try started.
class ScriptedTransport : public sg::Transport {
  public:
    ScriptedTransport(FakeClock& clock, std::map<std::string, std::vector<Step>> script)
        : clock_(clock), script_(std::move(script)) {}

    sg::HttpResponse send(const sg::HttpRequest& request) override {
        if (throw_on_send && *throw_on_send == sent_) throw std::runtime_error("send " + explosion);
        ++sent_;
        Step step = next(request.body);
        clock_.advance(step.latency);
        return step.response;
    }

    std::unique_ptr<sg::TransportBatch> open_batch(std::size_t max_in_flight) override {
        if (throw_on_open) throw std::runtime_error("open_batch exploded");
        if (max_in_flight <= 1) return sg::Transport::open_batch(max_in_flight);
        return std::make_unique<Batch>(*this, max_in_flight);
    }

    /// (key, fake ms since start) of every try, in start order.
    std::vector<std::pair<std::string, long long>> starts;
    /// The body of every try, in start order.
    std::vector<std::string> bodies;
    /// Names a request's script entry from its body; null: the body itself.
    std::function<std::string(const std::string& body)> key_of;
    std::size_t most_in_flight = 0;

    std::optional<std::size_t> throw_on_send;  ///< the send with this index throws
    std::string explosion = "exploded";        ///< what a throw says, after where it came from
    bool throw_on_open = false;
    std::optional<std::size_t> throw_on_start;  ///< the batch start with this index throws
    std::optional<int> throw_on_wait;           ///< the wait_any with this index throws
    bool answer_unknown_tag = false;            ///< the first wait also answers tag 999
    bool answer_twice = false;                  ///< the first completion is answered twice
    std::optional<std::string> never_answer;    ///< a batch never completes this key

  private:
    class Batch : public sg::TransportBatch {
      public:
        Batch(ScriptedTransport& owner, std::size_t limit) : owner_(owner), limit_(limit) {}

        void start(std::size_t tag, const sg::HttpRequest& request) override {
            if (owner_.throw_on_start && *owner_.throw_on_start == started_) {
                throw std::runtime_error("start " + owner_.explosion);
            }
            ++started_;
            Step step = owner_.next(request.body);
            const bool silent =
                owner_.never_answer && *owner_.never_answer == owner_.key(request.body);
            flying_.push_back(
                Flight{tag, owner_.clock_.now() + step.latency, step.response, silent});
            owner_.most_in_flight = std::max(owner_.most_in_flight, flying_.size());
        }

        std::vector<sg::Completion> wait_any(std::chrono::milliseconds timeout) override {
            if (owner_.throw_on_wait && *owner_.throw_on_wait == waits_++) {
                throw std::runtime_error("wait_any " + owner_.explosion);
            }
            std::vector<sg::Completion> done;
            const auto limit = owner_.clock_.now() + timeout;
            std::optional<sg::Clock::time_point> earliest;
            for (const auto& flight : flying_) {
                if (!flight.silent && (!earliest || flight.due < *earliest)) earliest = flight.due;
            }
            if (!earliest || *earliest > limit) {
                owner_.clock_.sleep_until(limit);
                return done;
            }
            owner_.clock_.sleep_until(*earliest);
            for (auto it = flying_.begin(); it != flying_.end();) {
                if (!it->silent && it->due <= owner_.clock_.now()) {
                    done.push_back(sg::Completion{it->tag, it->response});
                    it = flying_.erase(it);
                } else {
                    ++it;
                }
            }
            if (owner_.answer_unknown_tag) {
                owner_.answer_unknown_tag = false;
                done.push_back(sg::Completion{999, accepted("stray")});
            }
            if (owner_.answer_twice && !done.empty()) {
                owner_.answer_twice = false;
                done.push_back(done.front());
            }
            return done;
        }

        std::size_t concurrency() const noexcept override { return limit_; }

      private:
        struct Flight {
            std::size_t tag;
            sg::Clock::time_point due;
            sg::HttpResponse response;
            bool silent;
        };
        ScriptedTransport& owner_;
        std::size_t limit_;
        std::size_t started_ = 0;
        int waits_ = 0;
        std::vector<Flight> flying_;
    };

    std::string key(const std::string& body) const { return key_of ? key_of(body) : body; }

    Step next(const std::string& body) {
        std::lock_guard<std::mutex> lock(mutex_);
        const std::string name = key(body);
        starts.emplace_back(name, clock_.elapsed().count());
        bodies.push_back(body);
        auto& steps = script_.at(name);
        std::size_t& used = used_[name];
        const Step step = steps.at(std::min(used, steps.size() - 1));
        ++used;
        return step;
    }

    FakeClock& clock_;
    std::map<std::string, std::vector<Step>> script_;
    std::map<std::string, std::size_t> used_;
    std::size_t sent_ = 0;
    std::mutex mutex_;
};

/// Requests whose bodies are `names`, for Delivery::run.
inline std::vector<sg::HttpRequest> requests_named(const std::vector<std::string>& names) {
    std::vector<sg::HttpRequest> requests;
    for (const auto& name : names) {
        sg::HttpRequest request;
        request.url = "http://fake.invalid/v3/mail/send";
        request.body = name;
        requests.push_back(request);
    }
    return requests;
}

}  // namespace test_support
