#pragma once

/// @file
/// Where a message's tracking key goes in a request, for the backend that adds it and the Redis
/// queue that checks, before a message is durable, what a worker's backend will send.

#include <cstddef>
#include <map>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"
#include "sendgrid_backend/exceptions.hpp"
#include "sendgrid_backend/message.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The tracking key `message` carries itself in `custom_args[arg]`; null when it carries none.
/// @throws InvalidMessage for an empty one.
inline const std::string* own_tracking_key(const EmailMessage& message, const std::string& arg) {
    auto found = message.custom_args.find(arg);
    if (found == message.custom_args.end()) return nullptr;
    if (found->second.empty()) {
        throw InvalidMessage(keyed("custom_args", arg),
                             "is empty; a tracking key needs at least one character");
    }
    return &found->second;
}

/// The tracking key `key` in `custom_args[arg]` of each map that lacks it and must hold it for
/// every recipient's events to carry it: each personalization's own (SendGrid echoes those
/// instead of the message's), then the message's. Taken out again when this goes: the key is
/// for one request, and the caller's message is left as it was.
class PlacedTrackingKey {
  public:
    using Args = std::map<std::string, std::string>;

    /// `arg` is kept: it must outlive this object and must not be a text inside `message`.
    /// @throws InvalidMessage naming the field when a personalization holds another key (the
    ///         message is then unchanged).
    PlacedTrackingKey(EmailMessage& message, const std::string& arg, const std::string& key)
        : message_(message), arg_(arg) {
        // Checked before anything is placed, so that a refusal leaves nothing behind.
        for (std::size_t i = 0; i < message.personalizations.size(); ++i) {
            const Args& own = message.personalizations[i].custom_args;
            auto theirs = own.find(arg);
            if (theirs != own.end() && theirs->second != key) {
                throw InvalidMessage(
                    keyed("personalizations[" + std::to_string(i) + "].custom_args", arg),
                    "differs from the message's tracking key; set it on the message only");
            }
        }
        // '1' at i: personalizations[i] got the key; the last: the message's own map. A string,
        // not a container of flags or pointers: every file that sends compiles this class, and
        // std::string's code is compiled there already.
        placed_.assign(message.personalizations.size() + 1, '0');
        try {
            for (std::size_t i = 0; i < message.personalizations.size(); ++i) {
                Args& own = message.personalizations[i].custom_args;
                // An empty map: the message's custom_args go there instead.
                if (!own.empty()) place(own, key, i);
            }
            place(message.custom_args, key, message.personalizations.size());
        } catch (...) {  // out of memory: the destructor will not run, so take them out here
            take_out();
            throw;
        }
    }
    /// A temporary `arg` would be gone before this object.
    PlacedTrackingKey(EmailMessage&, std::string&&, const std::string&) = delete;
    PlacedTrackingKey(const PlacedTrackingKey&) = delete;
    PlacedTrackingKey& operator=(const PlacedTrackingKey&) = delete;
    ~PlacedTrackingKey() { take_out(); }

  private:
    void place(Args& args, const std::string& key, std::size_t at) {
        if (args.find(arg_) != args.end()) return;
        args[arg_] = key;
        placed_[at] = '1';
    }

    void take_out() noexcept {
        const std::size_t count = message_.personalizations.size();
        for (std::size_t i = 0; i < placed_.size(); ++i) {
            if (placed_[i] != '1') continue;
            Args& args =
                i < count ? message_.personalizations[i].custom_args : message_.custom_args;
            args.erase(args.find(arg_));
        }
    }

    EmailMessage& message_;
    const std::string& arg_;
    std::string placed_;
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
