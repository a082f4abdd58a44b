// Upstream failures (refused, connect/response timeouts, truncated bodies),
// malformed requests, and client-side timeouts.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string get(const std::string& url)
{
    return "GET " + url + " HTTP/1.1\r\nHost: x\r\n\r\n";
}

} // namespace

TEST_CASE("integration: a refused upstream connection gives 502", "[integration][errors]")
{
    const std::uint16_t closed = unused_port();
    const std::string auth = "127.0.0.1:" + std::to_string(closed);
    Proxy p(proxy_args({"--connect-ports", "any"}));
    {
        Conn c = p.connect();
        auto r = c.roundtrip(get("http://" + auth + "/"));
        REQUIRE(r);
        CHECK(r->status == 502);
    }
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT " + auth + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n"));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 502);
    }
    // The proxy keeps serving afterwards.
    Origin o(static_origin("fine"));
    Conn c = p.connect();
    auto good = c.roundtrip(get(o.url("/")));
    REQUIRE(good);
    CHECK(good->body == "fine");
}

TEST_CASE("integration: an upstream connect that hangs gives 504 after --timeout-connect",
          "[integration][errors][timeouts]")
{
    HangListener hang;
    Proxy p(proxy_args({"--timeout-connect", "300ms", "--connect-ports", "any"}));
    const std::string auth = "127.0.0.1:" + std::to_string(hang.port());
    {
        Conn c = p.connect();
        auto start = Clock::now();
        auto r = c.roundtrip(get("http://" + auth + "/slow"));
        auto ms = elapsed_ms(start);
        REQUIRE(r);
        CHECK(r->status == 504);
        CHECK(ms >= 250);
        CHECK(ms < 3000);
    }
    {
        Conn c = p.connect();
        auto start = Clock::now();
        REQUIRE(c.send_all("CONNECT " + auth + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n"));
        auto r = c.read_response(kWait, true);
        auto ms = elapsed_ms(start);
        REQUIRE(r);
        CHECK(r->status == 504);
        CHECK(ms >= 250);
        CHECK(ms < 3000);
    }
}

TEST_CASE("integration: no upstream response within --timeout-response gives 504",
          "[integration][errors][timeouts]")
{
    Origin o(silent_origin());
    Proxy p(proxy_args({"--timeout-response", "300ms"}));
    Conn c = p.connect();
    auto start = Clock::now();
    auto r = c.roundtrip(get(o.url("/never")));
    auto ms = elapsed_ms(start);
    REQUIRE(r);
    CHECK(r->status == 504);
    CHECK(ms >= 250);
    CHECK(ms < 3000);
    CHECK(o.received().find("GET /never HTTP/1.1\r\n") == 0);
}

TEST_CASE("integration: an upstream closing mid-body never looks complete to the client",
          "[integration][errors]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        if (r.target == "/chunked")
            return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", true};
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n0123456789", true};
    }));
    Proxy p(proxy_args());

    SECTION("raw client, Content-Length")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all(get(o.url("/cl"))));
        auto head = c.read_until("\r\n\r\n");
        REQUIRE(head);
        INFO("head:\n" << *head);
        CHECK(head->rfind("HTTP/1.1 200", 0) == 0);
        auto rest = c.read_until_close(kWait);
        CHECK(rest.closed);
        CHECK(rest.data.size() < 1000);
        CHECK(rest.data == std::string("0123456789").substr(0, rest.data.size()));
    }
    SECTION("raw client, chunked")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all(get(o.url("/chunked"))));
        auto head = c.read_until("\r\n\r\n");
        REQUIRE(head);
        auto rest = c.read_until_close(kWait);
        CHECK(rest.closed);
        INFO("after head: " << rest.data);
        // No terminating zero-size chunk was invented.
        CHECK(rest.data.find("0\r\n\r\n") == std::string::npos);
    }
    SECTION("curl reports an error")
    {
        auto r = curl({"-x", p.url(), o.url("/cl")});
        INFO("curl stderr: " << r.err);
        CHECK(r.exited);
        CHECK(r.exit_code != 0);
        CHECK(r.out.size() < 1000);
    }
}

TEST_CASE("integration: malformed requests get 400, are closed, and nothing reaches the origin",
          "[integration][errors][parse]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args());
    const std::string url = o.url("/p");
    struct Case {
        const char* what;
        std::string bytes;
    };
    const std::vector<Case> cases{
        {"garbage request line", "GARBAGE\r\n\r\n"},
        {"missing version", "GET " + url + "\r\nHost: x\r\n\r\n"},
        {"junk after version", "GET " + url + " HTTP/1.1 junk\r\nHost: x\r\n\r\n"},
        {"space before colon", "GET " + url + " HTTP/1.1\r\nHost : x\r\n\r\n"},
        {"field without colon", "GET " + url + " HTTP/1.1\r\nHost: x\r\nNoColonHere\r\n\r\n"},
        {"empty field name", "GET " + url + " HTTP/1.1\r\nHost: x\r\n: value\r\n\r\n"},
        {"both Content-Length and Transfer-Encoding",
         "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"non-numeric Content-Length", "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n"},
        {"negative Content-Length", "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"},
        {"signed Content-Length", "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello"},
        {"conflicting Content-Lengths",
         "POST " + url + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"},
        {"Transfer-Encoding not ending in chunked",
         "POST " + url + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\nxxxx"},
        {"control character in target", "GET " + url + "\x01x HTTP/1.1\r\nHost: x\r\n\r\n"},
    };
    for (const auto& tc : cases) {
        INFO("case: " << tc.what);
        Conn c = p.connect();
        REQUIRE(c.send_all(tc.bytes));
        auto r = c.read_response(Ms(3000), true);
        REQUIRE(r);
        CHECK(r->status == 400);
        // The body (if any) may be pending; afterwards the proxy closes.
        CHECK(c.wait_closed(Ms(3000)));
    }
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
    CHECK(o.received().empty());
}

TEST_CASE("integration: an unusable absolute URL gets 400 and nothing is contacted",
          "[integration][errors][parse]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args());
    const std::string port = std::to_string(o.port());
    // Each is a complete, well-framed request whose target cannot be used;
    // whether the connection stays open afterwards is not specified.
    const std::vector<std::string> targets{"http://127.0.0.1:99999/", "http://127.0.0.1:" + port + "x/",
                                           "http:///nohost", "http://:" + port + "/"};
    for (const auto& target : targets) {
        INFO("target: " << target);
        Conn c = p.connect();
        auto r = c.roundtrip("GET " + target + " HTTP/1.1\r\nHost: x\r\n\r\n", Ms(3000));
        REQUIRE(r);
        CHECK(r->status == 400);
    }
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
}

TEST_CASE("integration: a request line over 8 KiB gets 414", "[integration][errors][parse]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args());
    Conn c = p.connect();
    std::string req = "GET " + o.url("/" + std::string(9000, 'a')) + " HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(c.send_all(req));
    auto r = c.read_response(Ms(3000), true);
    REQUIRE(r);
    CHECK(r->status == 414);
    CHECK(c.wait_closed(Ms(3000)));
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
    CHECK(o.received().empty());
}

TEST_CASE("integration: a request line just under 8 KiB is forwarded", "[integration][errors][parse]")
{
    Origin o(http_origin([](const HttpRequest& r) { return Reply{http_response(200, std::to_string(r.target.size()))}; }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    // "GET " + url + " HTTP/1.1" stays below 8000 bytes.
    std::string path = "/" + std::string(7900, 'b');
    auto r = c.roundtrip("GET " + o.url(path) + " HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == std::to_string(path.size()));
}

TEST_CASE("integration: a partial head is cut after --timeout-header", "[integration][timeouts]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args({"--timeout-header", "300ms"}));
    Conn c = p.connect();
    auto start = Clock::now();
    REQUIRE(c.send_all("GET " + o.url("/partial") + " HTTP/1.1\r\nHost: x\r\n"));
    auto rest = c.read_until_close(Ms(3000));
    auto ms = elapsed_ms(start);
    INFO("received: " << rest.data);
    CHECK(rest.closed);
    CHECK(ms >= 250);
    CHECK(ms < 3000);
    if (!rest.data.empty())
        CHECK(rest.data.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: a later request's head stalled on a kept-alive connection gets 408 after "
          "--timeout-header, not --timeout-idle",
          "[integration][timeouts]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--timeout-header", "300ms", "--timeout-idle", "20s"}));
    Conn c = p.connect();
    auto first = c.roundtrip(get(o.url("/first")));
    REQUIRE(first);
    CHECK(first->status == 200);
    auto start = Clock::now();
    REQUIRE(c.send_all("GET " + o.url("/slow") + " HTTP/1.1\r\nHost: x\r\n"));  // never finished
    auto rest = c.read_until_close(Ms(5000));
    auto ms = elapsed_ms(start);
    INFO("received: " << rest.data);
    CHECK(rest.closed);
    CHECK(ms >= 250);
    CHECK(ms < 3000);
    CHECK(rest.data.rfind("HTTP/1.1 408", 0) == 0);
    CHECK(o.requests().size() == 1);
}

TEST_CASE("integration: an idle keep-alive connection is closed after --timeout-idle",
          "[integration][timeouts]")
{
    Origin o(static_origin("idle"));
    Proxy p(proxy_args({"--timeout-idle", "300ms"}));
    Conn c = p.connect();
    // Activity keeps it open: requests every 150 ms for longer than the timeout.
    for (int i = 0; i < 5; ++i) {
        auto r = c.roundtrip(get(o.url("/busy" + std::to_string(i))));
        REQUIRE(r);
        CHECK(r->body == "idle");
        std::this_thread::sleep_for(Ms(150));
    }
    auto start = Clock::now();
    auto r = c.roundtrip(get(o.url("/last")));
    REQUIRE(r);
    CHECK(c.wait_closed(Ms(3000)));
    auto ms = elapsed_ms(start);
    CHECK(ms >= 250);
    CHECK(ms < 3000);
    CHECK(o.requests().size() == 6);
}
