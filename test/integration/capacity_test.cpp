// --max-connections: clients over the limit get 503 + Retry-After and are
// closed; clients under it keep working; capacity comes back on close.
#include "harness.hpp"

#include <poll.h>
#include <sys/resource.h>

#include <optional>
#include <vector>

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

TEST_CASE("integration: out of descriptors, a new client gets 503 and the others keep working",
          "[integration][capacity]")
{
    // The proxy starts with the usual limit; lowering it afterwards (prlimit)
    // leaves room for a few dozen clients before accept() fails with EMFILE.
    Proxy p(proxy_args());
    rlimit low{};
    low.rlim_cur = low.rlim_max = static_cast<rlim_t>(p.open_fds() + 40);
    REQUIRE(::prlimit(p.pid(), RLIMIT_NOFILE, &low, nullptr) == 0);
    Origin o(static_origin("ok"));

    std::vector<Conn> clients;
    std::optional<HttpResponse> refusal;
    for (int i = 0; i < 200 && !refusal; ++i) {
        Conn c = p.connect();
        pollfd pfd{c.fd(), POLLIN, 0};
        if (::poll(&pfd, 1, 100) > 0)
            refusal = c.read_response(kWait, true);
        else
            clients.push_back(std::move(c));
    }
    INFO(clients.size() << " clients held");
    REQUIRE(refusal);
    CHECK(refusal->status == 503);
    CHECK(refusal->header("Retry-After") == "1");
    CHECK(clients.size() > 20);
    CHECK(p.wait_err([](const std::string& err) {
        return err.find("refusing new clients with 503: out of file descriptors") != std::string::npos;
    }));
    // Freeing a few descriptors lets the clients already in make requests.
    for (int i = 0; i < 4; ++i)
        clients.pop_back();
    auto r = clients.front().roundtrip(get(o.url()));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
}
