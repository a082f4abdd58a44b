#include "cproxy/proxy_protocol.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

namespace cproxy::proxy_protocol {

namespace {

constexpr std::string_view v1_prefix = "PROXY ";
constexpr std::size_t v1_max = 107;
constexpr std::string_view v2_signature{"\r\n\r\n\0\r\nQUIT\n", 12};
constexpr std::size_t v2_fixed = 16;

Result fail(const char* why) noexcept { return Result{Status::Error, {}, why}; }

// Whether `bytes` could still become `prefix` once more arrives.
bool could_be(std::string_view bytes, std::string_view prefix) noexcept {
    std::size_t n = std::min(bytes.size(), prefix.size());
    return bytes.substr(0, n) == prefix.substr(0, n);
}

std::string_view next_word(std::string_view& line) noexcept {
    std::size_t space = line.find(' ');
    std::string_view word = line.substr(0, space);
    line.remove_prefix(space == std::string_view::npos ? line.size() : space + 1);
    return word;
}

// Decimal 0..65535 without a sign or leading zeros.
bool parse_port(std::string_view text, std::uint16_t& port) noexcept {
    if (text.empty() || text.size() > 5 || (text.size() > 1 && text[0] == '0')) return false;
    std::uint32_t value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (value > 65535) return false;
    port = static_cast<std::uint16_t>(value);
    return true;
}

// An IP literal of the header's family, as written: TCP6 may carry an
// IPv4-mapped address, which the literal parser hands back as IPv4.
bool parse_ip(std::string_view text, int family, std::uint16_t port, SocketAddress& out) noexcept {
    auto address = parse_ip_literal(text, port);
    bool written_v6 = text.find(':') != std::string_view::npos;
    if (!address || written_v6 != (family == AF_INET6)) return false;
    out = *address;
    return true;
}

// "PROXY TCP4 SRC DST SPORT DPORT\r\n", "PROXY TCP6 ...", or "PROXY UNKNOWN ...".
Result parse_v1(std::string_view bytes) noexcept {
    std::size_t end = bytes.substr(0, v1_max).find("\r\n");
    if (end == std::string_view::npos) {
        if (bytes.size() >= v1_max) return fail("PROXY v1 line longer than 107 bytes");
        if (bytes.find('\n') != std::string_view::npos) return fail("PROXY v1 line not ended by CRLF");
        return Result{Status::Partial, {}};
    }
    std::string_view line = bytes.substr(v1_prefix.size(), end - v1_prefix.size());
    // Printable ASCII only: a NUL would end an address early, a bare LF is
    // a line break without its CR.
    if (std::any_of(line.begin(), line.end(), [](char c) { return c < 0x20 || c > 0x7e; }))
        return fail("PROXY v1 line with a control character");
    Result result{Status::Done, {}};
    result.header.length = end + 2;
    std::string_view protocol = next_word(line);
    if (protocol == "UNKNOWN") return result;
    int family = protocol == "TCP4" ? AF_INET : protocol == "TCP6" ? AF_INET6 : 0;
    if (family == 0) return fail("PROXY v1 protocol is not TCP4, TCP6 or UNKNOWN");
    std::string_view source = next_word(line), destination = next_word(line);
    std::string_view source_port = next_word(line), destination_port = next_word(line);
    std::uint16_t sport = 0, dport = 0;
    if (!line.empty() || !parse_port(source_port, sport) || !parse_port(destination_port, dport))
        return fail("malformed PROXY v1 ports");
    if (!parse_ip(source, family, sport, result.header.source) ||
        !parse_ip(destination, family, dport, result.header.destination))
        return fail("malformed PROXY v1 address");
    result.header.has_addresses = true;
    return result;
}

std::uint16_t big_endian16(const unsigned char* p) noexcept {
    return static_cast<std::uint16_t>(p[0] << 8 | p[1]);
}

// An address from its network-order IP and port bytes.
SocketAddress address_from(int family, const unsigned char* ip, const unsigned char* port) noexcept {
    SocketAddress address;
    if (family == AF_INET) {
        address.storage.v4.sin_family = AF_INET;
        std::memcpy(&address.storage.v4.sin_addr, ip, 4);
        std::memcpy(&address.storage.v4.sin_port, port, 2);
        address.length = sizeof address.storage.v4;
    } else {
        address.storage.v6.sin6_family = AF_INET6;
        std::memcpy(&address.storage.v6.sin6_addr, ip, 16);
        std::memcpy(&address.storage.v6.sin6_port, port, 2);
        address.length = sizeof address.storage.v6;
    }
    return address;
}

Result parse_v2(std::string_view bytes) noexcept {
    if (bytes.size() < v2_fixed) return Result{Status::Partial, {}};
    auto* raw = reinterpret_cast<const unsigned char*>(bytes.data());
    unsigned version = raw[12] >> 4, command = raw[12] & 0x0f;
    unsigned family = raw[13] >> 4, transport = raw[13] & 0x0f;
    std::size_t length = v2_fixed + big_endian16(raw + 14);
    if (version != 2) return fail("PROXY v2 header with another version");
    if (command > 1) return fail("PROXY v2 command neither LOCAL nor PROXY");
    if (length > max_header) return fail("PROXY v2 header longer than 1024 bytes");
    if (bytes.size() < length) return Result{Status::Partial, {}};
    Result result{Status::Done, {}};
    result.header.length = length;
    // LOCAL (a health check), or a family cproxy has no use for: the
    // connection's own addresses stand, the rest of the block is skipped.
    bool tcp = transport == 1 && (family == 1 || family == 2);
    if (command == 0 || !tcp) return result;
    // Source and destination addresses, then source and destination ports.
    std::size_t ip_size = family == 1 ? 4 : 16;
    if (length - v2_fixed < 2 * ip_size + 4) return fail("PROXY v2 address block too short");
    const unsigned char* block = raw + v2_fixed;
    Header& header = result.header;
    header.source = address_from(family == 1 ? AF_INET : AF_INET6, block, block + 2 * ip_size);
    header.destination = address_from(family == 1 ? AF_INET : AF_INET6, block + ip_size, block + 2 * ip_size + 2);
    header.has_addresses = true;
    return result;
}

}  // namespace

Result parse(std::string_view bytes) noexcept {
    if (bytes.empty()) return Result{Status::Partial, {}};
    if (could_be(bytes, v2_signature)) {
        if (bytes.size() < v2_signature.size()) return Result{Status::Partial, {}};
        return parse_v2(bytes);
    }
    if (could_be(bytes, v1_prefix)) {
        if (bytes.size() < v1_prefix.size()) return Result{Status::Partial, {}};
        return parse_v1(bytes);
    }
    return fail("no PROXY protocol header");
}

}  // namespace cproxy::proxy_protocol
