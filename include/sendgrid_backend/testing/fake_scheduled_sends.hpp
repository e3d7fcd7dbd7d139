#pragma once

/// @file
/// `testing::FakeScheduledSends`: the fake server's part of SendGrid's Cancel Scheduled Sends
/// API. It creates batch ids (`POST /v3/mail/batch`), validates them (`GET /v3/mail/batch/{id}`)
/// and keeps each batch's pause or cancel (`GET/POST /v3/user/scheduled_sends`,
/// `GET/PATCH/DELETE /v3/user/scheduled_sends/{id}`), with SendGrid's status codes, its
/// `{"errors": [...]}` bodies and its limit of 10 batches paused or cancelled at once.
/// FakeSendgridServer registers these routes and asks `state` before it fires a batch's events.
///
/// Unlike SendGrid, a pause or cancel is accepted up to the last moment (SendGrid refuses it
/// less than 10 minutes before send_at), so that tests can schedule a few seconds ahead.

#include <httplib.h>

#include <cstddef>
#include <functional>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// What a batch is set to: `none` sends at send_at; `pause` holds its messages until resumed;
/// `cancel` discards them at send_at.
enum class ScheduledState { none, pause, cancel };

/// See the file comment. Every member is safe to call from any thread.
class FakeScheduledSends {
  public:
    /// SendGrid's limit on batches paused or cancelled at the same time.
    static constexpr std::size_t max_paused_or_cancelled = 10;

    /// Answers 401 itself and returns false when a request is not authorized.
    using Authorized = std::function<bool(const httplib::Request&, httplib::Response&)>;
    /// Told after a batch's state changed (e.g. a resume, so that held events can fire). Called
    /// without the lock held, on the server's thread.
    using OnChange = std::function<void(const std::string& batch_id, ScheduledState state)>;

    FakeScheduledSends() : random_(std::random_device{}()) {}

    FakeScheduledSends(const FakeScheduledSends&) = delete;
    FakeScheduledSends& operator=(const FakeScheduledSends&) = delete;

    /// Serves the endpoints of the file comment on `server`; each checks `authorized` first.
    void register_routes(httplib::Server& server, Authorized authorized) {
        authorized_ = std::move(authorized);
        server.Post("/v3/mail/batch", guarded([this](const auto&, auto& response) {
                        answer(response, 201, {{"batch_id", create_batch()}});
                    }));
        server.Get(R"(/v3/mail/batch/([^/]+))",
                   guarded([this](const auto& request, auto& response) {
                       validate_batch(request.matches[1], response);
                   }));
        server.Post("/v3/user/scheduled_sends",
                    guarded([this](const auto& request, auto& response) {
                        set_status(request, response);
                    }));
        server.Get("/v3/user/scheduled_sends",
                   guarded([this](const auto&, auto& response) { answer(response, 200, list()); }));
        const char* one = R"(/v3/user/scheduled_sends/([^/]+))";
        server.Get(one, guarded([this](const auto& request, auto& response) {
                       get_status(request.matches[1], response);
                   }));
        server.Patch(one, guarded([this](const auto& request, auto& response) {
                         update_status(request.matches[1], request, response);
                     }));
        server.Delete(one, guarded([this](const auto& request, auto& response) {
                          delete_status(request.matches[1], response);
                      }));
    }

    /// Called after every change of a batch's state; replaces any earlier one.
    void on_change(OnChange callback) {
        std::lock_guard<std::mutex> lock(mutex_);
        on_change_ = std::move(callback);
    }

    /// A new batch id, as `POST /v3/mail/batch` makes.
    std::string create_batch() {
        static constexpr char alphabet[] =
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
        std::lock_guard<std::mutex> lock(mutex_);
        std::string id;
        do {
            id.clear();
            std::uniform_int_distribution<std::size_t> pick(0, sizeof(alphabet) - 2);
            for (int i = 0; i < 32; ++i) id += alphabet[pick(random_)];
        } while (batches_.count(id) != 0);
        batches_.insert(id);
        return id;
    }

    /// Whether `batch_id` was made by `POST /v3/mail/batch`.
    bool known(const std::string& batch_id) const {
        std::lock_guard<std::mutex> lock(mutex_);
        return batches_.count(batch_id) != 0;
    }

    /// The pause or cancel set on `batch_id`; `none` when none is (or the batch is unknown).
    ScheduledState state(const std::string& batch_id) const {
        std::lock_guard<std::mutex> lock(mutex_);
        const auto* entry = find(batch_id);
        return entry != nullptr ? entry->second : ScheduledState::none;
    }

    /// Forgets every batch and state.
    void clear() {
        std::lock_guard<std::mutex> lock(mutex_);
        batches_.clear();
        statuses_.clear();
    }

  private:
    using Entry = std::pair<std::string, ScheduledState>;
    using Handler = std::function<void(const httplib::Request&, httplib::Response&)>;

    /// SendGrid's error body with one error.
    static nlohmann::json error_body(const std::string& message,
                                     const nlohmann::json& field = nullptr) {
        return {{"errors", {{{"field", field}, {"message", message}}}}};
    }

    static const char* to_wire(ScheduledState state) noexcept {
        return state == ScheduledState::cancel ? "cancel" : "pause";
    }

    /// "pause" or "cancel" as a state; nullopt for anything else.
    static std::optional<ScheduledState> state_from(const nlohmann::json& value) {
        if (value == "pause") return ScheduledState::pause;
        if (value == "cancel") return ScheduledState::cancel;
        return std::nullopt;
    }

    template <class Body>
    Handler guarded(Body body) {
        return [this, body](const httplib::Request& request, httplib::Response& response) {
            if (authorized_ && !authorized_(request, response)) return;
            body(request, response);
        };
    }

    static void answer(httplib::Response& response, int status, const nlohmann::json& body) {
        response.status = status;
        response.set_content(body.dump(), "application/json");
    }

    static void refuse(httplib::Response& response, int status, const std::string& message,
                       const nlohmann::json& field = nullptr) {
        answer(response, status, error_body(message, field));
    }

    void validate_batch(const std::string& batch_id, httplib::Response& response) {
        if (!known(batch_id)) {
            refuse(response, 400, "invalid batch id");
            return;
        }
        answer(response, 200, {{"batch_id", batch_id}});
    }

    /// POST /v3/user/scheduled_sends: sets a pause or cancel on a batch that has neither.
    void set_status(const httplib::Request& request, httplib::Response& response) {
        const nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
        if (!body.is_object()) {
            refuse(response, 400, "the request body must be a JSON object");
            return;
        }
        const auto batch = body.find("batch_id");
        if (batch == body.end() || !batch->is_string() || !known(batch->get<std::string>())) {
            refuse(response, 400, "invalid batch id", "batch_id");
            return;
        }
        const auto status = state_from(body.value("status", nlohmann::json()));
        if (!status) {
            refuse(response, 400, "status must be either 'pause' or 'cancel'", "status");
            return;
        }
        const std::string batch_id = batch->get<std::string>();
        {
            std::lock_guard<std::mutex> lock(mutex_);
            if (find(batch_id) != nullptr) {
                refuse(response, 400,
                       "a pause or cancel is already set on this batch id: use PATCH or DELETE "
                       "/v3/user/scheduled_sends/{batch_id}",
                       "batch_id");
                return;
            }
            if (statuses_.size() >= max_paused_or_cancelled) {
                refuse(response, 400,
                       "max limit reached: at most 10 batches can be paused or cancelled at "
                       "one time");
                return;
            }
            statuses_.emplace_back(batch_id, *status);
        }
        answer(response, 201, {{"batch_id", batch_id}, {"status", to_wire(*status)}});
        changed(batch_id, *status);
    }

    void get_status(const std::string& batch_id, httplib::Response& response) {
        if (!known(batch_id)) {
            refuse(response, 404, "batch id not found");
            return;
        }
        nlohmann::json found = nlohmann::json::array();
        std::lock_guard<std::mutex> lock(mutex_);
        if (const auto* entry = find(batch_id)) found.push_back(to_json(*entry));
        answer(response, 200, found);
    }

    /// PATCH: changes a pause to a cancel or back; the batch must have one of them.
    void update_status(const std::string& batch_id, const httplib::Request& request,
                       httplib::Response& response) {
        const nlohmann::json body = nlohmann::json::parse(request.body, nullptr, false);
        const auto status =
            body.is_object() ? state_from(body.value("status", nlohmann::json())) : std::nullopt;
        if (!status) {
            refuse(response, 400, "status must be either 'pause' or 'cancel'", "status");
            return;
        }
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto* entry = find(batch_id);
            if (entry == nullptr) {
                refuse(response, 404, "batch id not found");
                return;
            }
            entry->second = *status;
        }
        response.status = 204;
        changed(batch_id, *status);
    }

    /// DELETE: removes the pause or cancel, so that the batch is sent (a resume).
    void delete_status(const std::string& batch_id, httplib::Response& response) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            auto* entry = find(batch_id);
            if (entry == nullptr) {
                refuse(response, 404, "batch id not found");
                return;
            }
            statuses_.erase(statuses_.begin() + (entry - statuses_.data()));
        }
        response.status = 204;
        changed(batch_id, ScheduledState::none);
    }

    nlohmann::json list() const {
        nlohmann::json all = nlohmann::json::array();
        std::lock_guard<std::mutex> lock(mutex_);
        for (const Entry& entry : statuses_) all.push_back(to_json(entry));
        return all;
    }

    static nlohmann::json to_json(const Entry& entry) {
        return {{"batch_id", entry.first}, {"status", to_wire(entry.second)}};
    }

    // Under the lock.
    Entry* find(const std::string& batch_id) {
        for (Entry& entry : statuses_) {
            if (entry.first == batch_id) return &entry;
        }
        return nullptr;
    }
    const Entry* find(const std::string& batch_id) const {
        return const_cast<FakeScheduledSends*>(this)->find(batch_id);
    }

    void changed(const std::string& batch_id, ScheduledState state) {
        OnChange callback;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            callback = on_change_;
        }
        if (callback) callback(batch_id, state);
    }

    mutable std::mutex mutex_;
    std::mt19937_64 random_;
    Authorized authorized_;
    OnChange on_change_;
    std::set<std::string> batches_;
    /// Paused or cancelled batches, in the order their state was first set (SendGrid's list).
    std::vector<Entry> statuses_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
