#pragma once

/// @file
/// `TemplateData`: the `dynamic_template_data` of a message or a personalization, one
/// nlohmann::json value or none, used like the `std::optional<nlohmann::json>` it replaces.
/// It exists so that the umbrella header needs only nlohmann/json_fwd.hpp: nlohmann/json.hpp
/// is the largest header a sending file would otherwise parse (benchmarks/compile_cost.sh).
/// Code that stores or reads a value includes <nlohmann/json.hpp>, as any code that makes JSON
/// does.
///
/// @code
/// #include <nlohmann/json.hpp>
///
/// message.dynamic_template_data = {{"name", "Jane"}, {"items", {1, 2}}};
/// (*message.dynamic_template_data)["coupon"] = "WELCOME10";
/// if (message.dynamic_template_data) std::cout << message.dynamic_template_data->dump();
/// @endcode

#include <optional>
#include <string>
#include <type_traits>
#include <utility>

#include <nlohmann/json_fwd.hpp>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/checks/fields.hpp"
#include "sendgrid_backend/exceptions.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

/// nlohmann::json named through template parameters: code using it is then compiled where a
/// value is stored (json.hpp included there), not where this header is read.
template <class...>
struct json_for {
    using type = nlohmann::json;
};

/// Whether `T` is a complete type here (for static_asserts that say which header is missing).
template <class T, class = void>
struct is_complete : std::false_type {};
template <class T>
struct is_complete<T, std::void_t<decltype(sizeof(T))>> : std::true_type {};

/// What TemplateData does with its value, compiled where the value was stored.
struct TemplateDataOps {
    void (*destroy)(nlohmann::json*) noexcept;
    nlohmann::json* (*copy)(const nlohmann::json&);
    bool (*equal)(const nlohmann::json&, const nlohmann::json&) noexcept;
    /// Throws InvalidMessage naming `field` unless the value is a JSON object, UTF-8 throughout
    /// and nested at most max_json_depth levels (deeper, copying and writing it could overflow
    /// the stack).
    void (*check)(const nlohmann::json&, const std::string& field);
    /// The value as JSON text, as nlohmann writes it (after `check`).
    std::string (*dump)(const nlohmann::json&, const std::string& field);
};

template <class Json>
struct TemplateDataOpsFor {
    static void destroy(Json* value) noexcept { delete value; }
    static Json* copy(const Json& value) { return new Json(value); }
    static bool equal(const Json& a, const Json& b) noexcept { return a == b; }
    static void check(const Json& value, const std::string& field) {
        if (!value.is_object()) throw InvalidMessage(field, "must be a JSON object");
        require_utf8_json(value, field);
    }
    static std::string dump(const Json& value, const std::string& field) {
        try {
            return value.dump();
        } catch (const typename Json::exception& error) {
            // `check` leaves nothing that dump() refuses; this is a safety net, never a crash.
            throw InvalidMessage(field, error.what());
        }
    }
};

template <class Json>
inline constexpr TemplateDataOps template_data_ops = {
    &TemplateDataOpsFor<Json>::destroy, &TemplateDataOpsFor<Json>::copy,
    &TemplateDataOpsFor<Json>::equal, &TemplateDataOpsFor<Json>::check,
    &TemplateDataOpsFor<Json>::dump};

struct TemplateDataAccess;

}  // namespace detail

/// One nlohmann::json value or none; copying copies the value. Assign a json (or anything a
/// json is made from), read it with `*` and `->`, test it with `if`, empty it with `reset()`.
class TemplateData {
    template <class Value>
    using if_value = std::enable_if_t<
        std::conjunction_v<std::negation<std::is_same<std::decay_t<Value>, TemplateData>>,
                           std::negation<std::is_same<std::decay_t<Value>, std::nullopt_t>>,
                           std::is_constructible<typename detail::json_for<Value>::type, Value>>>;

  public:
    TemplateData() noexcept = default;
    TemplateData(std::nullopt_t) noexcept {}  // NOLINT(google-explicit-constructor): as optional
    /// Holds `value`: a json or anything a json is made from. No default type here, unlike
    /// assignment: `data = {{"name", "Jane"}}` must make the object, not go through this
    /// constructor with the pair as the one element (an array).
    template <class Value, class = if_value<Value>>
    TemplateData(Value&& value) {  // NOLINT(google-explicit-constructor): as optional
        emplace(std::forward<Value>(value));
    }
    TemplateData(const TemplateData& other)
        : value_(other.value_ != nullptr ? other.ops_->copy(*other.value_) : nullptr),
          ops_(other.ops_) {}
    TemplateData(TemplateData&& other) noexcept
        : value_(std::exchange(other.value_, nullptr)), ops_(other.ops_) {}
    TemplateData& operator=(const TemplateData& other) {
        if (this != &other) TemplateData(other).swap(*this);
        return *this;
    }
    TemplateData& operator=(TemplateData&& other) noexcept {
        TemplateData(std::move(other)).swap(*this);
        return *this;
    }
    TemplateData& operator=(std::nullopt_t) noexcept {
        reset();
        return *this;
    }
    /// Holds `value`; braces make a json (`data = {{"name", "Jane"}}`).
    template <class Value = nlohmann::json, class = if_value<Value>>
    TemplateData& operator=(Value&& value) {
        emplace(std::forward<Value>(value));
        return *this;
    }
    ~TemplateData() { reset(); }

    /// Holds a json made from `args`; returns it.
    template <class... Args>
    typename detail::json_for<Args...>::type& emplace(Args&&... args) {
        using Json = typename detail::json_for<Args...>::type;
        static_assert(detail::is_complete<Json>::value,
                      "dynamic_template_data holds an nlohmann::json: include <nlohmann/json.hpp>");
        Json* made = new Json(std::forward<Args>(args)...);
        reset();
        value_ = made;
        ops_ = &detail::template_data_ops<Json>;
        return *made;
    }

    void reset() noexcept {
        if (value_ != nullptr) ops_->destroy(std::exchange(value_, nullptr));
    }
    void swap(TemplateData& other) noexcept {
        std::swap(value_, other.value_);
        std::swap(ops_, other.ops_);
    }

    bool has_value() const noexcept { return value_ != nullptr; }
    explicit operator bool() const noexcept { return value_ != nullptr; }

    /// The value; there must be one.
    nlohmann::json& operator*() noexcept { return *value_; }
    const nlohmann::json& operator*() const noexcept { return *value_; }
    nlohmann::json* operator->() noexcept { return value_; }
    const nlohmann::json* operator->() const noexcept { return value_; }

    /// The value. @throws std::bad_optional_access when there is none.
    nlohmann::json& value() {
        if (value_ == nullptr) throw std::bad_optional_access();
        return *value_;
    }
    const nlohmann::json& value() const {
        if (value_ == nullptr) throw std::bad_optional_access();
        return *value_;
    }

    /// Equal when both are empty or both hold equal values.
    friend bool operator==(const TemplateData& a, const TemplateData& b) noexcept {
        if (a.value_ == nullptr || b.value_ == nullptr) return a.value_ == b.value_;
        return a.ops_->equal(*a.value_, *b.value_);
    }
    friend bool operator!=(const TemplateData& a, const TemplateData& b) noexcept {
        return !(a == b);
    }

  private:
    friend struct detail::TemplateDataAccess;

    nlohmann::json* value_ = nullptr;
    const detail::TemplateDataOps* ops_ = nullptr;  ///< set with value_, kept after reset()
};

namespace detail {

/// What the payload writer does with a message's TemplateData (which must hold a value).
struct TemplateDataAccess {
    static void check(const TemplateData& data, const std::string& field) {
        data.ops_->check(*data.value_, field);
    }
    static std::string dump(const TemplateData& data, const std::string& field) {
        return data.ops_->dump(*data.value_, field);
    }
};

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
