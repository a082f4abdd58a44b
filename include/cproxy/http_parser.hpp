// HTTP/1.x message heads and chunked framing: pure parsing, no I/O, no allocation.
//
// The head parsers are resumable. A session keeps the bytes of the head it is
// reading contiguous at the start of one buffer and calls parse() again each time
// more bytes arrive, with the same start and a longer length. The parser keeps
// only its state and how far it has validated, so a parser costs a few bytes per
// session; header views are produced by one cheap pass over the validated head
// into a caller-owned (per-worker) Head, only when the head is complete.
//
//   parse(bytes) ──► Partial   (need more bytes; nothing to do yet)
//                ├─► Done      (head valid; `out` filled; out.length bytes used)
//                └─► Error     (error_status(): 400, 414, 431 or 505 for requests,
//                               502 for responses; the message must not be relayed)
//
// Line endings must be CRLF: a bare LF or bare CR anywhere in a head is an error
// (RFC 9112 §2.2 allows rejecting them; a proxy that accepts them invites smuggling).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cproxy::http {

// Room for header fields in a parsed head: the most `max_headers` may allow.
inline constexpr std::size_t header_capacity = 256;
inline constexpr std::uint16_t default_max_headers = 100;
inline constexpr std::size_t max_request_line = 8192;

struct Header {
    std::string_view name;
    std::string_view value;  // leading and trailing whitespace removed
};

enum class ParseStatus : std::uint8_t { Done, Partial, Error };

struct RequestHead {
    std::string_view method;
    std::string_view target;
    int version_minor = 1;  // 0 for HTTP/1.0; 1 for HTTP/1.1 and any later 1.x
    std::array<Header, header_capacity> headers;
    std::size_t header_count = 0;
    std::size_t length = 0;  // bytes of the head, final CRLF included
};

struct ResponseHead {
    int status = 0;
    std::string_view reason;
    int version_minor = 1;
    std::array<Header, header_capacity> headers;
    std::size_t header_count = 0;
    std::size_t length = 0;
};

class RequestParser {
public:
    // max_head_bytes bounds the whole head and max_fields its field lines (431
    // beyond either, max_fields at most header_capacity); the request line
    // alone is bounded by max_request_line (414 beyond it).
    explicit RequestParser(std::uint32_t max_head_bytes = 16384,
                           std::uint16_t max_fields = default_max_headers) noexcept;
    void reset() noexcept;
    // New limits for the next head; call between heads, with reset().
    void set_limits(std::uint32_t max_head_bytes, std::uint16_t max_fields) noexcept;
    // `input` holds the head from its first byte; each call passes the same
    // start with at least as many bytes as the previous call.
    ParseStatus parse(std::string_view input, RequestHead& out) noexcept;
    int error_status() const noexcept;        // meaningful after Error
    const char* error_reason() const noexcept;  // short text for logs and error bodies

private:
    std::uint32_t max_head_bytes_;
    std::uint32_t scanned_ = 0;
    std::uint16_t field_count_ = 0;
    std::uint16_t max_fields_;
    std::uint8_t state_ = 0;
    std::uint8_t error_ = 0;
};

class ResponseParser {
public:
    explicit ResponseParser(std::uint32_t max_head_bytes = 16384,
                            std::uint16_t max_fields = default_max_headers) noexcept;
    void reset() noexcept;
    ParseStatus parse(std::string_view input, ResponseHead& out) noexcept;
    const char* error_reason() const noexcept;

private:
    std::uint32_t max_head_bytes_;
    std::uint32_t scanned_ = 0;
    std::uint16_t field_count_ = 0;
    std::uint16_t max_fields_;
    std::uint8_t state_ = 0;
    std::uint8_t error_ = 0;
};

// Validates a chunked body as it streams past, without copying it: the proxy
// relays the chunked bytes verbatim and only needs to know where the body ends.
// For a client that cannot read chunked (HTTP/1.0) it decodes in place instead.
class ChunkedDecoder {
public:
    struct Result {
        std::size_t consumed;  // bytes of `input` that belong to the body
        ParseStatus status;    // Done: body ended within `consumed`; Partial: all consumed, more to come
        std::size_t produced;  // decode(): chunk data bytes now at the start of `data`
    };
    void reset() noexcept;
    Result feed(std::string_view input) noexcept;
    // Like feed(), and moves the chunk data of the `size` bytes at `data` to
    // their start: the decoded body, without sizes, extensions or trailers.
    Result decode(char* data, std::size_t size) noexcept;

private:
    Result run(std::string_view input, char* out) noexcept;

    std::uint64_t remaining_ = 0;  // data bytes left in the current chunk
    std::uint32_t line_bytes_ = 0;  // bytes of the current size/trailer line, bounded
    std::uint32_t trailer_bytes_ = 0;
    std::uint8_t state_ = 0;
};

// ---- field helpers (RFC 9110) -------------------------------------------------

// Inline: most calls, matching field names, end at the length.
inline bool iequals(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        auto x = static_cast<unsigned char>(a[i]);
        auto y = static_cast<unsigned char>(b[i]);
        if (x >= 'A' && x <= 'Z') x |= 0x20;
        if (y >= 'A' && y <= 'Z') y |= 0x20;
        if (x != y) return false;
    }
    return true;
}
// True if the comma-separated `list` contains `token` (case-insensitive).
bool list_contains(std::string_view list, std::string_view token) noexcept;
// Strict 1*DIGIT, no sign, no whitespace, no overflow past 2^62.
std::optional<std::uint64_t> parse_content_length(std::string_view value) noexcept;

enum class BodyKind : std::uint8_t { None, Length, Chunked, UntilClose };

struct Framing {
    BodyKind kind = BodyKind::None;
    std::uint64_t length = 0;       // the Content-Length value, when content_length
    bool content_length = false;    // a valid Content-Length was sent (0 included)
    bool transfer_coding = false;   // a valid Transfer-Encoding list was sent...
    bool ends_chunked = false;      // ...whose final coding is chunked
    bool other_codings = false;     // ...with codings other than chunked (gzip, ...)
};

// Request body framing (RFC 9112 §6.3), or the status to refuse it with:
// 400 for Content-Length and Transfer-Encoding together, differing or
// malformed Content-Length values, a final coding other than chunked,
// Transfer-Encoding in HTTP/1.0, or a framing field spelled with '_'; 501 for
// a coding cproxy does not implement before chunked ("gzip, chunked"). A
// request never uses UntilClose.
struct RequestFraming {
    Framing framing;
    std::uint16_t refusal = 0;      // 0: accepted
    const char* reason = "";
};
RequestFraming request_framing(const RequestHead& head) noexcept;
// Response body framing for a response to `request_method`. nullopt means the
// response is malformed (502): both framings, bad lengths, a coding list that
// is empty, not tokens, or has chunked anywhere but once and last. HEAD, 1xx,
// 204 and 304 have no body; for HEAD and 304 the valid framing fields are
// reported (they describe the body a GET would get). A 2xx to CONNECT is not
// handled here.
std::optional<Framing> response_framing(const ResponseHead& head,
                                        std::string_view request_method) noexcept;

}  // namespace cproxy::http
