// Basic authentication and base64.
#include <catch2/catch.hpp>

#include <string>

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
