#pragma once

/// @file
/// Forward declarations of the library's public types, for headers that only need the names
/// (signals.hpp declares `sendgrid_email_sent` without pulling in the message or the backend).

#include "sendgrid_backend/detail/abi.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN

class EmailMessage;
class SendgridBackend;
class EventWebhook;
struct WebhookEvent;
class StatusRecorder;
class StatusTracker;
class StatusStore;
class RateLimit;

/// Threading policy: connect, disconnect and send from any thread (the default).
struct ThreadSafe;
/// Threading policy: everything happens on one thread; no locking at all.
struct SingleThreaded;

template <class Signature, class ThreadingPolicy = ThreadSafe>
class BasicSignal;

template <class Sender, class Message, class ThreadingPolicy = ThreadSafe>
class Signal;

SENDGRID_BACKEND_NAMESPACE_END
