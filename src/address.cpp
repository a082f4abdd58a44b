#include "cproxy/address.hpp"

#include <arpa/inet.h>

#include <cstdio>
#include <cstring>

namespace cproxy {

std::uint16_t SocketAddress::port() const noexcept {
    if (family() == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&storage)->sin_port);
    if (family() == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_port);
    return 0;
}

void SocketAddress::set_port(std::uint16_t port) noexcept {
    if (family() == AF_INET) reinterpret_cast<sockaddr_in*>(&storage)->sin_port = htons(port);
    if (family() == AF_INET6) reinterpret_cast<sockaddr_in6*>(&storage)->sin6_port = htons(port);
}

bool SocketAddress::is_loopback() const noexcept {
    if (family() == AF_INET) {
        auto addr = ntohl(reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr);
        return (addr >> 24) == 127;
    }
    if (family() == AF_INET6) {
        const auto& a6 = reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(&a6)) return true;
        if (IN6_IS_ADDR_V4MAPPED(&a6)) return a6.s6_addr[12] == 127;
    }
    return false;
}

bool SocketAddress::is_unspecified() const noexcept {
    if (family() == AF_INET)
        return reinterpret_cast<const sockaddr_in*>(&storage)->sin_addr.s_addr == INADDR_ANY;
    if (family() == AF_INET6)
        return IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6*>(&storage)->sin6_addr);
    return false;
}

SocketAddress unmapped(const SocketAddress& address) noexcept {
    if (address.family() != AF_INET6) return address;
    const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&address.storage);
    if (!IN6_IS_ADDR_V4MAPPED(&v6->sin6_addr)) return address;
    SocketAddress v4;
    auto* in4 = reinterpret_cast<sockaddr_in*>(&v4.storage);
    in4->sin_family = AF_INET;
    in4->sin_port = v6->sin6_port;
    std::memcpy(&in4->sin_addr, v6->sin6_addr.s6_addr + 12, 4);
    v4.length = sizeof(sockaddr_in);
    return v4;
}

std::span<const std::uint8_t> ip_bytes(const SocketAddress& address) noexcept {
    if (address.family() == AF_INET6)
        return {reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(address.get())->sin6_addr),
                16};
    return {reinterpret_cast<const std::uint8_t*>(&reinterpret_cast<const sockaddr_in*>(address.get())->sin_addr), 4};
}

bool operator==(const SocketAddress& a, const SocketAddress& b) noexcept {
    if (a.family() != b.family()) return false;
    if (a.family() == AF_INET) {
        auto* x = reinterpret_cast<const sockaddr_in*>(&a.storage);
        auto* y = reinterpret_cast<const sockaddr_in*>(&b.storage);
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    if (a.family() == AF_INET6) {
        auto* x = reinterpret_cast<const sockaddr_in6*>(&a.storage);
        auto* y = reinterpret_cast<const sockaddr_in6*>(&b.storage);
        return x->sin6_port == y->sin6_port &&
               std::memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    return false;
}

std::string_view format_ip(const SocketAddress& address, char* out, std::size_t capacity) noexcept {
    const void* ip = address.family() == AF_INET ? static_cast<const void*>(&address.storage.v4.sin_addr)
                                                 : static_cast<const void*>(&address.storage.v6.sin6_addr);
    if ((address.family() != AF_INET && address.family() != AF_INET6) ||
        !inet_ntop(address.family(), ip, out, static_cast<socklen_t>(capacity)))
        return "-";
    return out;
}

std::size_t format_address(const SocketAddress& address, char* out, std::size_t capacity) noexcept {
    char host[INET6_ADDRSTRLEN];
    int written = 0;
    if (address.family() == AF_INET) {
        written = std::snprintf(out, capacity, "%s:%u", format_ip(address, host, sizeof host).data(), address.port());
    } else if (address.family() == AF_INET6) {
        written = std::snprintf(out, capacity, "[%s]:%u", format_ip(address, host, sizeof host).data(),
                                address.port());
    } else {
        written = std::snprintf(out, capacity, "-");
    }
    if (written < 0) return 0;
    return static_cast<std::size_t>(written) < capacity ? static_cast<std::size_t>(written)
                                                        : capacity - 1;
}

std::string to_string(const SocketAddress& address) {
    char text[64];
    return std::string(text, format_address(address, text, sizeof text));
}

static std::optional<std::uint16_t> parse_port(std::string_view text) noexcept {
    if (text.empty() || text.size() > 5) return std::nullopt;
    unsigned value = 0;
    for (char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value > 65535) return std::nullopt;
    return static_cast<std::uint16_t>(value);
}

std::optional<HostPort> split_host_port(std::string_view text, std::uint16_t default_port) noexcept {
    HostPort result;
    std::string_view rest;
    if (!text.empty() && text.front() == '[') {
        auto close = text.find(']');
        if (close == std::string_view::npos || close == 1) return std::nullopt;
        result.host = text.substr(1, close - 1);
        rest = text.substr(close + 1);
        if (!rest.empty() && rest.front() != ':') return std::nullopt;
    } else {
        auto colon = text.rfind(':');
        if (colon != std::string_view::npos && text.find(':') != colon) return std::nullopt;
        result.host = text.substr(0, colon);
        rest = colon == std::string_view::npos ? std::string_view{} : text.substr(colon);
        if (result.host.empty()) return std::nullopt;
    }
    if (rest.empty()) {
        if (default_port == 0) return std::nullopt;
        result.port = default_port;
        return result;
    }
    auto port = parse_port(rest.substr(1));
    if (!port) return std::nullopt;
    result.port = *port;
    return result;
}

std::optional<SocketAddress> parse_ip_literal(std::string_view host, std::uint16_t port) noexcept {
    char text[INET6_ADDRSTRLEN];
    if (host.empty() || host.size() >= sizeof text) return std::nullopt;
    std::memcpy(text, host.data(), host.size());
    text[host.size()] = '\0';
    SocketAddress address;
    auto* v4 = reinterpret_cast<sockaddr_in*>(&address.storage);
    if (inet_pton(AF_INET, text, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        address.length = sizeof(sockaddr_in);
        return address;
    }
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&address.storage);
    if (inet_pton(AF_INET6, text, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        address.length = sizeof(sockaddr_in6);
        return unmapped(address);
    }
    return std::nullopt;
}

}  // namespace cproxy
