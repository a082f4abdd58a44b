// The PROXY protocol header (HAProxy's proxy-protocol.txt, versions 1 and 2)
// that a load balancer in front of cproxy sends before the client's bytes: who
// the client really is. Pure parsing over the bytes received so far, so it is
// unit-tested and fuzzed apart from the sockets.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "cproxy/address.hpp"

namespace cproxy::proxy_protocol {

// Longest header accepted: a version 1 line is at most 107 bytes; a version 2
// header here at most 16 + 1008 (addresses and TLVs), so that it fits in a
// head buffer. Longer ones are refused.
inline constexpr std::size_t max_header = 1024;

enum class Status : std::uint8_t { Partial, Done, Error };

struct Header {
    std::size_t length = 0;  // bytes to consume before the client's own
    // False for a version 2 LOCAL header (the balancer's health check), a
    // version 1 UNKNOWN one, or an address family other than TCP over IPv4
    // or IPv6: the connection's own addresses stand.
    bool has_addresses = false;
    SocketAddress source;       // the client
    SocketAddress destination;  // the address the client connected to
};

struct Result {
    Status status;
    Header header;
    const char* error = nullptr;  // why, when status is Error
};

// Looks at the start of a connection's bytes. Partial until a whole header,
// or enough to know there is none, has arrived.
Result parse(std::string_view bytes) noexcept;

}  // namespace cproxy::proxy_protocol
