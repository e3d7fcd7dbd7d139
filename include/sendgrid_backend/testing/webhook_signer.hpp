#pragma once

/// @file
/// `testing::WebhookSigner` plays SendGrid in tests of a webhook receiver: it makes a fresh EC
/// key and signs bodies the way SendGrid does (ECDSA over SHA-256 of timestamp + body, DER,
/// base64). Link `sendgrid_backend::webhook` (OpenSSL).

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <cstdint>
#include <memory>
#include <stdexcept>
#include <string>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/text/base64.hpp"
#include "sendgrid_backend/transport.hpp"
#include "sendgrid_backend/webhook.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace testing {

/// A fresh key pair on `curve` (SendGrid uses P-256) that signs like SendGrid.
class WebhookSigner {
  public:
    explicit WebhookSigner(const char* curve = "P-256") : key_(EVP_EC_gen(curve), EVP_PKEY_free) {
        if (!key_) throw TestingSetupError("WebhookSigner: cannot make an EC key on that curve");
    }

    /// The public key as the SendGrid dashboard shows it: base64 of DER SubjectPublicKeyInfo.
    std::string public_key_base64() const {
        unsigned char* der = nullptr;
        const int size = i2d_PUBKEY(key_.get(), &der);
        std::string bytes(reinterpret_cast<char*>(der), static_cast<std::size_t>(size));
        OPENSSL_free(der);
        return sendgrid_backend::detail::base64_encode(bytes);
    }

    /// The same key as PEM.
    std::string public_key_pem() const {
        std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), BIO_free);
        PEM_write_bio_PUBKEY(bio.get(), key_.get());
        char* data = nullptr;
        const long size = BIO_get_mem_data(bio.get(), &data);
        return std::string(data, static_cast<std::size_t>(size));
    }

    /// base64(DER(ECDSA-SHA256(timestamp + body))).
    std::string sign(const std::string& body, const std::string& timestamp) const {
        std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> context(EVP_MD_CTX_new(),
                                                                        EVP_MD_CTX_free);
        EVP_DigestSignInit(context.get(), nullptr, EVP_sha256(), nullptr, key_.get());
        const std::string signed_bytes = timestamp + body;
        std::size_t size = 0;
        EVP_DigestSign(context.get(), nullptr, &size,
                       reinterpret_cast<const unsigned char*>(signed_bytes.data()),
                       signed_bytes.size());
        std::string signature(size, '\0');
        EVP_DigestSign(context.get(), reinterpret_cast<unsigned char*>(signature.data()), &size,
                       reinterpret_cast<const unsigned char*>(signed_bytes.data()),
                       signed_bytes.size());
        signature.resize(size);
        return sendgrid_backend::detail::base64_encode(signature);
    }

    /// The two headers SendGrid would send with `body` at `timestamp` (unix seconds).
    HttpHeaders headers(const std::string& body, std::int64_t timestamp) const {
        const std::string stamp = std::to_string(timestamp);
        return {{std::string(webhook_signature_header), sign(body, stamp)},
                {std::string(webhook_timestamp_header), stamp}};
    }

  private:
    std::unique_ptr<EVP_PKEY, decltype(&EVP_PKEY_free)> key_;
};

}  // namespace testing
SENDGRID_BACKEND_NAMESPACE_END
