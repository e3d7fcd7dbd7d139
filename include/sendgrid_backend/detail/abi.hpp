#pragma once

/// @file
/// The ABI namespace, opened and closed by one macro pair, so that moving to the next ABI
/// version (v0 → v1) is a one-line change here (nlohmann/json's NLOHMANN_JSON_NAMESPACE_BEGIN).
/// Two programs built against different ABI versions then fail to link instead of misbehaving.

#define SENDGRID_BACKEND_ABI_NAMESPACE v0

#define SENDGRID_BACKEND_NAMESPACE_BEGIN \
    namespace sendgrid_backend {         \
    inline namespace SENDGRID_BACKEND_ABI_NAMESPACE {

#define SENDGRID_BACKEND_NAMESPACE_END \
    }                                  \
    }
