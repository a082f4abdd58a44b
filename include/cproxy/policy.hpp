// Who may use the proxy and for what: allow/deny rules on the client address,
// Basic proxy authentication and the CONNECT port list. Pure functions over the
// request's fields; no I/O.
#pragma once

#include <bitset>
#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cproxy/address.hpp"

namespace cproxy {

// Decodes standard base64 (RFC 4648 §4, padding required) into `out`; returns
// the decoded length, or nullopt on malformed input or insufficient capacity.
std::optional<std::size_t> base64_decode(std::string_view in, char* out, std::size_t capacity) noexcept;
// Standard base64 with padding; for credentials cproxy itself sends.
std::string base64_encode(std::string_view in);

class Authenticator {
public:
    explicit Authenticator(std::vector<std::string> user_pass_pairs);
    bool required() const noexcept { return !credentials_.empty(); }
    // Checks a Proxy-Authorization field value. Every configured pair is
    // compared in full, so the time taken does not reveal how close a guess was.
    // On success returns the user name, a view into `scratch`.
    std::optional<std::string_view> check(std::string_view field_value, char* scratch,
                                          std::size_t scratch_size) const noexcept;

private:
    std::vector<std::string> credentials_;
};

// An address block: "10.0.0.0/8", "2001:db8::/32", or a bare address (one host).
struct AddressRange {
    int family = AF_UNSPEC;
    unsigned char bytes[16]{};  // network byte order; 4 used for IPv4
    unsigned prefix = 0;
    bool contains(const SocketAddress& address) const noexcept;
};

struct AccessRule {
    bool allow;
    AddressRange range;
};

// "CIDR[,CIDR...]" or "all" (both families); nullopt if any item is malformed.
std::optional<std::vector<AddressRange>> parse_address_ranges(std::string_view text);

bool address_in(const std::vector<AddressRange>& ranges, const SocketAddress& address) noexcept;

// The first rule containing the address decides. With no match, a list holding
// any allow rule refuses (it names who may come) and any other list admits.
bool client_allowed(const std::vector<AccessRule>& rules, const SocketAddress& client) noexcept;

inline bool connect_port_allowed(const std::bitset<65536>& ports, unsigned port) noexcept {
    return port < 65536 && ports.test(port);
}

}  // namespace cproxy
