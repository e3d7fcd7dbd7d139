#pragma once

/// @file
/// The send path compiled once, for programs built with SENDGRID_BACKEND_SEPARATE_COMPILATION
/// (see detail/linkage.hpp). Include it in exactly one unit, before any other header of the
/// library, and transport/curl.hpp after it when libcurl is the transport:
///
/// @code
/// // sendgrid_backend.cpp, compiled with -DSENDGRID_BACKEND_SEPARATE_COMPILATION like the rest
/// #include <sendgrid_backend/compiled.hpp>
/// #include <sendgrid_backend/transport/curl.hpp>
/// @endcode

#if !defined(SENDGRID_BACKEND_SEPARATE_COMPILATION)
#error "compiled.hpp is for builds that define SENDGRID_BACKEND_SEPARATE_COMPILATION in every unit"
#endif
#if defined(SENDGRID_BACKEND_NAMESPACE_BEGIN)
#error "include <sendgrid_backend/compiled.hpp> before any other sendgrid_backend header"
#endif

#define SENDGRID_BACKEND_COMPILING_SOURCE
#include "sendgrid_backend/sendgrid_backend.hpp"
