#include "cproxy/forward.hpp"

#include <cstdio>
#include <cstring>

#include "cproxy/address.hpp"

namespace cproxy::forward {

using http::iequals;
using http::list_contains;

namespace {

// Appends to a fixed buffer; once anything fails to fit, every later append is
// refused too, so callers check once at the end.
class HeadWriter {
public:
    HeadWriter(char* out, std::size_t capacity) noexcept : out_(out), capacity_(capacity) {}
    HeadWriter& operator<<(std::string_view text) noexcept {
        if (text.empty()) return *this;  // may be a null view: memcpy must not see it
        if (failed_ || text.size() > capacity_ - length_) {
            failed_ = true;
            return *this;
        }
        std::memcpy(out_ + length_, text.data(), text.size());
        length_ += text.size();
        return *this;
    }
    HeadWriter& field(std::string_view name, std::string_view value) noexcept {
        return *this << name << ": " << value << "\r\n";
    }
    std::size_t finish() const noexcept { return failed_ ? 0 : length_; }

private:
    char* out_;
    std::size_t capacity_;
    std::size_t length_ = 0;
    bool failed_ = false;
};

// Fields a Connection header may not remove: dropping them would change how
// the message is framed or routed downstream (a smuggling vector).
bool protected_field(std::string_view name) noexcept {
    return iequals(name, "content-length") || iequals(name, "transfer-encoding") ||
           iequals(name, "host");
}

bool named_in_connection(const http::Header* headers, std::size_t count, std::string_view name) noexcept {
    if (protected_field(name)) return false;
    for (std::size_t i = 0; i < count; ++i)
        if (iequals(headers[i].name, "connection") && list_contains(headers[i].value, name))
            return true;
    return false;
}

bool always_hop_by_hop(std::string_view name) noexcept {
    return iequals(name, "connection") || iequals(name, "proxy-connection") ||
           iequals(name, "keep-alive") || iequals(name, "te") || iequals(name, "trailer") ||
           iequals(name, "upgrade");
}

std::string_view version_text(int minor) noexcept { return minor == 0 ? "1.0" : "1.1"; }

}  // namespace

bool has_scheme(std::string_view target) noexcept {
    auto colon = target.find("://");
    if (colon == std::string_view::npos || colon == 0) return false;
    for (std::size_t i = 0; i < colon; ++i) {
        char c = target[i];
        bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        if (!alpha && !(i > 0 && ((c >= '0' && c <= '9') || c == '+' || c == '-' || c == '.')))
            return false;
    }
    return true;
}

std::optional<HttpUrl> parse_http_url(std::string_view target) noexcept {
    constexpr std::string_view scheme = "http://";
    if (target.size() < scheme.size() || !iequals(target.substr(0, scheme.size()), scheme))
        return std::nullopt;
    std::string_view rest = target.substr(scheme.size());
    std::size_t end = rest.find_first_of("/?#");
    HttpUrl url;
    url.authority = rest.substr(0, end);
    url.path = end == std::string_view::npos ? std::string_view{} : rest.substr(end);
    if (!url.path.empty() && url.path.front() == '#') url.path = {};
    if (url.authority.empty() || url.authority.find('@') != std::string_view::npos)
        return std::nullopt;
    auto host_port = split_host_port(url.authority, 80);
    if (!host_port || host_port->port == 0 || host_port->host.empty()) return std::nullopt;
    url.host = host_port->host;
    url.port = host_port->port;
    return url;
}

// X-Forwarded-For or Forwarded: the values of the fields the request brought,
// in order, then the client's own element.
static void write_forwarded(HeadWriter& writer, const http::RequestHead& head, const RequestRewrite& rewrite) noexcept {
    bool xff = rewrite.forwarded == ForwardedStyle::Xff;
    std::string_view name = xff ? "X-Forwarded-For" : "Forwarded";
    writer << name << ": ";
    for (std::size_t i = 0; i < head.header_count; ++i)
        if (iequals(head.headers[i].name, name) && !head.headers[i].value.empty())
            writer << head.headers[i].value << ", ";
    bool ipv6 = rewrite.client_ip.find(':') != std::string_view::npos;
    if (xff) writer << rewrite.client_ip;
    else if (ipv6) writer << "for=\"[" << rewrite.client_ip << "]\"";  // RFC 7239 §6: quoted, bracketed
    else writer << "for=" << rewrite.client_ip;
    writer << "\r\n";
}

std::size_t write_request_head(const http::RequestHead& head, const RequestRewrite& rewrite,
                               char* out, std::size_t capacity) noexcept {
    HeadWriter writer(out, capacity);
    std::string_view forwarded_field = rewrite.forwarded == ForwardedStyle::Xff       ? "x-forwarded-for"
                                       : rewrite.forwarded == ForwardedStyle::Rfc7239 ? "forwarded"
                                                                                      : std::string_view{};
    writer << head.method << " ";
    if (!rewrite.absolute_authority.empty()) writer << "http://" << rewrite.absolute_authority;
    if (rewrite.path.empty() || rewrite.path.front() == '?') writer << "/";
    writer << rewrite.path << (rewrite.http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n");
    if (!rewrite.host.empty()) writer.field("Host", rewrite.host);
    const http::Header* headers = head.headers.data();
    for (std::size_t i = 0; i < head.header_count; ++i) {
        std::string_view name = headers[i].name;
        if (always_hop_by_hop(name) || iequals(name, "proxy-authorization") ||
            (!rewrite.host.empty() && iequals(name, "host")) ||
            (rewrite.max_forwards && iequals(name, "max-forwards")) ||
            (!forwarded_field.empty() && iequals(name, forwarded_field)) ||
            named_in_connection(headers, head.header_count, name))
            continue;
        writer.field(name, headers[i].value);
    }
    if (rewrite.max_forwards) {
        char digits[24];
        int length = std::snprintf(digits, sizeof digits, "%llu",
                                   static_cast<unsigned long long>(*rewrite.max_forwards));
        writer.field("Max-Forwards", std::string_view(digits, static_cast<std::size_t>(length)));
    }
    if (!rewrite.upgrade.empty()) writer << "Connection: Upgrade\r\n" << "Upgrade: " << rewrite.upgrade << "\r\n";
    if (!forwarded_field.empty()) write_forwarded(writer, head, rewrite);
    if (!rewrite.via_name.empty())
        writer << "Via: " << version_text(head.version_minor) << " " << rewrite.via_name << "\r\n";
    if (!rewrite.proxy_authorization.empty()) writer.field("Proxy-Authorization", rewrite.proxy_authorization);
    writer << "\r\n";
    return writer.finish();
}

std::size_t write_response_head(const http::ResponseHead& head, ClientConnection connection,
                                std::string_view via_name, char* out, std::size_t capacity) noexcept {
    HeadWriter writer(out, capacity);
    char status[4] = {static_cast<char>('0' + head.status / 100),
                      static_cast<char>('0' + head.status / 10 % 10),
                      static_cast<char>('0' + head.status % 10), '\0'};
    writer << "HTTP/1.1 " << std::string_view(status, 3) << " " << head.reason << "\r\n";
    const http::Header* headers = head.headers.data();
    for (std::size_t i = 0; i < head.header_count; ++i) {
        std::string_view name = headers[i].name;
        bool passed_upgrade = connection == ClientConnection::Upgrade && iequals(name, "upgrade");
        if (!passed_upgrade &&
            (always_hop_by_hop(name) || named_in_connection(headers, head.header_count, name)))
            continue;
        writer.field(name, headers[i].value);
    }
    if (connection == ClientConnection::Upgrade) writer << "Connection: Upgrade\r\n";
    if (connection == ClientConnection::KeepAliveLegacy) writer << "Connection: keep-alive\r\n";
    if (connection == ClientConnection::Close) writer << "Connection: close\r\n";
    if (!via_name.empty()) writer << "Via: " << version_text(head.version_minor) << " " << via_name << "\r\n";
    writer << "\r\n";
    return writer.finish();
}

static bool connection_has(const http::Header* headers, std::size_t count, std::string_view token) noexcept {
    for (std::size_t i = 0; i < count; ++i)
        if ((iequals(headers[i].name, "connection") || iequals(headers[i].name, "proxy-connection")) &&
            list_contains(headers[i].value, token))
            return true;
    return false;
}

bool client_wants_keep_alive(const http::RequestHead& head) noexcept {
    if (connection_has(head.headers.data(), head.header_count, "close")) return false;
    if (head.version_minor >= 1) return true;
    return connection_has(head.headers.data(), head.header_count, "keep-alive");
}

std::string_view requested_upgrade(const http::RequestHead& head) noexcept {
    if (!connection_has(head.headers.data(), head.header_count, "upgrade")) return {};
    for (std::size_t i = 0; i < head.header_count; ++i)
        if (iequals(head.headers[i].name, "upgrade")) return head.headers[i].value;
    return {};
}

bool response_names_upgrade(const http::ResponseHead& head) noexcept {
    for (std::size_t i = 0; i < head.header_count; ++i)
        if (iequals(head.headers[i].name, "upgrade") && !head.headers[i].value.empty()) return true;
    return false;
}

bool upstream_allows_reuse(const http::ResponseHead& head) noexcept {
    if (connection_has(head.headers.data(), head.header_count, "close")) return false;
    if (head.version_minor >= 1) return true;
    return connection_has(head.headers.data(), head.header_count, "keep-alive");
}

}  // namespace cproxy::forward
