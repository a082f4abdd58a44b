// --max-connections: clients over the limit get 503 + Retry-After and are
// closed; clients under it keep working; capacity comes back on close.
#include "harness.hpp"

#include <poll.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string get(const std::string& url)
{
    return "GET " + url + " HTTP/1.1\r\nHost: x\r\n\r\n";
}

// Reads the over-capacity reply. The proxy may answer at accept time or only
// after a request: wait briefly for unsolicited bytes, else send a request.
std::optional<HttpResponse> over_capacity_reply(Conn& c, const std::string& url)
{
    pollfd pfd{c.fd(), POLLIN, 0};
    if (::poll(&pfd, 1, 300) <= 0 && !c.send_all(get(url)))
        return std::nullopt;
    return c.read_response(kWait, true);
}

} // namespace

TEST_CASE("integration: --max-connections 2: a third client gets 503 and the first two keep working",
          "[integration][capacity]")
{
    Origin o(static_origin("cap"));
    Proxy p(proxy_args({"--max-connections", "2"}));
    Conn a = p.connect();
    Conn b = p.connect();
    auto ra = a.roundtrip(get(o.url("/a1")));
    auto rb = b.roundtrip(get(o.url("/b1")));
    REQUIRE(ra);
    REQUIRE(rb);
    CHECK(ra->status == 200);
    CHECK(rb->status == 200);

    {
        Conn c = p.connect(); // accepted by the kernel and by the proxy...
        auto r = over_capacity_reply(c, o.url("/c1"));
        REQUIRE(r);
        INFO("head:\n" << r->raw_head);
        CHECK(r->status == 503);   // ...and refused politely
        CHECK(r->reason == "Service Unavailable");
        CHECK(r->header("Retry-After"));
        CHECK(c.wait_closed(Ms(3000)));
    }
    // The refused client's request never reached the origin.
    std::this_thread::sleep_for(Ms(50));
    for (const auto& q : o.requests())
        CHECK(q.target != "/c1");

    // The first two are unaffected.
    auto ra2 = a.roundtrip(get(o.url("/a2")));
    auto rb2 = b.roundtrip(get(o.url("/b2")));
    REQUIRE(ra2);
    REQUIRE(rb2);
    CHECK(ra2->body == "cap");
    CHECK(rb2->body == "cap");

    // Closing one frees its slot for a new client (bounded retry: the
    // proxy notices the close asynchronously).
    a.close();
    bool served = false;
    auto deadline = Clock::now() + Ms(3000);
    while (!served && Clock::now() < deadline) {
        Conn d = p.connect();
        auto r = d.roundtrip(get(o.url("/d")), Ms(2000));
        if (r && r->status == 200 && r->body == "cap")
            served = true;
        else
            std::this_thread::sleep_for(Ms(50));
    }
    CHECK(served);
    // b still works after all that.
    auto rb3 = b.roundtrip(get(o.url("/b3")));
    REQUIRE(rb3);
    CHECK(rb3->body == "cap");
}

TEST_CASE("integration: --max-connections counts CONNECT tunnels too", "[integration][capacity][connect]")
{
    Origin echo(echo_origin());
    Origin web(static_origin("cap"));
    Proxy p(proxy_args({"--max-connections", "1", "--connect-ports", "any"}));
    Conn t = p.connect();
    REQUIRE(t.send_all("CONNECT " + echo.authority() + " HTTP/1.1\r\nHost: " + echo.authority() + "\r\n\r\n"));
    auto head = t.read_until("\r\n\r\n");
    REQUIRE(head);
    REQUIRE(head->rfind("HTTP/1.1 200", 0) == 0);
    {
        Conn c = p.connect();
        auto r = over_capacity_reply(c, web.url("/over"));
        REQUIRE(r);
        CHECK(r->status == 503);
        CHECK(r->header("Retry-After"));
        CHECK(c.wait_closed(Ms(3000)));
    }
    REQUIRE(t.send_all("still-here"));
    auto e = t.read_exact(10);
    REQUIRE(e);
    CHECK(*e == "still-here");
    CHECK(web.connections() == 0);
}
