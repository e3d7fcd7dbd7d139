// A program outside the project that uses the installed (or added) package.
#include <sendgrid_backend/sendgrid_backend.hpp>

#include <cstdio>

struct Sender {};
struct Message {};

int main() {
    sendgrid_backend::Signal<Sender, Message> signal;
    int calls = 0;
    signal.connect([&](const Sender&, const Message&, bool) { ++calls; });
    signal.send(Sender{}, Message{}, false);
    std::printf("sendgrid_backend %s: %d handler call(s)\n", SENDGRID_BACKEND_VERSION_STRING,
                calls);
    return calls == 1 ? 0 : 1;
}
