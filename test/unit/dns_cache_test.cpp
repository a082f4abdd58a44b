// The worker's DNS cache: TTLs clamped, negative answers kept, fixed memory
// with the soonest-expiring entry making room.
#include <catch2/catch.hpp>

#include <string>

#include "cproxy/dns_cache.hpp"

using namespace cproxy;

namespace {

dns::Reply addresses(std::uint8_t last_byte, std::uint32_t ttl) {
    dns::Reply reply;
    reply.outcome = dns::Outcome::Addresses;
    reply.ttl = ttl;
    reply.count = 1;
    reply.addresses[0] = {10, 0, 0, last_byte};
    return reply;
}

dns::Reply negative(dns::Outcome outcome, std::uint32_t ttl) {
    dns::Reply reply;
    reply.outcome = outcome;
    reply.ttl = ttl;
    return reply;
}

}  // namespace

TEST_CASE("dns cache: hits until the clamped TTL runs out") {
    DnsCache cache(64, 5, 3600);
    cache.store("Example.COM", dns::QueryType::A, addresses(1, 60), 1000);
    const dns::Reply* hit = cache.find("example.com", dns::QueryType::A, 1000 + 59'999);
    REQUIRE(hit);
    CHECK_FALSE(cache.find("example.com.", dns::QueryType::A, 1000));  // absolute: another key
    CHECK(hit->addresses[0][3] == 1);
    CHECK_FALSE(cache.find("example.com", dns::QueryType::A, 1000 + 60'000));
    CHECK_FALSE(cache.find("example.com", dns::QueryType::AAAA, 1000));  // another type
    CHECK(cache.hits() == 1);
    CHECK(cache.misses() == 3);

    cache.store("short.test", dns::QueryType::A, addresses(2, 0), 0);  // TTL 0 → min 5 s
    CHECK(cache.find("short.test", dns::QueryType::A, 4999));
    CHECK_FALSE(cache.find("short.test", dns::QueryType::A, 5000));
    cache.store("long.test", dns::QueryType::A, addresses(3, 999'999), 0);  // → max 1 h
    CHECK(cache.find("long.test", dns::QueryType::A, 3'599'999));
    CHECK_FALSE(cache.find("long.test", dns::QueryType::A, 3'600'000));

    cache.store("example.com", dns::QueryType::A, addresses(9, 60), 2000);  // a newer answer replaces
    CHECK(cache.find("example.com", dns::QueryType::A, 2000)->addresses[0][3] == 9);
}

TEST_CASE("dns cache: negative answers are kept, failures are not") {
    DnsCache cache(64, 1, 600);
    cache.store("nope.test", dns::QueryType::A, negative(dns::Outcome::NoSuchName, 30), 0);
    cache.store("v4only.test", dns::QueryType::AAAA, negative(dns::Outcome::NoData, 0), 0);
    cache.store("broken.test", dns::QueryType::A, negative(dns::Outcome::ServerFailure, 30), 0);
    cache.store("cut.test", dns::QueryType::A, negative(dns::Outcome::Truncated, 30), 0);
    REQUIRE(cache.find("nope.test", dns::QueryType::A, 29'999));
    CHECK(cache.find("nope.test", dns::QueryType::A, 0)->outcome == dns::Outcome::NoSuchName);
    CHECK(cache.find("v4only.test", dns::QueryType::AAAA, 999));  // TTL 0 → min 1 s
    CHECK_FALSE(cache.find("broken.test", dns::QueryType::A, 0));
    CHECK_FALSE(cache.find("cut.test", dns::QueryType::A, 0));
}

TEST_CASE("dns cache: a full cache makes room with the entry expiring soonest") {
    DnsCache cache(4, 1, 3600);  // one set of four ways: every name collides
    for (std::uint8_t i = 0; i < 4; ++i)
        cache.store("host" + std::to_string(i) + ".test", dns::QueryType::A, addresses(i, 100u + i * 100u),
                    0);
    for (std::uint8_t i = 0; i < 4; ++i)
        CHECK(cache.find("host" + std::to_string(i) + ".test", dns::QueryType::A, 0));
    cache.store("new.test", dns::QueryType::A, addresses(7, 50), 0);
    CHECK(cache.find("new.test", dns::QueryType::A, 0));
    CHECK_FALSE(cache.find("host0.test", dns::QueryType::A, 0));  // expired soonest: replaced
    CHECK(cache.find("host3.test", dns::QueryType::A, 0));
    // An expired entry is reused before a live one.
    cache.store("later.test", dns::QueryType::A, addresses(8, 100), 60'000);
    CHECK(cache.find("later.test", dns::QueryType::A, 60'000));
    CHECK(cache.find("host1.test", dns::QueryType::A, 60'000));

    DnsCache none(0, 1, 60);
    none.store("x.test", dns::QueryType::A, addresses(1, 60), 0);
    CHECK_FALSE(none.find("x.test", dns::QueryType::A, 0));
}

TEST_CASE("dns cache: a TTL of zero is not kept unless dns_min_ttl stretches it") {
    dns::Reply reply;
    reply.outcome = dns::Outcome::Addresses;
    reply.count = 1;
    reply.ttl = 0;
    DnsCache trusting(64, 0, 3600);
    trusting.store("zero.test", dns::QueryType::A, reply, 1000);
    CHECK_FALSE(trusting.find("zero.test", dns::QueryType::A, 1000));
    DnsCache stretching(64, 2, 3600);
    stretching.store("zero.test", dns::QueryType::A, reply, 1000);
    CHECK(stretching.find("zero.test", dns::QueryType::A, 2999));
    CHECK_FALSE(stretching.find("zero.test", dns::QueryType::A, 3000));
}
