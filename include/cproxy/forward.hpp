// What a forward proxy changes in a message on its way through: the request
// target becomes origin-form, Host names the real origin, hop-by-hop fields are
// dropped (RFC 9110 §7.6.1), and a Via field records the hop. Pure functions
// writing into caller-owned memory; no I/O, no allocation.
#pragma once

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
    // Forward an HTTP/1.0 client's request as HTTP/1.0, so the server answers
    // in a framing the client understands (never chunked). RFC 9110 §2.5 allows
    // this downgrade as a workaround; it is what nginx does for all upstreams.
    bool http10 = false;
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

std::size_t write_response_head(const http::ResponseHead& head, ClientConnection connection,
                                std::string_view via_name, char* out, std::size_t capacity) noexcept;

// The request's own wish about the client connection (RFC 9112 §9.3).
bool client_wants_keep_alive(const http::RequestHead& head) noexcept;
// Whether the upstream connection may carry another request after this response.
bool upstream_allows_reuse(const http::ResponseHead& head) noexcept;
// The Upgrade field value when the request asks to switch protocols (an
// Upgrade field named in Connection, RFC 9110 §7.8); empty otherwise.
std::string_view requested_upgrade(const http::RequestHead& head) noexcept;
// Whether a 101 response says what it switches to: an Upgrade field.
bool response_names_upgrade(const http::ResponseHead& head) noexcept;

}  // namespace cproxy::forward
