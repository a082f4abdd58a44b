// Upstream connections outliving their client (the idle upstream pool) and
// large response bodies relayed socket to socket (splice with a read limit).
#include "harness.hpp"

#include <csignal>
#include <thread>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string get_and_close(const std::string& url)
{
    return "GET " + url + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
}

} // namespace

TEST_CASE("integration: clients that close after each response share one upstream connection",
          "[integration][upstream-reuse]")
{
    Origin o(static_origin("pooled"));
    Proxy p(proxy_args());
    for (int i = 0; i < 5; ++i) {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url("/n" + std::to_string(i))));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "pooled");
        CHECK(c.wait_closed(Ms(3000)));
    }
    CHECK(o.requests().size() == 5);
    CHECK(o.connections() == 1);
}

TEST_CASE("integration: a parked upstream connection the origin closes is not reused",
          "[integration][upstream-reuse]")
{
    // The origin closes every connection right after its response, without
    // saying so: the proxy parks it, sees the close, and must drop it.
    Origin o(http_origin([](const HttpRequest&) { return Reply{http_response(200, "once"), true}; }));
    Proxy p(proxy_args());
    for (int i = 0; i < 3; ++i) {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url("/")));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "once");
        std::this_thread::sleep_for(Ms(200));
    }
    CHECK(o.connections() == 3);
}

TEST_CASE("integration: parked upstream connections expire after two idle seconds",
          "[integration][upstream-reuse]")
{
    Origin o(static_origin("aged"));
    Proxy p(proxy_args());
    {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url("/first")));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    std::this_thread::sleep_for(Ms(2600));
    Conn c = p.connect();
    auto r = c.roundtrip(get_and_close(o.url("/second")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(o.connections() == 2);
}

TEST_CASE("integration: --upstream-idle-timeout sets how long a parked connection is kept",
          "[integration][upstream-reuse]")
{
    Origin o(static_origin("short-lived"));
    Proxy p(proxy_args({"--upstream-idle-timeout", "300ms"}));
    auto fetch_and_close = [&](const std::string& path) {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url(path)));
        REQUIRE(r);
        CHECK(r->status == 200);
    };
    fetch_and_close("/first");
    fetch_and_close("/soon");  // within 300 ms: the parked connection
    CHECK(o.connections() == 1);
    std::this_thread::sleep_for(Ms(700));
    fetch_and_close("/later");  // past it: a new connection
    CHECK(o.connections() == 2);
}

TEST_CASE("integration: --upstream-max-idle 0 keeps no upstream connection",
          "[integration][upstream-reuse]")
{
    Origin o(static_origin("unpooled"));
    Proxy p(proxy_args({"--upstream-max-idle", "0"}));
    for (int i = 0; i < 3; ++i) {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url("/n" + std::to_string(i))));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(c.wait_closed(Ms(3000)));
    }
    CHECK(o.connections() == 3);
}

TEST_CASE("integration: a CONNECT tunnel never gets a parked HTTP connection",
          "[integration][upstream-reuse]")
{
    Origin o(static_origin("plain"));
    Proxy p(proxy_args({"--connect-ports", std::to_string(o.port())}));
    {
        Conn c = p.connect();
        auto r = c.roundtrip(get_and_close(o.url("/")));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    Conn t = p.connect();
    REQUIRE(t.send_all("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n"));
    auto established = t.read_response(kWait, true);
    REQUIRE(established);
    CHECK(established->status == 200);
    REQUIRE(o.wait_connections(2));
    auto inner = t.roundtrip("GET /inside HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
    REQUIRE(inner);
    CHECK(inner->body == "plain");
}

TEST_CASE("integration: large bodies are relayed exactly, with splice and without",
          "[integration][upstream-reuse][splice]")
{
    const std::string big = random_bytes(3 * 1024 * 1024 + 17, 11);
    const std::string small = "after the big one";
    Origin o(http_origin([&](const HttpRequest& r) {
        return Reply{http_response(200, r.target == "/big" ? big : small)};
    }));
    for (const char* splice : {"on", "off"}) {
        INFO("--splice " << splice);
        Proxy p(proxy_args({"--splice", splice}));
        Conn c = p.connect();
        for (int i = 0; i < 2; ++i) {
            auto r = c.roundtrip("GET " + o.url("/big") + " HTTP/1.1\r\nHost: x\r\n\r\n", Ms(10000));
            REQUIRE(r);
            CHECK(r->status == 200);
            CHECK(r->body.size() == big.size());
            CHECK(fnv1a(r->body) == fnv1a(big));
            // The relay stopped at the body's end: the next response on the
            // same upstream connection starts clean.
            auto next = c.roundtrip("GET " + o.url("/small") + " HTTP/1.1\r\nHost: x\r\n\r\n");
            REQUIRE(next);
            CHECK(next->body == small);
        }
    }
    CHECK(o.connections() == 2);
}

TEST_CASE("integration: a large body the origin cuts short closes the client connection",
          "[integration][upstream-reuse][splice]")
{
    const std::string part = random_bytes(300000, 12);
    Origin o(http_origin([&](const HttpRequest&) {
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + part, true};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    REQUIRE(c.send_all("GET " + o.url("/short") + " HTTP/1.1\r\nHost: x\r\n\r\n"));
    auto rest = c.read_until_close(Ms(5000));
    CHECK(rest.closed);
    // The head and the 300000 bytes the origin sent arrive; nothing more.
    auto body_start = rest.data.find("\r\n\r\n");
    REQUIRE(body_start != std::string::npos);
    CHECK(rest.data.size() - body_start - 4 == part.size());
    CHECK(rest.data.compare(body_start + 4, std::string::npos, part) == 0);
}

namespace {

// An origin that answers the first request on each connection and closes the
// connection, unanswered, when a second request arrives on it: a server whose
// keep-alive timeout fired just as the proxy reused the connection.
Origin::Handler one_answer_per_connection_origin()
{
    return [](Origin& o, Conn& c) {
        auto first = c.read_request(kWait);
        if (!first)
            return;
        o.record(std::move(*first));
        if (!c.send_all(http_response(200, "first on this connection")))
            return;
        auto second = c.read_request(kWait);
        if (second)
            o.note("dropped " + second->method);
    };
}

// One answered request from a client that then leaves: the proxy parks the
// origin connection, and the next request reuses it.
void leave_a_parked_connection(Proxy& p, const Origin& o)
{
    Conn c = p.connect();
    auto r = c.roundtrip(get_and_close(o.url("/a")));
    REQUIRE(r);
    CHECK(r->status == 200);
}

} // namespace

TEST_CASE("integration: a GET on a reused connection the origin closed is sent again on a new one",
          "[integration][upstream-reuse]")
{
    Origin o(one_answer_per_connection_origin());
    Proxy p(proxy_args());
    leave_a_parked_connection(p, o);
    Conn c = p.connect();
    auto r = c.roundtrip(get_and_close(o.url("/b")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "first on this connection");
    CHECK(o.connections() == 2);
    REQUIRE(o.wait_notes(1));
    CHECK(o.notes()[0] == "dropped GET");
    // The final counters say a request was sent again.
    REQUIRE(p.stop(SIGTERM, Ms(3000)) == 0);
    CHECK(p.err().find(", 1 replayed,") != std::string::npos);
}

TEST_CASE("integration: a POST on a reused connection the origin closed is not sent again",
          "[integration][upstream-reuse]")
{
    Origin o(one_answer_per_connection_origin());
    Proxy p(proxy_args());
    leave_a_parked_connection(p, o);
    Conn c = p.connect();
    auto r = c.roundtrip("POST " + o.url("/order") +
                         " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello");
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(o.connections() == 1);
}
