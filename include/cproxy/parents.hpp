// Parent proxies: which requests go through them (parent_for, direct_for) and
// which parent a request goes to. Each worker keeps its own ParentSelector:
// smooth weighted round-robin over the parents that are up, where a parent
// that could not be reached is held down for parent_down_time. Pure logic; the
// selector allocates only when the configuration is (re)loaded.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cproxy/address.hpp"
#include "cproxy/policy.hpp"

namespace cproxy {

inline constexpr std::size_t max_parents = 32;  // a request's tried parents are a 32-bit set
inline constexpr std::uint8_t no_parent = 0xff;
inline constexpr std::uint32_t max_parent_weight = 1000;

struct Parent {
    std::string name;           // "HOST:PORT" as configured, for logs
    SocketAddress address;      // resolved when the configuration is loaded
    std::string authorization;  // Proxy-Authorization value ("Basic ..."); empty: none
    std::uint32_t weight = 1;
};

// Hosts named by domain (itself and its subdomains) or, for IP-literal
// hosts, by address block.
struct DestinationList {
    std::vector<std::string> domains;  // lower case, without leading or trailing dots
    std::vector<AddressRange> ranges;
    bool empty() const noexcept { return domains.empty() && ranges.empty(); }
};

// "a.example, .b.example 10.0.0.0/8": items separated by commas or blanks;
// a leading "." or "*." is accepted and ignored. Empty `problem` on success.
DestinationList parse_destination_list(std::string_view text, std::string& problem);

// `host` as it came in a request: any case, maybe a trailing dot, IPv6
// without brackets.
bool destination_in(const DestinationList& list, std::string_view host) noexcept;

class ParentSelector {
public:
    // Start and reload: a parent at the same address keeps its down time.
    void reset(const std::vector<Parent>& parents);
    // The next parent that is up at `now_ms` and not in `excluded` (bit i:
    // parent i), or nullopt when there is none.
    std::optional<std::uint8_t> choose(std::uint64_t now_ms, std::uint32_t excluded) noexcept;
    // True if this begins an outage: the parent had answered since it last
    // failed. A parent that fails again when its down time is over is still
    // in the same outage.
    bool mark_down(std::uint8_t parent, std::uint64_t until_ms) noexcept;
    // True once after a parent held down has answered again.
    bool mark_up(std::uint8_t parent) noexcept;
    bool is_down(std::uint8_t parent, std::uint64_t now_ms) const noexcept {
        return parent < states_.size() && states_[parent].down_until_ms > now_ms;
    }
    std::uint32_t down(std::uint64_t now_ms) const noexcept;

private:
    struct State {
        SocketAddress address;
        std::int64_t current = 0;  // the smooth round-robin's running score
        std::uint32_t weight = 1;
        std::uint64_t down_until_ms = 0;
        bool failed = false;  // marked down and not yet heard from again
    };
    std::vector<State> states_;
};

}  // namespace cproxy
