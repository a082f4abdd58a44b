// What a forward proxy changes in a message on its way through: the request
// target becomes origin-form, Host names the real origin, hop-by-hop fields are
// dropped (RFC 9110 §7.6.1), and a Via field records the hop. Pure functions
// writing into caller-owned memory; no I/O, no allocation.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "cproxy/http_parser.hpp"

namespace cproxy::forward {

struct HttpUrl {
    std::string_view authority;  // host[:port] as written, for Host
    std::string_view host;       // without brackets for IPv6 literals
    std::uint16_t port = 80;
    std::string_view path;       // from the first '/' or '?', may be empty
};

// Parses an absolute-form `http://authority/path` target (scheme case-insensitive).
// Rejects userinfo, an empty host, port 0 and bad ports.
std::optional<HttpUrl> parse_http_url(std::string_view target) noexcept;

// True if the target is absolute-form with any scheme ("https://…", "ftp://…").
bool has_scheme(std::string_view target) noexcept;

// Whether the request tells the server who the client is: off (the default:
// a forward proxy's clients keep their privacy), X-Forwarded-For, or
// RFC 7239's Forwarded. Earlier hops' values are kept, the client's appended.
enum class ForwardedStyle : std::uint8_t { Off, Xff, Rfc7239 };

struct RequestRewrite {
    std::string_view path;        // origin-form target; empty or starting with '?' gets a '/'
    std::string_view host;        // Host value to send; empty keeps the client's Host fields
    std::string_view via_name;    // pseudonym in Via, e.g. "cproxy"
    // The body framing cproxy validated: the request goes upstream with
    // exactly one framing field written from it (Transfer-Encoding: chunked,
    // or Content-Length), never the client's own, and always as HTTP/1.1
    // (RFC 9110 §6.2), so the upstream connection stays reusable.
    http::Framing framing = {};
    // The client's Upgrade field value, forwarded with "Connection: Upgrade"
    // when the client asked to switch protocols (RFC 9110 §7.8); empty: none.
    std::string_view upgrade = {};
    // Max-Forwards to send instead of the client's (already decremented,
    // RFC 9110 §7.6.2); nullopt keeps the field as it came.
    std::optional<std::uint64_t> max_forwards = std::nullopt;
    ForwardedStyle forwarded = ForwardedStyle::Off;
    std::string_view client_ip = {};  // "192.0.2.1" or "2001:db8::1", for `forwarded`
    // For a parent proxy, the target in absolute-form: "http://" and this
    // authority before the path. Empty: origin-form.
    std::string_view absolute_authority = {};
    // Credentials for a parent proxy, written as the head's last field so
    // that a failover can swap or drop that one line.
    std::string_view proxy_authorization = {};
};

// Writes the head sent upstream; returns its length, or 0 if it does not fit.
std::size_t write_request_head(const http::RequestHead& head, const RequestRewrite& rewrite,
                               char* out, std::size_t capacity) noexcept;

enum class ClientConnection : std::uint8_t {
    Persistent,       // HTTP/1.1 client, connection stays open: nothing to add
    KeepAliveLegacy,  // HTTP/1.0 client that asked for keep-alive
    Close,            // the proxy closes the client connection after this response
    Upgrade,          // a 101 the client asked for: its Upgrade field is passed on
};

struct ResponseRewrite {
    ClientConnection connection = ClientConnection::Persistent;
    // From response_framing: the framing fields are written from it, never
    // copied. Codings are kept, normalised, chunked last; a close-delimited
    // body keeps only its other codings.
    http::Framing framing = {};
    // An HTTP/1.0 client is sent no Transfer-Encoding at all (RFC 9112
    // §6.1): a chunked body reaches it decoded and ended by close.
    bool http10_client = false;
    std::string_view via_name = {};
};

std::size_t write_response_head(const http::ResponseHead& head, const ResponseRewrite& rewrite, char* out,
                                std::size_t capacity) noexcept;

// Which fields a Connection field names (RFC 9110 §7.6.1), found in time
// linear in the number of fields and of tokens: the names are hashed once and
// each token looked up, so a head of thousands of Connection tokens costs no
// more than reading it. Content-Length, Transfer-Encoding and Host are never
// marked: removing them would change framing or routing downstream.
struct ConnectionNamed {
    std::array<bool, http::header_capacity> marked{};
    std::size_t comparisons = 0;  // names compared: the cost the unit tests bound
};
void mark_connection_named(const http::Header* headers, std::size_t count, ConnectionNamed& named) noexcept;

// The request's own wish about the client connection (RFC 9112 §9.3).
bool client_wants_keep_alive(const http::RequestHead& head) noexcept;
// Whether the upstream connection may carry another request after this response.
bool upstream_allows_reuse(const http::ResponseHead& head) noexcept;
// The Upgrade field value when the request asks to switch protocols (an
// Upgrade field named in Connection, RFC 9110 §7.8); empty otherwise.
std::string_view requested_upgrade(const http::RequestHead& head) noexcept;
// Whether a Via field of the request names `pseudonym` as a hop it passed
// (RFC 9110 §7.6.3: "received-protocol received-by [comment]" elements):
// the request has been through this proxy before, a loop.
bool via_names(const http::RequestHead& head, std::string_view pseudonym) noexcept;
// Whether a 101 response says what it switches to: an Upgrade field.
bool response_names_upgrade(const http::ResponseHead& head) noexcept;

}  // namespace cproxy::forward
