#pragma once

// Every environment variable Settings::from_env() reads: the settings tests clear them all and
// the settings fuzz harness sets them all.

namespace sendgrid_backend_test {

inline constexpr const char* setting_variables[] = {"SENDGRID_API_KEY",
                                                    "SENDGRID_HOST_URL",
                                                    "SENDGRID_DEBUG",
                                                    "SENDGRID_SANDBOX_MODE",
                                                    "SENDGRID_SANDBOX_MODE_IN_DEBUG",
                                                    "SENDGRID_TRACK_EMAIL_OPENS",
                                                    "SENDGRID_TRACK_CLICKS_HTML",
                                                    "SENDGRID_TRACK_CLICKS_PLAIN",
                                                    "SENDGRID_ECHO_TO_STDOUT",
                                                    "SENDGRID_TIMEOUT",
                                                    "SENDGRID_MAX_IN_FLIGHT"};

}  // namespace sendgrid_backend_test
