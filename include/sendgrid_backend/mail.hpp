#pragma once

/// @file
/// The name django-sendgrid-v5 users look for (`sendgrid_backend.mail.SendgridBackend`):
/// `SendgridBackend` lives in backend.hpp, and this include keeps working.

#include "sendgrid_backend/backend.hpp"
