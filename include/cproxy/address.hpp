// Socket addresses: parsing `ADDR:PORT` / `[IPv6]:PORT`, formatting, comparing.
#pragma once

#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace cproxy {

// IPv4 or IPv6 only: 28 bytes rather than sockaddr_storage's 128, which
// matters three times over in every session slot.
struct SocketAddress {
    union Storage {
        sockaddr any;
        sockaddr_in v4;
        sockaddr_in6 v6;
    } storage{};
    socklen_t length = 0;

    const sockaddr* get() const noexcept { return &storage.any; }
    sockaddr* get() noexcept { return &storage.any; }
    int family() const noexcept { return storage.any.sa_family; }
    std::uint16_t port() const noexcept;
    void set_port(std::uint16_t port) noexcept;
    bool is_loopback() const noexcept;
    bool is_unspecified() const noexcept;  // 0.0.0.0 or ::
};

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept;

// An IPv4-mapped IPv6 address (::ffff:a.b.c.d) as the IPv4 address it stands
// for; any other address as it is. Addresses are unmapped where they enter
// (accept, IP literals, PROXY headers, name lookups, configured ranges), so
// that an address compares equal to itself in ACLs, loop checks and limits
// whichever way it was written.
SocketAddress unmapped(const SocketAddress& address) noexcept;

// The IP address itself: 4 bytes for IPv4, 16 for IPv6, network order.
std::span<const std::uint8_t> ip_bytes(const SocketAddress& address) noexcept;

// The IP alone, "1.2.3.4" or "::1", written into `out` (INET6_ADDRSTRLEN
// bytes); "-" for another family.
std::string_view format_ip(const SocketAddress& address, char* out, std::size_t capacity) noexcept;
// Writes "1.2.3.4:80" or "[::1]:80" into `out` (NUL-terminated); returns its length.
std::size_t format_address(const SocketAddress& address, char* out, std::size_t capacity) noexcept;
std::string to_string(const SocketAddress& address);

// Host and port split from "host:port" or "[v6]:port"; host keeps no brackets.
struct HostPort {
    std::string_view host;
    std::uint16_t port = 0;
};
// `default_port` of 0 means the port is required. Port 0 is returned as given;
// callers that need a real destination reject it.
std::optional<HostPort> split_host_port(std::string_view text, std::uint16_t default_port = 0) noexcept;

// An IPv4 or IPv6 literal (no brackets) with a port, or nullopt if `host` is a name.
std::optional<SocketAddress> parse_ip_literal(std::string_view host, std::uint16_t port) noexcept;

}  // namespace cproxy
