#pragma once

/// @file
/// The one path for an exception a handler or a user callback threw.

#include <cstdio>
#include <exception>
#include <functional>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// The one path for an exception thrown by a handler of any library signal, or by a callback
/// the library runs for the user (spdlog's single err_handler_): the user's callback when there
/// is one, else one line on stderr. `thrower` says what threw, e.g. "sendgrid_email_sent
/// handler". When the callback throws as well, the line is written anyway. Never throws.
template <class Context>
void report_handler_error(const std::function<void(const Context&, std::exception_ptr)>& callback,
                          const Context& context, const std::exception_ptr& error,
                          const char* thrower) noexcept {
    const char* note = "";
    if (callback) {
        try {
            callback(context, error);
            return;
        } catch (...) {
            note = " (and the error handler threw too)";
        }
    }
    try {
        const std::string line = std::string("[sendgrid_backend] a ") + thrower + " threw" + note +
                                 ": " + describe_exception(error) + "\n";
        std::fputs(line.c_str(), stderr);
    } catch (...) {
        std::fputs("[sendgrid_backend] a handler threw; out of memory describing it\n", stderr);
    }
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
