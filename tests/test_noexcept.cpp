// What must not throw, pinned at compile time (nlohmann's unit-noexcept idea): moves of the
// value types, accessors and to_string.
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/webhook.hpp>

#include <type_traits>
#include <utility>

#include "catch.hpp"

namespace sg = sendgrid_backend;

static_assert(std::is_nothrow_move_constructible_v<sg::EmailMessage>);
static_assert(std::is_nothrow_move_assignable_v<sg::EmailMessage>);
static_assert(std::is_nothrow_move_constructible_v<sg::SendOutcome>);
static_assert(std::is_nothrow_move_constructible_v<sg::Address>);
static_assert(std::is_nothrow_move_constructible_v<sg::HttpResponse>);
static_assert(std::is_nothrow_move_constructible_v<sg::ObserverConnection>);
static_assert(std::is_nothrow_move_assignable_v<sg::ObserverConnection>);
static_assert(std::is_nothrow_move_constructible_v<sg::WebhookEvent>);
static_assert(noexcept(sg::to_string(sg::SendStatus::accepted)));
static_assert(noexcept(sg::to_string(sg::TransportError::timeout)));
static_assert(noexcept(sg::to_string(sg::EventType::bounce)));
static_assert(noexcept(std::declval<const sg::SendOutcome&>().accepted()));
static_assert(noexcept(std::declval<const sg::InvalidMessage&>().field()));
static_assert(noexcept(std::declval<const sg::SendgridBackend&>().sandbox_mode()));
static_assert(noexcept(std::declval<const sg::EventWebhookVerifier&>().verify("", "", "")));
static_assert(noexcept(sg::belongs_to(std::declval<const sg::WebhookEvent&>(), "")));

TEST_CASE("to_string names every enumerator", "[noexcept]") {
    CHECK(std::string(sg::to_string(sg::SendStatus::transport_failed)) == "transport_failed");
    CHECK(std::string(sg::to_string(sg::TransportError::connection_failed)) == "connection_failed");
    CHECK(std::string(sg::to_string(sg::EventType::group_resubscribe)) == "group_resubscribe");
}
