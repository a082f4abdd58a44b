// The PROXY protocol header: versions 1 and 2 as HAProxy sends them, health
// checks (LOCAL, UNKNOWN), headers arriving in pieces, and every malformation
// refused with a reason.
#include <catch2/catch.hpp>

#include <string>

#include "cproxy/proxy_protocol.hpp"

using namespace cproxy;
using proxy_protocol::Status;

namespace {

std::string v2(unsigned char version_command, unsigned char family, const std::string& block) {
    std::string header("\r\n\r\n\0\r\nQUIT\n", 12);
    header += static_cast<char>(version_command);
    header += static_cast<char>(family);
    header += static_cast<char>(block.size() >> 8);
    header += static_cast<char>(block.size() & 0xff);
    return header + block;
}

std::string text(const SocketAddress& address) { return to_string(address); }

}  // namespace

TEST_CASE("proxy protocol: v1 TCP4 and TCP6 give the client's and the listener's addresses") {
    auto r = proxy_protocol::parse("PROXY TCP4 192.0.2.7 127.0.0.1 51234 8888\r\nGET / HTTP/1.1\r\n");
    REQUIRE(r.status == Status::Done);
    CHECK(r.header.length == 43);
    CHECK(r.header.has_addresses);
    CHECK(text(r.header.source) == "192.0.2.7:51234");
    CHECK(text(r.header.destination) == "127.0.0.1:8888");

    r = proxy_protocol::parse("PROXY TCP6 2001:db8::1 ::1 443 8888\r\n");
    REQUIRE(r.status == Status::Done);
    CHECK(text(r.header.source) == "[2001:db8::1]:443");
    CHECK(text(r.header.destination) == "[::1]:8888");
}

TEST_CASE("proxy protocol: v1 UNKNOWN keeps the connection's own addresses") {
    for (const char* line : {"PROXY UNKNOWN\r\n", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"}) {
        INFO(line);
        auto r = proxy_protocol::parse(line);
        REQUIRE(r.status == Status::Done);
        CHECK(r.header.length == std::string(line).size());
        CHECK_FALSE(r.header.has_addresses);
    }
}

TEST_CASE("proxy protocol: v2 PROXY over IPv4 and IPv6, TLVs skipped, LOCAL for health checks") {
    std::string v4_block("\xc0\x00\x02\x07\x7f\x00\x00\x01\xc8\x22\x22\xb8", 12);
    auto r = proxy_protocol::parse(v2(0x21, 0x11, v4_block) + "GET");
    REQUIRE(r.status == Status::Done);
    CHECK(r.header.length == 28);
    CHECK(text(r.header.source) == "192.0.2.7:51234");
    CHECK(text(r.header.destination) == "127.0.0.1:8888");

    std::string tlv("\x04\x00\x05hello", 8);
    r = proxy_protocol::parse(v2(0x21, 0x11, v4_block + tlv));
    REQUIRE(r.status == Status::Done);
    CHECK(r.header.length == 36);
    CHECK(text(r.header.source) == "192.0.2.7:51234");

    std::string v6_block(36, '\0');
    v6_block[0] = '\x20', v6_block[1] = '\x01', v6_block[2] = '\x0d', v6_block[3] = '\xb8', v6_block[15] = '\x01';
    v6_block[31] = '\x01';
    v6_block[32] = '\x01', v6_block[33] = '\xbb', v6_block[34] = '\x22', v6_block[35] = '\xb8';
    r = proxy_protocol::parse(v2(0x21, 0x21, v6_block));
    REQUIRE(r.status == Status::Done);
    CHECK(text(r.header.source) == "[2001:db8::1]:443");
    CHECK(text(r.header.destination) == "[::1]:8888");

    r = proxy_protocol::parse(v2(0x20, 0x00, ""));
    REQUIRE(r.status == Status::Done);
    CHECK(r.header.length == 16);
    CHECK_FALSE(r.header.has_addresses);
    // A family cproxy has no use for (UNIX, UDP) is skipped like LOCAL.
    r = proxy_protocol::parse(v2(0x21, 0x31, std::string(216, 'u')));
    REQUIRE(r.status == Status::Done);
    CHECK_FALSE(r.header.has_addresses);
    r = proxy_protocol::parse(v2(0x21, 0x12, v4_block));
    REQUIRE(r.status == Status::Done);
    CHECK_FALSE(r.header.has_addresses);
}

TEST_CASE("proxy protocol: a header in pieces is partial until whole") {
    std::string v1 = "PROXY TCP4 192.0.2.7 127.0.0.1 51234 8888\r\n";
    std::string v2_header = v2(0x21, 0x11, std::string("\xc0\x00\x02\x07\x7f\x00\x00\x01\xc8\x22\x22\xb8", 12));
    for (const std::string& header : {v1, v2_header}) {
        for (std::size_t n = 0; n < header.size(); ++n) {
            INFO("first " << n << " bytes");
            CHECK(proxy_protocol::parse(header.substr(0, n)).status == Status::Partial);
        }
        CHECK(proxy_protocol::parse(header).status == Status::Done);
    }
}

TEST_CASE("proxy protocol: malformed or missing headers are refused with a reason") {
    std::string v4_block("\xc0\x00\x02\x07\x7f\x00\x00\x01\xc8\x22\x22\xb8", 12);
    const std::string refused[] = {
        "GET / HTTP/1.1\r\n\r\n",                                  // no header at all
        "PROXY TCP5 192.0.2.7 127.0.0.1 1 2\r\n",                  // unknown protocol
        "PROXY TCP4 192.0.2.7 127.0.0.1 1\r\n",                    // a port missing
        "PROXY TCP4 192.0.2.7 127.0.0.1 1 2 3\r\n",                // a word too many
        "PROXY TCP4 192.0.2.7  127.0.0.1 1 2\r\n",                 // two spaces
        "PROXY TCP4 192.0.2.7 127.0.0.1 01 2\r\n",                 // a leading zero
        "PROXY TCP4 192.0.2.7 127.0.0.1 65536 2\r\n",              // port out of range
        "PROXY TCP4 192.0.2.7 127.0.0.1 -1 2\r\n",                 // a sign
        "PROXY TCP4 ::1 127.0.0.1 1 2\r\n",                        // IPv6 in TCP4
        "PROXY TCP6 192.0.2.7 ::1 1 2\r\n",                        // IPv4 in TCP6
        "PROXY TCP4 192.0.2.7 127.0.0.1 1 2\n",                    // LF without CR
        "PROXY TCP6 ::1" + std::string(2, '\0') + " ::1 1 2\r\n",   // a NUL ending an address early
        "PROXY TCP4 192.0.2.7 127.0.0.1\n 1 2\r\n",                // a bare LF inside the line
        "PROXY TCP4 " + std::string(100, '1') + "\r\n",            // longer than 107 bytes
        v2(0x11, 0x11, v4_block),                                  // version 1 in a v2 header
        v2(0x22, 0x11, v4_block),                                  // command 2
        v2(0x21, 0x11, v4_block.substr(0, 11)),                    // IPv4 block too short
        v2(0x21, 0x21, std::string(35, '\0')),                     // IPv6 block too short
        v2(0x21, 0x11, std::string(1009, '\0')),                   // longer than 1024 bytes
    };
    for (const std::string& bytes : refused) {
        INFO(bytes);
        auto r = proxy_protocol::parse(bytes);
        CHECK(r.status == Status::Error);
        CHECK(r.error != nullptr);
    }
}
