#pragma once

/// @file
/// Mime types guessed from attachment file names, and names made up for unnamed attachments.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "sendgrid_backend/detail/abi.hpp"
#include "sendgrid_backend/detail/attributes.hpp"
#include "sendgrid_backend/detail/text/strings.hpp"

SENDGRID_BACKEND_NAMESPACE_BEGIN
namespace detail {

struct MimeTypeEntry {
    std::string_view extension;  // lower case, without the dot
    std::string_view mimetype;
};

// The types mail attachments commonly have; the first entry of a type is its usual extension.
inline constexpr MimeTypeEntry mime_types[] = {
    {"txt", "text/plain"},
    {"html", "text/html"},
    {"htm", "text/html"},
    {"css", "text/css"},
    {"csv", "text/csv"},
    {"ics", "text/calendar"},
    {"vcf", "text/vcard"},
    {"xml", "application/xml"},
    {"json", "application/json"},
    {"pdf", "application/pdf"},
    {"zip", "application/zip"},
    {"gz", "application/gzip"},
    {"rtf", "application/rtf"},
    {"js", "text/javascript"},
    {"md", "text/markdown"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"svg", "image/svg+xml"},
    {"webp", "image/webp"},
    {"bmp", "image/bmp"},
    {"ico", "image/vnd.microsoft.icon"},
    {"tif", "image/tiff"},
    {"tiff", "image/tiff"},
    {"mp3", "audio/mpeg"},
    {"wav", "audio/wav"},
    {"ogg", "audio/ogg"},
    {"mp4", "video/mp4"},
    {"mov", "video/quicktime"},
    {"webm", "video/webm"},
    {"eml", "message/rfc822"},
    {"doc", "application/msword"},
    {"docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"},
    {"xls", "application/vnd.ms-excel"},
    {"xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"},
    {"ppt", "application/vnd.ms-powerpoint"},
    {"pptx", "application/vnd.openxmlformats-officedocument.presentationml.presentation"},
    {"odt", "application/vnd.oasis.opendocument.text"},
    {"bin", "application/octet-stream"},
};

inline constexpr std::string_view default_mimetype = "application/octet-stream";

/// The MIME type for a file name by its extension (case-insensitive); octet-stream if unknown.
inline std::string_view guess_mimetype(std::string_view filename) noexcept {
    const auto dot = filename.rfind('.');
    if (dot == std::string_view::npos || dot + 1 == filename.size()) return default_mimetype;
    const std::string_view extension = filename.substr(dot + 1);
    for (const auto& entry : mime_types) {
        if (iequals(entry.extension, extension)) return entry.mimetype;
    }
    return default_mimetype;
}

/// The usual extension with its dot (".png") for a MIME type, or ".bin" if unknown.
inline std::string guess_extension(std::string_view mimetype) {
    const std::string_view base = mimetype.substr(0, mimetype.find(';'));
    for (const auto& entry : mime_types) {
        if (iequals(entry.mimetype, trim(base))) return "." + std::string(entry.extension);
    }
    return ".bin";
}

/// 32 hex digits derived from `bytes` (two FNV-1a 64-bit hashes): a stable name for an unnamed
/// part, so that the same message always builds the same payload.
SENDGRID_BACKEND_DETAIL_WRAPS_ON_PURPOSE
inline std::string content_hex_id(std::string_view bytes, std::size_t salt) {
    std::uint64_t h1 = 0xcbf29ce484222325ULL ^ salt;
    std::uint64_t h2 = 0x84222325cbf29ce4ULL ^ (salt * 0x9e3779b97f4a7c15ULL);
    for (char c : bytes) {
        const auto byte = static_cast<unsigned char>(c);
        h1 = (h1 ^ byte) * 0x100000001b3ULL;
        h2 = (h2 ^ byte) * 0x100000001b3ULL;
        h2 ^= h2 >> 29;
    }
    static constexpr char digits[] = "0123456789abcdef";
    std::string hex(32, '0');
    for (int i = 0; i < 16; ++i) {
        hex[static_cast<std::size_t>(i)] = digits[(h1 >> (60 - 4 * i)) & 0xf];
        hex[static_cast<std::size_t>(16 + i)] = digits[(h2 >> (60 - 4 * i)) & 0xf];
    }
    return hex;
}

}  // namespace detail
SENDGRID_BACKEND_NAMESPACE_END
