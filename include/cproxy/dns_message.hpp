// DNS messages (RFC 1035 §4): writing A/AAAA queries and reading the replies
// to them. Pure functions over bytes, no I/O, no allocation. The replies come
// from the network, so every read is bounds-checked and compression pointers
// may only point backwards, a bounded number of times.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cproxy::dns {

enum class QueryType : std::uint16_t { A = 1, AAAA = 28 };

inline constexpr std::size_t max_name = 253;       // dotted, without the final dot
inline constexpr std::size_t max_addresses = 8;    // kept from one reply
inline constexpr std::size_t max_cname_hops = 8;

// Copies `name` to `out` (room for max_name bytes) lowercase and without a
// final dot; returns its length, or 0 unless it is dot-separated labels of
// letters, digits, '-' and '_', 1 to 63 bytes each.
std::size_t normalise_name(std::string_view name, char* out) noexcept;

// Writes a recursive query for `name` (a host name, optionally ending in a
// dot); returns its length, or 0 if the name is not a valid host name or the
// query does not fit in `capacity`.
std::size_t write_query(std::uint16_t id, std::string_view name, QueryType type, std::uint8_t* out,
                        std::size_t capacity) noexcept;

enum class Outcome : std::uint8_t {
    Addresses,      // one or more addresses of the asked type
    NoData,         // the name exists but has no such record (after CNAMEs)
    NoSuchName,     // NXDOMAIN
    ServerFailure,  // SERVFAIL, or any other error code
    Refused,
    Truncated,      // TC set: ask again over TCP
    Malformed,      // not a well-formed DNS reply
    NotOurs,        // a reply, but to another query (ID, name or type differ)
};

struct Reply {
    Outcome outcome = Outcome::Malformed;
    // Seconds the outcome may be cached: the smallest TTL of the records used,
    // or for NoData and NoSuchName the SOA's negative TTL (0 without a SOA).
    std::uint32_t ttl = 0;
    std::uint8_t count = 0;
    // 4 bytes used for A, 16 for AAAA; network byte order.
    std::array<std::array<std::uint8_t, 16>, max_addresses> addresses{};
};

// Reads `message` as the reply to the query (id, name, type), following CNAME
// chains within its answer section.
Reply read_reply(const std::uint8_t* message, std::size_t size, std::uint16_t id, std::string_view name,
                 QueryType type) noexcept;

}  // namespace cproxy::dns
