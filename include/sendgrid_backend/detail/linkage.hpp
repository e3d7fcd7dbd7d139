#pragma once

/// @file
/// Where the send path is compiled. Header-only by default: its functions are inline, and each
/// unit that sends compiles them again (at -O0 that is most of what including the library
/// costs). With SENDGRID_BACKEND_SEPARATE_COMPILATION defined in every unit of a program, the
/// entry points of the send path (the backend's constructor and send_messages, the settings'
/// from_env and validate, serialize_payload, the libcurl transport's factory) are only declared,
/// so nothing behind them is compiled there; they are compiled once, in the one unit that
/// includes <sendgrid_backend/compiled.hpp> (Boost.Asio's BOOST_ASIO_SEPARATE_COMPILATION).

#if !defined(SENDGRID_BACKEND_SEPARATE_COMPILATION)
#define SENDGRID_BACKEND_COMPILED inline
#define SENDGRID_BACKEND_DEFINE_COMPILED 1
#elif defined(SENDGRID_BACKEND_COMPILING_SOURCE)
#define SENDGRID_BACKEND_COMPILED
#define SENDGRID_BACKEND_DEFINE_COMPILED 1
#else
#define SENDGRID_BACKEND_COMPILED
#define SENDGRID_BACKEND_DEFINE_COMPILED 0
#endif
