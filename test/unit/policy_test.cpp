// Client address rules, Basic authentication and base64.
#include <catch2/catch.hpp>

#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "cproxy/policy.hpp"

using namespace cproxy;

static std::string decode(std::string_view in) {
    char out[64];
    auto n = base64_decode(in, out, sizeof out);
    return n ? std::string(out, *n) : std::string("<invalid>");
}

TEST_CASE("policy: base64 decoding is strict") {
    CHECK(decode("dXNlcm5hbWU6cGFzc3dvcmQ=") == "username:password");
    CHECK(decode("YQ==") == "a");
    CHECK(decode("YWI=") == "ab");
    CHECK(decode("") == "");
    CHECK(decode("YQ=") == "<invalid>");
    CHECK(decode("Y===") == "<invalid>");
    CHECK(decode("YQ==YQ==") == "<invalid>");
    CHECK(decode("Y Q==") == "<invalid>");
    char tiny[2];
    CHECK_FALSE(base64_decode("YWJj", tiny, sizeof tiny));
}

TEST_CASE("policy: Basic credentials are checked against every configured pair") {
    Authenticator auth({"alice:secret", "bob:pa:ss"});
    REQUIRE(auth.required());
    char scratch[256];
    auto user = auth.check("Basic YWxpY2U6c2VjcmV0", scratch, sizeof scratch);  // alice:secret
    REQUIRE(user);
    CHECK(*user == "alice");
    user = auth.check("basic   Ym9iOnBhOnNz", scratch, sizeof scratch);  // bob:pa:ss
    REQUIRE(user);
    CHECK(*user == "bob");
    CHECK_FALSE(auth.check("Basic YWxpY2U6c2VjcmV4", scratch, sizeof scratch));  // alice:secrex
    CHECK_FALSE(auth.check("Basic YWxpY2U6c2VjcmV0eA==", scratch, sizeof scratch));  // longer
    CHECK_FALSE(auth.check("Bearer YWxpY2U6c2VjcmV0", scratch, sizeof scratch));
    CHECK_FALSE(auth.check("BasicYWxpY2U6c2VjcmV0", scratch, sizeof scratch));
    CHECK_FALSE(auth.check("Basic", scratch, sizeof scratch));
    CHECK_FALSE(Authenticator({}).required());
}

TEST_CASE("policy: CONNECT ports") {
    std::bitset<65536> ports;
    ports.set(443);
    CHECK(connect_port_allowed(ports, 443));
    CHECK_FALSE(connect_port_allowed(ports, 80));
    CHECK_FALSE(connect_port_allowed(ports, 70000));
}

static SocketAddress address(const char* host) {
    auto parsed = parse_ip_literal(host, 80);
    REQUIRE(parsed);
    return *parsed;
}

static std::vector<AccessRule> rules(std::initializer_list<std::pair<bool, const char*>> list) {
    std::vector<AccessRule> result;
    for (auto [allow, text] : list) {
        auto ranges = parse_address_ranges(text);
        REQUIRE(ranges);
        for (const AddressRange& range : *ranges) result.push_back(AccessRule{allow, range});
    }
    return result;
}

TEST_CASE("policy: address ranges") {
    CHECK(parse_address_ranges("10.0.0.0/8"));
    CHECK(parse_address_ranges("10.0.0.1"));
    CHECK(parse_address_ranges("2001:db8::/32,::1"));
    CHECK(parse_address_ranges("all")->size() == 2);
    CHECK(parse_address_ranges("0.0.0.0/0"));
    CHECK_FALSE(parse_address_ranges(""));
    CHECK_FALSE(parse_address_ranges("10.0.0.0/"));
    CHECK_FALSE(parse_address_ranges("10.0.0.0/33"));
    CHECK_FALSE(parse_address_ranges("::/129"));
    CHECK_FALSE(parse_address_ranges("10.0.0.0/8x"));
    CHECK_FALSE(parse_address_ranges("10.0.0/8"));
    CHECK_FALSE(parse_address_ranges("example.com"));
    CHECK_FALSE(parse_address_ranges("10.0.0.0/8,,"));

    auto v4 = (*parse_address_ranges("192.168.4.0/22"))[0];
    CHECK(v4.contains(address("192.168.4.1")));
    CHECK(v4.contains(address("192.168.7.255")));
    CHECK_FALSE(v4.contains(address("192.168.8.0")));
    CHECK_FALSE(v4.contains(address("192.168.3.255")));
    CHECK_FALSE(v4.contains(address("::1")));
    CHECK(v4.contains(address("::ffff:192.168.5.5")));  // an IPv4 client on a dual-stack socket
    auto v6 = (*parse_address_ranges("2001:db8:8000::/33"))[0];
    CHECK(v6.contains(address("2001:db8:8000::1")));
    CHECK(v6.contains(address("2001:db8:ffff::1")));
    CHECK_FALSE(v6.contains(address("2001:db8:7fff::1")));
    CHECK_FALSE(v6.contains(address("10.0.0.1")));
    // A range written IPv4-mapped is the IPv4 range, as addresses are compared unmapped.
    auto mapped = (*parse_address_ranges("::ffff:10.1.0.0/112"))[0];
    CHECK(mapped.family == AF_INET);
    CHECK(mapped.prefix == 16);
    CHECK(mapped.contains(address("10.1.2.3")));
    CHECK_FALSE(mapped.contains(address("10.2.0.1")));
    CHECK((*parse_address_ranges("::ffff:0:0/95"))[0].family == AF_INET6);  // wider than the mapped block
    auto every = *parse_address_ranges("all");
    CHECK((every[0].contains(address("8.8.8.8")) || every[1].contains(address("8.8.8.8"))));
    CHECK((every[0].contains(address("2001:db8::1")) || every[1].contains(address("2001:db8::1"))));
}

TEST_CASE("policy: allow and deny rules, first match wins") {
    CHECK(client_allowed({}, address("203.0.113.9")));
    auto only_deny = rules({{false, "10.0.0.0/8"}});
    CHECK_FALSE(client_allowed(only_deny, address("10.1.2.3")));
    CHECK(client_allowed(only_deny, address("11.1.2.3")));  // no allow rule: the rest are admitted
    auto mixed = rules({{false, "10.1.0.0/16"}, {true, "10.0.0.0/8,::1"}});
    CHECK_FALSE(client_allowed(mixed, address("10.1.2.3")));
    CHECK(client_allowed(mixed, address("10.2.2.3")));
    CHECK(client_allowed(mixed, address("::1")));
    CHECK_FALSE(client_allowed(mixed, address("192.0.2.1")));  // an allow list names who may come
    auto allow_then_deny_all = rules({{true, "127.0.0.1"}, {false, "all"}});
    CHECK(client_allowed(allow_then_deny_all, address("127.0.0.1")));
    CHECK_FALSE(client_allowed(allow_then_deny_all, address("127.0.0.2")));
}
