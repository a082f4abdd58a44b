// Reading under edge-triggered epoll: cproxy stops reading a socket once a read
// returns fewer bytes than it asked for (the socket is drained, and more bytes
// raise a new event), except after the peer's FIN (EPOLLRDHUP), which no event
// follows. Each case here sends its last bytes and the FIN back to back, so
// one event reports both: a proxy that stopped at the short read would never
// see the end and these would time out. (The tunnel's case is in
// connect_test.cpp.)
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

TEST_CASE("integration: reads: a body ended by close, sent with the FIN, reaches the client whole and "
          "then the close",
          "[integration][reads]")
{
    // More than one relay buffer, so the last read is a short one.
    const std::string body(100 * 1024 + 7, 'b');
    Origin o([&body](Origin&, Conn& c) {
        if (c.read_request())
            c.send_all("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + body);
    });
    Proxy p(proxy_args({"--timeout-response", "30s"}));
    Conn c = p.connect();
    REQUIRE(c.send_all("GET " + o.url("/until-close") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
    auto got = c.read_until_close(Ms(5000));
    REQUIRE(got.closed);
    CHECK_FALSE(got.reset);
    auto head_end = got.data.find("\r\n\r\n");
    REQUIRE(head_end != std::string::npos);
    CHECK(got.data.size() - head_end - 4 == body.size());
}

TEST_CASE("integration: reads: part of a request head sent with the FIN ends the connection at once, "
          "not at the header timeout",
          "[integration][reads]")
{
    Proxy p(proxy_args({"--timeout-header", "30s"}));
    Conn c = p.connect();
    REQUIRE(c.send_all("GET http://127.0.0.1:9/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept"));
    c.shutdown_write();
    CHECK(c.wait_closed(Ms(3000)));
}
