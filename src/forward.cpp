#include "cproxy/forward.hpp"

#include <algorithm>
#include <charconv>
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

// Framing fields are written from the validated framing, never copied.
bool framing_field(std::string_view name) noexcept {
    return iequals(name, "content-length") || iequals(name, "transfer-encoding");
}

std::uint32_t name_hash(std::string_view name) noexcept {
    std::uint32_t hash = 2166136261u;  // FNV-1a over the lower-cased name
    for (char ch : name) {
        auto c = static_cast<unsigned char>(ch);
        if (c >= 'A' && c <= 'Z') c |= 0x20;
        hash = (hash ^ c) * 16777619u;
    }
    return hash;
}

// Calls visit with each non-empty element of a comma-separated list, without
// the blanks around it.
template <class Visit>
void for_each_item(std::string_view list, Visit&& visit) {
    while (!list.empty()) {
        std::size_t comma = list.find(',');
        std::string_view item = list.substr(0, comma);
        list = comma == std::string_view::npos ? std::string_view{} : list.substr(comma + 1);
        while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
        while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
        if (!item.empty()) visit(item);
    }
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

void mark_connection_named(const http::Header* headers, std::size_t count, ConnectionNamed& named) noexcept {
    // Open addressing over at most header_capacity names, at most half full;
    // a slot holds 1 + the index of the first field of its name, and
    // same_name chains the later fields of that name, in order.
    constexpr std::size_t slots = 2 * http::header_capacity;
    constexpr std::uint16_t none = 0xffff;
    count = std::min(count, http::header_capacity);
    // Most heads have no Connection field, or name in it only fields that are
    // dropped anyway ("keep-alive"): then no table is built.
    bool names_other_fields = false;
    for (std::size_t i = 0; i < count && !names_other_fields; ++i) {
        if (!iequals(headers[i].name, "connection")) continue;
        for_each_item(headers[i].value, [&](std::string_view token) noexcept {
            names_other_fields |= !protected_field(token) && !always_hop_by_hop(token);
        });
    }
    if (!names_other_fields) return;
    std::array<std::uint16_t, slots> table;
    std::array<std::uint16_t, http::header_capacity> same_name;
    table.fill(0);
    auto find = [&](std::string_view name) noexcept {
        std::size_t slot = name_hash(name) & (slots - 1);
        while (table[slot] != 0) {
            ++named.comparisons;
            if (iequals(headers[table[slot] - 1u].name, name)) break;
            slot = (slot + 1) & (slots - 1);
        }
        return slot;
    };
    std::array<std::uint16_t, http::header_capacity> last_of_name;  // chain tails, by first field
    for (std::size_t i = 0; i < count; ++i) {
        same_name[i] = none;
        std::size_t slot = find(headers[i].name);
        if (table[slot] == 0) {
            table[slot] = static_cast<std::uint16_t>(i + 1);
            last_of_name[i] = static_cast<std::uint16_t>(i);
            continue;
        }
        std::size_t first = table[slot] - 1u;
        same_name[last_of_name[first]] = static_cast<std::uint16_t>(i);
        last_of_name[first] = static_cast<std::uint16_t>(i);
    }
    for (std::size_t i = 0; i < count; ++i) {
        if (!iequals(headers[i].name, "connection")) continue;
        for_each_item(headers[i].value, [&](std::string_view token) noexcept {
            if (protected_field(token)) return;
            std::size_t slot = find(token);
            // Marked already: its whole chain is, so a repeated token costs one lookup.
            if (table[slot] == 0 || named.marked[table[slot] - 1u]) return;
            for (std::size_t field = table[slot] - 1u; field != none; field = same_name[field])
                named.marked[field] = true;
        });
    }
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

static void write_number_field(HeadWriter& writer, std::string_view name, std::uint64_t value) noexcept {
    char digits[24];
    auto end = std::to_chars(digits, digits + sizeof digits, value).ptr;
    writer.field(name, std::string_view(digits, static_cast<std::size_t>(end - digits)));
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
    writer << rewrite.path << " HTTP/1.1\r\n";
    if (!rewrite.host.empty()) writer.field("Host", rewrite.host);
    const http::Header* headers = head.headers.data();
    ConnectionNamed named;
    mark_connection_named(headers, head.header_count, named);
    for (std::size_t i = 0; i < head.header_count; ++i) {
        std::string_view name = headers[i].name;
        if (named.marked[i] || always_hop_by_hop(name) || framing_field(name) ||
            iequals(name, "proxy-authorization") || (!rewrite.host.empty() && iequals(name, "host")) ||
            (rewrite.max_forwards && iequals(name, "max-forwards")) ||
            (!forwarded_field.empty() && iequals(name, forwarded_field)))
            continue;
        writer.field(name, headers[i].value);
    }
    if (rewrite.framing.kind == http::BodyKind::Chunked) writer << "Transfer-Encoding: chunked\r\n";
    else if (rewrite.framing.content_length) write_number_field(writer, "Content-Length", rewrite.framing.length);
    if (rewrite.max_forwards) write_number_field(writer, "Max-Forwards", *rewrite.max_forwards);
    if (!rewrite.upgrade.empty()) writer << "Connection: Upgrade\r\n" << "Upgrade: " << rewrite.upgrade << "\r\n";
    if (!forwarded_field.empty()) write_forwarded(writer, head, rewrite);
    if (!rewrite.via_name.empty())
        writer << "Via: " << version_text(head.version_minor) << " " << rewrite.via_name << "\r\n";
    if (!rewrite.proxy_authorization.empty()) writer.field("Proxy-Authorization", rewrite.proxy_authorization);
    writer << "\r\n";
    return writer.finish();
}

// The response's codings, normalised: empty elements dropped, ", " between,
// chunked (validated to be last) written only when the body stays chunked.
static void write_transfer_coding(HeadWriter& writer, const http::ResponseHead& head, bool keep_chunked) noexcept {
    bool first = true;
    auto item = [&](std::string_view coding) noexcept {
        writer << (first ? "Transfer-Encoding: " : ", ") << coding;
        first = false;
    };
    for (std::size_t i = 0; i < head.header_count; ++i) {
        if (!iequals(head.headers[i].name, "transfer-encoding")) continue;
        for_each_item(head.headers[i].value, [&](std::string_view coding) noexcept {
            if (!iequals(coding, "chunked")) item(coding);
        });
    }
    if (keep_chunked) item("chunked");
    if (!first) writer << "\r\n";
}

std::size_t write_response_head(const http::ResponseHead& head, const ResponseRewrite& rewrite, char* out,
                                std::size_t capacity) noexcept {
    HeadWriter writer(out, capacity);
    char status[4] = {static_cast<char>('0' + head.status / 100),
                      static_cast<char>('0' + head.status / 10 % 10),
                      static_cast<char>('0' + head.status % 10), '\0'};
    writer << "HTTP/1.1 " << std::string_view(status, 3) << " " << head.reason << "\r\n";
    const http::Header* headers = head.headers.data();
    ConnectionNamed named;
    mark_connection_named(headers, head.header_count, named);
    const ClientConnection connection = rewrite.connection;
    for (std::size_t i = 0; i < head.header_count; ++i) {
        std::string_view name = headers[i].name;
        bool passed_upgrade = connection == ClientConnection::Upgrade && iequals(name, "upgrade");
        if (framing_field(name) || (!passed_upgrade && (always_hop_by_hop(name) || named.marked[i])))
            continue;
        writer.field(name, headers[i].value);
    }
    const http::Framing& framing = rewrite.framing;
    if (framing.transfer_coding) {
        bool keep_chunked = framing.ends_chunked && framing.kind != http::BodyKind::UntilClose;
        if (!rewrite.http10_client) write_transfer_coding(writer, head, keep_chunked);
    } else if (framing.content_length) {
        write_number_field(writer, "Content-Length", framing.length);
    }
    if (connection == ClientConnection::Upgrade) writer << "Connection: Upgrade\r\n";
    if (connection == ClientConnection::KeepAliveLegacy) writer << "Connection: keep-alive\r\n";
    if (connection == ClientConnection::Close) writer << "Connection: close\r\n";
    if (!rewrite.via_name.empty())
        writer << "Via: " << version_text(head.version_minor) << " " << rewrite.via_name << "\r\n";
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

bool via_names(const http::RequestHead& head, std::string_view pseudonym) noexcept {
    for (std::size_t i = 0; i < head.header_count; ++i) {
        if (!iequals(head.headers[i].name, "via")) continue;
        std::string_view value = head.headers[i].value;
        // Elements end at commas outside comments: "(a, b)" is one comment.
        std::size_t begin = 0;
        int depth = 0;
        for (std::size_t at = 0; at <= value.size(); ++at) {
            char c = at < value.size() ? value[at] : ',';
            if (c == '(') ++depth;
            if (c == ')' && depth > 0) --depth;
            if (c != ',' || depth > 0) continue;
            std::string_view element = value.substr(begin, at - begin);
            begin = at + 1;
            auto blank = [](char ch) { return ch == ' ' || ch == '\t'; };
            std::size_t start = 0;
            while (start < element.size() && blank(element[start])) ++start;
            std::size_t protocol_end = start;
            while (protocol_end < element.size() && !blank(element[protocol_end])) ++protocol_end;
            std::size_t name_start = protocol_end;
            while (name_start < element.size() && blank(element[name_start])) ++name_start;
            std::size_t name_end = name_start;
            while (name_end < element.size() && !blank(element[name_end])) ++name_end;
            if (name_end > name_start && iequals(element.substr(name_start, name_end - name_start), pseudonym))
                return true;
        }
    }
    return false;
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
