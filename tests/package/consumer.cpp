// A program outside the project that uses the installed (or added) package: the core, the curl
// transport and the testing component, end to end over loopback.
#include <sendgrid_backend/redis/client.hpp>
#include <sendgrid_backend/sendgrid_backend.hpp>
#include <sendgrid_backend/testing/fake_server.hpp>
#include <sendgrid_backend/transport/curl.hpp>

#include <cstdio>

int main() {
    namespace sg = sendgrid_backend;
    sg::testing::FakeSendgridServer server;
    const sg::SendgridBackend backend(server.settings());

    int emissions = 0;
    sg::ScopedConnection counted =
        sg::sendgrid_email_sent.connect([&](const sg::SendgridBackend&, const sg::EmailMessage&,
                                            bool fail_flag) { emissions += fail_flag ? 100 : 1; });
    sg::EmailMessage message("Packaged", "It works", "shop@example.com", {"jane@example.com"});
    const bool sent = backend.send_message(message);
    std::printf("sendgrid_backend %s: sent=%d emissions=%d id=%s\n",
                SENDGRID_BACKEND_VERSION_STRING, sent, emissions,
                message.outcome.message_id.c_str());
    // The redis component's header and link dependency are there (no server is needed here).
    const auto redis = sg::RedisOptions::from_url("redis://127.0.0.1:6379/1");
    return sent && emissions == 1 && redis.database == 1 ? 0 : 1;
}
