// A worker's cache of DNS answers: addresses, and negative answers (NXDOMAIN,
// no data) so a name that does not resolve is not asked again at once.
//
// Fixed memory, allocated once: a set-associative table (4 ways per set); a
// new answer replaces an expired entry of its set, else the one that expires
// soonest. TTLs are clamped to [min_ttl, max_ttl] (dns_min_ttl/dns_max_ttl), so
// a short TTL can be stretched to spare the server and a huge one is not
// trusted; an answer whose clamped TTL is zero is not kept.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "cproxy/dns_message.hpp"

namespace cproxy {

class DnsCache {
public:
    static constexpr std::uint32_t ways = 4;
    // A name, with a final dot when it was asked as absolute.
    static constexpr std::size_t max_key = dns::max_name + 1;

    struct Entry {
        char name[max_key];
        std::uint8_t name_length = 0;
        dns::QueryType type = dns::QueryType::A;
        std::uint64_t expires_ms = 0;  // 0: empty
        dns::Reply reply;
    };

    // `capacity` entries, rounded up to whole sets; 0 caches nothing.
    DnsCache(std::uint32_t capacity, std::uint32_t min_ttl_s, std::uint32_t max_ttl_s);

    // The cached reply for `name` (case-insensitive; "a.test." and "a.test"
    // are different keys, since a search list may apply to one only) and
    // `type`, if it has not expired; nullptr otherwise.
    const dns::Reply* find(std::string_view name, dns::QueryType type, std::uint64_t now_ms) noexcept;
    // Keeps Addresses, NoData and NoSuchName replies; others are not cached.
    void store(std::string_view name, dns::QueryType type, const dns::Reply& reply,
               std::uint64_t now_ms) noexcept;

    // New bounds apply to answers stored from now on.
    void set_ttl_bounds(std::uint32_t min_ttl_s, std::uint32_t max_ttl_s) noexcept;

    std::uint64_t hits() const noexcept { return hits_; }
    std::uint64_t misses() const noexcept { return misses_; }

private:
    std::uint32_t set_of(std::string_view name, dns::QueryType type) const noexcept;

    std::vector<Entry> entries_;
    std::uint32_t sets_;
    std::uint32_t min_ttl_s_;
    std::uint32_t max_ttl_s_;
    std::uint64_t hits_ = 0;
    std::uint64_t misses_ = 0;
};

}  // namespace cproxy
