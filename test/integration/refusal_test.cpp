// Refusals never run the bytes that follow them: a refused CONNECT closes
// when anything followed its head (those bytes were meant for a tunnel), and
// every 400 says Connection: close and closes (where the next request starts
// is not known). Refusals that leave the connection usable keep it.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

namespace {

// What a tunnel's client sends at once behind its CONNECT: here a request
// that must never reach the origin.
std::string smuggled(const Origin& o) { return "GET " + o.url("/smuggled") + " HTTP/1.1\r\nHost: h\r\n\r\n"; }

void expect_refused_and_closed(Conn& c, int status)
{
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == status);
    CHECK(r->header("Connection") == "close");
    CHECK(c.wait_closed());
}

} // namespace

TEST_CASE("integration: refusal: a CONNECT refused with 400, 403, 407 or 508 closes the connection when bytes "
          "followed its head, and they are never served",
          "[integration][refusal]")
{
    Origin o(static_origin("ok"));
    SECTION("403: a port outside connect_ports")
    {
        Proxy p(proxy_args());
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: 127.0.0.1:25\r\n\r\n" + smuggled(o)));
        expect_refused_and_closed(c, 403);
    }
    SECTION("407: no credentials")
    {
        Proxy p(proxy_args({"--auth", "u:p", "--connect-ports", "any"}));
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: h\r\n\r\n" + smuggled(o)));
        expect_refused_and_closed(c, 407);
    }
    SECTION("508: cproxy's own address")
    {
        Proxy p(proxy_args({"--connect-ports", "any"}));
        Conn c = p.connect();
        std::string self = "127.0.0.1:" + std::to_string(p.port());
        REQUIRE(c.send_all("CONNECT " + self + " HTTP/1.1\r\nHost: " + self + "\r\n\r\n" + smuggled(o)));
        expect_refused_and_closed(c, 508);
    }
    SECTION("400: no port in the target")
    {
        Proxy p(proxy_args());
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT 127.0.0.1 HTTP/1.1\r\nHost: h\r\n\r\n" + smuggled(o)));
        expect_refused_and_closed(c, 400);
    }
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: refusal: a CONNECT refused with nothing behind its head keeps the connection",
          "[integration][refusal]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--auth", "u:p"}));
    Conn c = p.connect();
    auto refused = c.roundtrip("CONNECT 127.0.0.1:25 HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(refused);
    CHECK(refused->status == 407);
    CHECK_FALSE(refused->header("Connection"));
    auto served = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\nProxy-Authorization: Basic " +
                              base64("u:p") + "\r\n\r\n");
    REQUIRE(served);
    CHECK(served->status == 200);
}

TEST_CASE("integration: refusal: every 400 for a malformed request says Connection: close and closes; the "
          "next request is never served",
          "[integration][refusal]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    for (std::string bad : {"GET foo HTTP/1.1\r\nHost: h\r\n\r\n",            // unsupported target
                            "GET /origin-form HTTP/1.1\r\nHost: h\r\n\r\n",   // origin-form without a backend
                            "GET http://[::1/ HTTP/1.1\r\nHost: h\r\n\r\n",   // malformed URL
                            "GET http://h:99999/ HTTP/1.1\r\nHost: h\r\n\r\n",  // port out of range
                            "CONNECT h:0 HTTP/1.1\r\nHost: h\r\n\r\n",        // port 0
                            "GET http://h/ HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"}) {
        INFO("request: " << bad);
        Conn c = p.connect();
        REQUIRE(c.send_all(bad + "GET " + o.url("/next") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
        expect_refused_and_closed(c, 400);
    }
    CHECK(o.connections() == 0);
}
