// DNS queries and replies: well-formed replies read right, and every kind of
// broken or hostile reply is refused rather than believed or over-read.
#include <catch2/catch.hpp>

#include <cstdint>
#include <string>
#include <vector>

#include "cproxy/dns_message.hpp"

using namespace cproxy::dns;

namespace {

using Bytes = std::vector<std::uint8_t>;

void put16(Bytes& b, unsigned v) {
    b.push_back(static_cast<std::uint8_t>(v >> 8));
    b.push_back(static_cast<std::uint8_t>(v));
}

void put32(Bytes& b, std::uint32_t v) {
    put16(b, v >> 16);
    put16(b, v & 0xffff);
}

void put_name(Bytes& b, const std::string& name) {
    std::size_t start = 0;
    while (start < name.size()) {
        std::size_t dot = name.find('.', start);
        if (dot == std::string::npos) dot = name.size();
        b.push_back(static_cast<std::uint8_t>(dot - start));
        b.insert(b.end(), name.begin() + static_cast<long>(start), name.begin() + static_cast<long>(dot));
        start = dot + 1;
    }
    b.push_back(0);
}

// A reply with one question; records are appended by the caller, who also
// sets the counts.
Bytes reply_head(std::uint16_t id, unsigned flags, const std::string& name, unsigned type, unsigned answers,
                 unsigned authority = 0) {
    Bytes b;
    put16(b, id);
    put16(b, flags);
    put16(b, 1);
    put16(b, answers);
    put16(b, authority);
    put16(b, 0);
    put_name(b, name);
    put16(b, type);
    put16(b, 1);
    return b;
}

void put_record(Bytes& b, const Bytes& owner, unsigned type, std::uint32_t ttl, const Bytes& data) {
    b.insert(b.end(), owner.begin(), owner.end());
    put16(b, type);
    put16(b, 1);
    put32(b, ttl);
    put16(b, static_cast<unsigned>(data.size()));
    b.insert(b.end(), data.begin(), data.end());
}

Bytes name_bytes(const std::string& name) {
    Bytes b;
    put_name(b, name);
    return b;
}

const Bytes question_pointer = {0xc0, 12};  // the question's name, compressed

Reply read(const Bytes& b, std::uint16_t id = 0x1234, const std::string& name = "example.com",
           QueryType type = QueryType::A) {
    return read_reply(b.data(), b.size(), id, name, type);
}

}  // namespace

TEST_CASE("dns: queries") {
    std::uint8_t out[512];
    std::size_t n = write_query(0xabcd, "Example.COM.", QueryType::AAAA, out, sizeof out);
    Bytes expected = {0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0};
    put_name(expected, "example.com");
    put16(expected, 28);
    put16(expected, 1);
    REQUIRE(n == expected.size());
    CHECK(Bytes(out, out + n) == expected);

    CHECK(write_query(1, "", QueryType::A, out, sizeof out) == 0);
    CHECK(write_query(1, ".", QueryType::A, out, sizeof out) == 0);
    CHECK(write_query(1, "a..b", QueryType::A, out, sizeof out) == 0);
    CHECK(write_query(1, "a b", QueryType::A, out, sizeof out) == 0);
    CHECK(write_query(1, std::string(64, 'a') + ".com", QueryType::A, out, sizeof out) == 0);
    CHECK(write_query(1, std::string(63, 'a') + ".com", QueryType::A, out, sizeof out) > 0);
    std::string long_name;
    for (int i = 0; i < 64; ++i) long_name += "abc.";
    CHECK(write_query(1, long_name, QueryType::A, out, sizeof out) == 0);  // over 253
    CHECK(write_query(1, "example.com", QueryType::A, out, 20) == 0);      // does not fit
}

TEST_CASE("dns: addresses, CNAME chains and TTLs") {
    Bytes b = reply_head(0x1234, 0x8180, "example.com", 1, 2);
    put_record(b, question_pointer, 1, 300, {93, 184, 216, 34});
    put_record(b, question_pointer, 1, 60, {93, 184, 216, 35});
    Reply r = read(b);
    REQUIRE(r.outcome == Outcome::Addresses);
    CHECK(r.count == 2);
    CHECK(r.ttl == 60);
    CHECK(r.addresses[1][3] == 35);

    // www.example.com CNAME edge.example.net, which has the address; the
    // records come in reverse order, names in other letter cases.
    Bytes chain = reply_head(7, 0x8180, "www.example.com", 1, 2);
    put_record(chain, name_bytes("EDGE.example.net"), 1, 500, {10, 0, 0, 1});
    put_record(chain, question_pointer, 5, 120, name_bytes("edge.EXAMPLE.net"));
    Reply c = read(chain, 7, "WWW.example.com");
    REQUIRE(c.outcome == Outcome::Addresses);
    CHECK(c.ttl == 120);
    CHECK(c.addresses[0][0] == 10);

    // AAAA, and the high-bit TTL read as 0 (RFC 2181 §8).
    Bytes v6 = reply_head(9, 0x8180, "example.com", 28, 1);
    Bytes address(16, 0);
    address[15] = 1;
    put_record(v6, question_pointer, 28, 0x80000000u, address);
    Reply six = read(v6, 9, "example.com", QueryType::AAAA);
    REQUIRE(six.outcome == Outcome::Addresses);
    CHECK(six.ttl == 0);
    CHECK(six.addresses[0][15] == 1);

    // More addresses than kept: the first max_addresses.
    Bytes many = reply_head(1, 0x8180, "example.com", 1, 12);
    for (std::uint8_t i = 0; i < 12; ++i) put_record(many, question_pointer, 1, 30, {10, 0, 0, i});
    CHECK(read(many, 1).count == max_addresses);
}

TEST_CASE("dns: negative answers carry the SOA's negative TTL") {
    Bytes soa;
    put_name(soa, "ns.example.com");
    put_name(soa, "admin.example.com");
    for (std::uint32_t field : {1u, 7200u, 900u, 1209600u, 45u}) put32(soa, field);
    Bytes nx = reply_head(3, 0x8183, "nope.example.com", 1, 0, 1);
    put_record(nx, name_bytes("example.com"), 6, 3600, soa);
    Reply r = read(nx, 3, "nope.example.com");
    CHECK(r.outcome == Outcome::NoSuchName);
    CHECK(r.ttl == 45);  // min(SOA TTL, MINIMUM)

    Bytes nodata = reply_head(4, 0x8180, "example.com", 28, 0, 1);
    put_record(nodata, name_bytes("example.com"), 6, 30, soa);
    Reply n = read(nodata, 4, "example.com", QueryType::AAAA);
    CHECK(n.outcome == Outcome::NoData);
    CHECK(n.ttl == 30);

    // A CNAME whose target has no address in the reply is no data, too.
    Bytes dangling = reply_head(5, 0x8180, "example.com", 1, 1);
    put_record(dangling, question_pointer, 5, 60, name_bytes("elsewhere.test"));
    CHECK(read(dangling, 5).outcome == Outcome::NoData);
    // And a CNAME loop ends.
    Bytes loop = reply_head(6, 0x8180, "a.test", 1, 2);
    put_record(loop, question_pointer, 5, 60, name_bytes("b.test"));
    put_record(loop, name_bytes("b.test"), 5, 60, name_bytes("a.test"));
    CHECK(read(loop, 6, "a.test").outcome == Outcome::NoData);
}

TEST_CASE("dns: error codes, truncation and replies to other queries") {
    CHECK(read(reply_head(1, 0x8182, "example.com", 1, 0), 1).outcome == Outcome::ServerFailure);
    CHECK(read(reply_head(1, 0x8185, "example.com", 1, 0), 1).outcome == Outcome::Refused);
    CHECK(read(reply_head(1, 0x8184, "example.com", 1, 0), 1).outcome == Outcome::ServerFailure);
    CHECK(read(reply_head(1, 0x8380, "example.com", 1, 0), 1).outcome == Outcome::Truncated);
    CHECK(read(reply_head(2, 0x8180, "example.com", 1, 0), 1).outcome == Outcome::NotOurs);      // ID
    CHECK(read(reply_head(1, 0x8180, "example.org", 1, 0), 1).outcome == Outcome::NotOurs);      // name
    CHECK(read(reply_head(1, 0x8180, "example.com", 28, 0), 1).outcome == Outcome::NotOurs);     // type
    CHECK(read(reply_head(1, 0x0100, "example.com", 1, 0), 1).outcome == Outcome::Malformed);    // a query
    CHECK(read(reply_head(1, 0x8980, "example.com", 1, 0), 1).outcome == Outcome::Malformed);    // opcode 1
}

TEST_CASE("dns: malformed replies are refused, never over-read") {
    Bytes good = reply_head(1, 0x8180, "example.com", 1, 1);
    put_record(good, question_pointer, 1, 60, {1, 2, 3, 4});
    REQUIRE(read(good, 1).outcome == Outcome::Addresses);
    // Every truncation of a good reply is refused (each copy ends exactly at
    // the end of its own allocation, so ASan sees any read past it).
    for (std::size_t cut = 0; cut < good.size(); ++cut) {
        Bytes part(good.begin(), good.begin() + static_cast<long>(cut));
        Reply r = read(part, 1);
        INFO("cut at " << cut);
        CHECK(r.outcome != Outcome::Addresses);
    }

    auto with_answer = [](const Bytes& owner, unsigned type, const Bytes& data) {
        Bytes b = reply_head(1, 0x8180, "example.com", 1, 1);
        put_record(b, owner, type, 60, data);
        return b;
    };
    CHECK(read(with_answer(question_pointer, 1, {1, 2, 3}), 1).outcome == Outcome::Malformed);     // A of 3 bytes
    CHECK(read(with_answer({0xc0, 200}, 1, {1, 2, 3, 4}), 1).outcome == Outcome::Malformed);       // pointer ahead
    CHECK(read(with_answer({0xc0, 0x1d}, 1, {1, 2, 3, 4}), 1).outcome == Outcome::Malformed);      // points at itself
    CHECK(read(with_answer({0x80, 12}, 1, {1, 2, 3, 4}), 1).outcome == Outcome::Malformed);        // reserved label
    CHECK(read(with_answer({64}, 1, {1, 2, 3, 4}), 1).outcome == Outcome::Malformed);              // label over 63

    // A pointer chain that loops backwards and forwards is cut: the CNAME
    // target points at itself.
    Bytes self = reply_head(1, 0x8180, "example.com", 1, 1);
    std::size_t target_at = self.size() + 2 + 10;
    put_record(self, question_pointer, 5, 60,
               {static_cast<std::uint8_t>(0xc0 | (target_at >> 8)), static_cast<std::uint8_t>(target_at)});
    CHECK(read(self, 1).outcome == Outcome::Malformed);

    // A name over 253 characters, built from labels that fit.
    Bytes long_owner;
    for (int i = 0; i < 5; ++i) {
        long_owner.push_back(60);
        long_owner.insert(long_owner.end(), 60, 'a');
    }
    long_owner.push_back(0);
    CHECK(read(with_answer(long_owner, 1, {1, 2, 3, 4}), 1).outcome == Outcome::Malformed);

    // An RDATA length past the end.
    Bytes past = reply_head(1, 0x8180, "example.com", 1, 1);
    put_record(past, question_pointer, 1, 60, {1, 2, 3, 4});
    past[past.size() - 5] = 40;
    CHECK(read(past, 1).outcome == Outcome::Malformed);
    // Fewer records than the header announces.
    Bytes short_count = good;
    short_count[7] = 2;
    CHECK(read(short_count, 1).outcome == Outcome::Malformed);
}
