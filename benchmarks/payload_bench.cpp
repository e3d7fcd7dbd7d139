// build_payload against dump() of the same finished JSON (building should cost at most 2x of
// serializing), and base64 of 1 MB against memcpy of the same bytes (at least 1/6 of its speed).
// "Base64/...": attachments of 1 MB and 20 MB, encoded by ours and by Boost.Beast's base64 (the
// reference, in the same run), beside the whole serialize_payload of a message carrying the
// attachment (what the encoder's share is of).
// "build" times build_payload alone; "build_and_free" also frees each payload before the next
// is built, which is what a sender does (freeing an nlohmann::json of 1000 personalizations
// costs about as much as dumping it).
//
//   payload_bench                                    Google Benchmark table + ratios
//   payload_bench --count build|build_and_free|dump|free_copy NAME N
//                                                    N runs with callgrind collecting only the
//                                                    named work, for exact instruction counts
//                                                    (callgrind_payloads.sh)
#include <sendgrid_backend/detail/text/base64.hpp>
#include <sendgrid_backend/payload.hpp>

#include <boost/beast/core/detail/base64.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <valgrind/callgrind.h>

#include "ratio_reporter.hpp"

namespace {

using sendgrid_backend::EmailMessage;

EmailMessage simple_message() {
    EmailMessage message("Your order has shipped", "Hello Jane, your order is on its way.",
                         "Shop <shop@example.com>",
                         {"Jane Doe <jane@example.com>", "bob@example.com"}, {"cc@example.com"},
                         {"audit@example.com"});
    message.reply_to = {"help@example.com"};
    return message;
}

EmailMessage typical_message() {
    EmailMessage message("Invoice 2026-11", "Please find your invoice attached.",
                         "Billing <billing@example.com>",
                         {"Jane Doe <jane@example.com>", "bob@example.com", "carol@example.org"});
    message.attach_alternative("<p>Please find your <b>invoice</b> attached.</p>", "text/html");
    std::string pdf(100 * 1024, '\0');
    for (std::size_t i = 0; i < pdf.size(); ++i) pdf[i] = static_cast<char>((i * 131) & 0xff);
    message.attach("invoice.pdf", pdf, "application/pdf");
    return message;
}

EmailMessage kitchen_sink_message() {
    EmailMessage message("Kitchen sink", "Plain", "Shop <shop@example.com>",
                         {"Jane <jane@example.com>", "bob@example.com"}, {"cc@example.com"},
                         {"bcc@example.com"});
    message.reply_to = {"help@example.com"};
    message.extra_headers = {{"X-Campaign", "sink"},
                             {"List-Unsubscribe", "<mailto:u@example.com>"}};
    message.attach("a.txt", "hello world", "text/plain");
    message.attach_inline("logo", "logo.png", std::string(2048, 'p'));
    message.attach_alternative("<p>HTML</p>", "text/html");
    message.substitutions = {{"-name-", "Jane"}, {"-city-", "Paris"}};
    message.custom_args = {{"order", "42"}, {"tenant", "acme"}};
    message.categories = {"receipts", "transactional"};
    message.unsubscribe_group = sendgrid_backend::UnsubscribeGroup{5, {5, 6}};
    message.ip_pool_name = "transactional";
    message.send_at = 1800000000;
    message.mail_settings.footer = sendgrid_backend::Footer{true, "footer", "<p>footer</p>"};
    message.tracking_settings.ganalytics =
        sendgrid_backend::GoogleAnalytics{true, "newsletter", "email", "", "", "fall"};
    return message;
}

EmailMessage private_1000_message() {
    EmailMessage message("Our news", "News for you", "News <news@example.com>", {});
    for (int i = 0; i < 1000; ++i) {
        message.to.push_back("Reader " + std::to_string(i) + " <reader" + std::to_string(i) +
                             "@example.com>");
    }
    message.make_private = true;
    return message;
}

const std::map<std::string, EmailMessage>& messages() {
    static const std::map<std::string, EmailMessage> all = {
        {"simple", simple_message()},
        {"typical", typical_message()},
        {"kitchen_sink", kitchen_sink_message()},
        {"private_1000", private_1000_message()},
    };
    return all;
}

void BM_build(benchmark::State& state, const std::string& name) {
    const EmailMessage& message = messages().at(name);
    // Only the build_payload call is timed (manual time); the payload is then freed off the
    // clock, so the heap is in the same state as in BM_build_and_free.
    for (auto _ : state) {
        const auto start = std::chrono::steady_clock::now();
        nlohmann::json payload = sendgrid_backend::build_payload(message);
        const auto stop = std::chrono::steady_clock::now();
        benchmark::DoNotOptimize(payload);
        state.SetIterationTime(std::chrono::duration<double>(stop - start).count());
    }
}

void BM_build_and_free(benchmark::State& state, const std::string& name) {
    const EmailMessage& message = messages().at(name);
    for (auto _ : state) {
        nlohmann::json payload = sendgrid_backend::build_payload(message);
        benchmark::DoNotOptimize(payload);
    }
}

void BM_dump(benchmark::State& state, const std::string& name) {
    const nlohmann::json payload = sendgrid_backend::build_payload(messages().at(name));
    for (auto _ : state) {
        std::string body = payload.dump();
        benchmark::DoNotOptimize(body);
    }
}

/// `megabytes` MB of bytes that do not repeat in short cycles.
const std::string& attachment_bytes(std::size_t megabytes) {
    static std::map<std::size_t, std::string> made;
    std::string& data = made[megabytes];
    if (data.empty()) {
        data.resize(megabytes << 20);
        for (std::size_t i = 0; i < data.size(); ++i)
            data[i] = static_cast<char>((i * 2654435761u) >> 13);
    }
    return data;
}

void BM_base64(benchmark::State& state) {
    const std::string& input = attachment_bytes(1);
    for (auto _ : state) {
        std::string encoded = sendgrid_backend::detail::base64_encode(input);
        benchmark::DoNotOptimize(encoded);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(input.size()));
}

void BM_memcpy(benchmark::State& state) {
    const std::string& input = attachment_bytes(1);
    std::string copy(input.size(), '\0');
    for (auto _ : state) {
        std::memcpy(copy.data(), input.data(), input.size());
        benchmark::DoNotOptimize(copy.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(input.size()));
}

/// Encodes `megabytes` MB per iteration with `encode(input, out)`.
template <class Encode>
void BM_base64_of(benchmark::State& state, std::size_t megabytes, Encode encode) {
    const std::string& input = attachment_bytes(megabytes);
    std::string encoded(sendgrid_backend::detail::base64_encoded_size(input.size()), '\0');
    for (auto _ : state) {
        encode(input, encoded.data());
        benchmark::DoNotOptimize(encoded.data());
        benchmark::ClobberMemory();
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(input.size()));
}

void encode_ours(const std::string& input, char* out) {
    sendgrid_backend::detail::base64_encode_into(input, out);
}

void encode_boost(const std::string& input, char* out) {
    boost::beast::detail::base64::encode(out, input.data(), input.size());
}

/// serialize_payload of a one-line message with one attachment of `megabytes` MB.
void BM_serialize_attachment(benchmark::State& state, std::size_t megabytes) {
    EmailMessage message("Report", "The report is attached.", "Shop <shop@example.com>",
                         {"Jane Doe <jane@example.com>"});
    message.attach("report.bin", attachment_bytes(megabytes), "application/octet-stream");
    for (auto _ : state) {
        std::string body = sendgrid_backend::serialize_payload(message);
        benchmark::DoNotOptimize(body);
    }
    state.SetBytesProcessed(static_cast<int64_t>(state.iterations()) *
                            static_cast<int64_t>(megabytes << 20));
}

int count_mode(const std::string& what, const std::string& name, long iterations) {
    const EmailMessage& message = messages().at(name);
    const nlohmann::json finished = sendgrid_backend::build_payload(message);
    std::size_t sink = finished.dump().size();  // warm up: first-call costs are not per-run
    for (long i = 0; i < iterations; ++i) {
        if (what == "free_copy") {  // the same JSON, copied by nlohmann: what freeing it costs
            auto* copy = new nlohmann::json(finished);
            sink += copy->size();
            CALLGRIND_START_INSTRUMENTATION;
            delete copy;
            CALLGRIND_STOP_INSTRUMENTATION;
            continue;
        }
        if (what == "dump") {
            CALLGRIND_START_INSTRUMENTATION;
            sink += finished.dump().size();
            CALLGRIND_STOP_INSTRUMENTATION;
            continue;
        }
        CALLGRIND_START_INSTRUMENTATION;
        {
            nlohmann::json payload = sendgrid_backend::build_payload(message);
            if (what == "build") CALLGRIND_STOP_INSTRUMENTATION;
            sink += payload.size();
        }  // freed here: counted for build_and_free only
        if (what != "build") CALLGRIND_STOP_INSTRUMENTATION;
    }
    std::printf("%zu\n", sink);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc == 5 && std::string(argv[1]) == "--count") {
        return count_mode(argv[2], argv[3], std::atol(argv[4]));
    }
    for (const char* name : {"simple", "typical", "kitchen_sink", "private_1000"}) {
        benchmark::RegisterBenchmark((std::string("dump/") + name).c_str(), BM_dump, name);
        benchmark::RegisterBenchmark((std::string("build/") + name).c_str(), BM_build, name)
            ->UseManualTime();
        benchmark::RegisterBenchmark((std::string("build_and_free/") + name).c_str(),
                                     BM_build_and_free, name);
    }
    benchmark::RegisterBenchmark("memcpy/1MB", BM_memcpy);
    benchmark::RegisterBenchmark("base64/1MB", BM_base64);
    for (const std::size_t megabytes : {1, 20}) {
        const std::string size = "/" + std::to_string(megabytes) + "MB";
        benchmark::RegisterBenchmark(("Base64/boost_beast" + size).c_str(), [=](auto& state) {
            BM_base64_of(state, megabytes, encode_boost);
        });
        benchmark::RegisterBenchmark(("Base64/ours" + size).c_str(), [=](auto& state) {
            BM_base64_of(state, megabytes, encode_ours);
        });
        benchmark::RegisterBenchmark(("Base64/serialize_payload" + size).c_str(), [=](auto& state) {
            BM_serialize_attachment(state, megabytes);
        });
    }
    return sendgrid_backend_bench::run_with_ratios(argc, argv, [](const std::string& name) {
        // "build/NAME/manual_time" and "build_and_free/NAME" compare with "dump/NAME".
        for (const std::string prefix : {"build/", "build_and_free/"}) {
            if (name.rfind(prefix, 0) != 0) continue;
            const std::string message = name.substr(prefix.size());
            return "dump/" + message.substr(0, message.find('/'));
        }
        if (name == "base64/1MB") return std::string("memcpy/1MB");
        // Ours against Boost.Beast's; the whole payload is not compared.
        if (name.rfind("Base64/ours/", 0) == 0)
            return sendgrid_backend_bench::swap_part(name, "/ours/", "/boost_beast/");
        return std::string();
    });
}
