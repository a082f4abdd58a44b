// Plain HTTP forwarding: request/response rewriting, bodies, keep-alive,
// pipelining, HTTP/1.0, --backend, names, loops, curl, IPv6.
#include "harness.hpp"

#include <cstdlib>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string get(const std::string& url, const std::string& extra = "Host: x\r\n")
{
    return "GET " + url + " HTTP/1.1\r\n" + extra + "\r\n";
}

// Origin answering each request with its own target as the body.
Origin::Handler target_echo_origin(std::string prefix = "")
{
    return http_origin([prefix](const HttpRequest& r) {
        return Reply{http_response(200, prefix + r.target)};
    });
}

} // namespace

TEST_CASE("integration: absolute-form GET reaches the origin in origin-form with Host and Via",
          "[integration][forwarding]")
{
    Origin o(static_origin("hello world"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/path/x?q=1&r=2") +
                         " HTTP/1.1\r\nHost: wrong.example\r\nUser-Agent: itest/1\r\n"
                         "X-Custom: kept\r\nAccept: */*\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "hello world");
    auto via = r->header("Via");
    REQUIRE(via);
    CHECK(via->find("1.1 cproxy") != std::string::npos);

    REQUIRE(o.wait_requests(1));
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 1);
    const auto& q = reqs[0];
    INFO("origin saw:\n" << q.raw_head);
    CHECK(q.method == "GET");
    CHECK(q.target == "/path/x?q=1&r=2");
    CHECK(q.version == "HTTP/1.1");
    CHECK(q.count("Host") == 1);
    CHECK(q.header("Host") == o.authority());
    CHECK(q.header("User-Agent") == "itest/1");
    CHECK(q.header("X-Custom") == "kept");
    CHECK(q.header("Accept") == "*/*");
    auto qvia = q.header("Via");
    REQUIRE(qvia);
    CHECK(qvia->find("1.1 cproxy") != std::string::npos);
}

TEST_CASE("integration: the Host header sent upstream is always the URL's authority",
          "[integration][forwarding]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    {
        Conn c = p.connect();
        auto r = c.roundtrip("GET " + o.url("/h1") + " HTTP/1.1\r\nHost: other:1\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    {
        // An HTTP/1.0 client may send no Host at all.
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/h2") + " HTTP/1.0\r\nUser-Agent: old\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    REQUIRE(o.wait_requests(2));
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 2);
    for (const auto& q : reqs) {
        INFO("origin saw:\n" << q.raw_head);
        CHECK(q.header("Host") == o.authority());
        CHECK(q.count("Host") == 1);
    }
    CHECK(reqs[0].target == "/h1");
    CHECK(reqs[1].target == "/h2");
}

TEST_CASE("integration: hop-by-hop request headers are removed", "[integration][forwarding]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/hop") +
                         " HTTP/1.1\r\n"
                         "Host: x\r\n"
                         "Connection: keep-alive, X-Hop-Secret\r\n"
                         "X-Hop-Secret: must-not-pass\r\n"
                         "Proxy-Connection: keep-alive\r\n"
                         "Proxy-Authorization: Basic " + base64("a:b") + "\r\n"
                         "Keep-Alive: timeout=5\r\n"
                         "TE: trailers\r\n"
                         "Trailer: X-T\r\n"
                         "X-End-To-End: stays\r\n"
                         "\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(o.wait_requests(1));
    const auto q = o.requests().at(0);
    INFO("origin saw:\n" << q.raw_head);
    CHECK(q.count("X-Hop-Secret") == 0);
    CHECK(q.count("Proxy-Connection") == 0);
    CHECK(q.count("Proxy-Authorization") == 0);
    CHECK(q.count("Keep-Alive") == 0);
    CHECK(q.count("TE") == 0);
    CHECK(q.count("Trailer") == 0);
    CHECK(q.header("X-End-To-End") == "stays");
    // Any Connection header the proxy sends upstream is its own, never the
    // client's token list.
    for (const auto& [k, v] : q.headers)
        if (iequals(k, "Connection"))
            CHECK_FALSE(icontains(v, "x-hop-secret"));
    CHECK(q.raw_head.find("must-not-pass") == std::string::npos);
}

TEST_CASE("integration: Upgrade is forwarded; a server that declines answers as usual (RFC 9110 §7.8)",
          "[integration][forwarding]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/up") +
                         " HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\nConnection: Upgrade\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
    REQUIRE(o.wait_requests(1));
    const auto q = o.requests().at(0);
    INFO("origin saw:\n" << q.raw_head);
    CHECK(q.header("Upgrade") == "h2c");
    CHECK(q.header("Connection") == "Upgrade");
    // Without Connection: Upgrade the field is not a request to switch.
    auto plain = c.roundtrip("GET " + o.url("/plain") + " HTTP/1.1\r\nHost: x\r\nUpgrade: h2c\r\n\r\n");
    REQUIRE(plain);
    REQUIRE(o.wait_requests(2));
    CHECK(o.requests().at(1).count("Upgrade") == 0);
}

TEST_CASE("integration: after 101 Switching Protocols the connection is a tunnel both ways (RFC 9110 §15.2.2)",
          "[integration][forwarding]")
{
    // A WebSocket-like server: 101, a greeting right behind the head, then echo.
    Origin o([](Origin& origin, Conn& conn) {
        auto request = conn.read_request();
        if (!request)
            return;
        origin.record(*request);
        conn.send_all("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      "\r\nhello from the new protocol|");
        while (true) {
            long n = conn.fill(Ms(2000));
            if (n <= 0)
                break;
            std::string bytes = std::move(conn.buffer());
            conn.buffer().clear();
            if (!conn.send_all(bytes))
                break;
        }
    });
    Proxy p(proxy_args({"-v"}));
    Conn c = p.connect();
    // The client's first frame rides right behind its request head.
    REQUIRE(c.send_all("GET " + o.url("/ws") + " HTTP/1.1\r\nHost: " + o.authority() +
                       "\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\nearly frame|"));
    auto head = c.read_until("\r\n\r\n");
    REQUIRE(head);
    INFO(*head);
    CHECK(head->rfind("HTTP/1.1 101 ", 0) == 0);
    CHECK(icontains(*head, "\r\nUpgrade: websocket\r\n"));
    CHECK(icontains(*head, "\r\nConnection: Upgrade\r\n"));
    auto greeting = c.read_exact(std::string("hello from the new protocol|").size());
    REQUIRE(greeting);
    CHECK(*greeting == "hello from the new protocol|");
    auto early = c.read_exact(std::string("early frame|").size());
    REQUIRE(early);
    CHECK(*early == "early frame|");
    std::string payload = random_bytes(300 * 1024, 7);
    REQUIRE(c.send_all(payload));
    auto back = c.read_exact(payload.size());
    REQUIRE(back);
    CHECK(fnv1a(*back) == fnv1a(payload));
    c.close();
    CHECK(p.wait_err([](const std::string& err) {
        for (const auto& line : access_log_lines(err))
            if (line[5] == "101" && line[3] == "GET")
                return true;
        return false;
    }));
}

TEST_CASE("integration: a 101 the client did not ask for is refused with 502", "[integration][forwarding]")
{
    Origin o(http_origin([](const HttpRequest&) {
        return Reply{"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url() + " HTTP/1.1\r\nHost: x\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 502);
}

TEST_CASE("integration: hop-by-hop response headers are removed and Via is added",
          "[integration][forwarding]")
{
    Origin o(http_origin([](const HttpRequest&) {
        return Reply{http_response(200, "body-bytes",
                                   "Connection: X-Resp-Secret\r\n"
                                   "X-Resp-Secret: hidden\r\n"
                                   "Keep-Alive: timeout=99\r\n"
                                   "Proxy-Connection: keep-alive\r\n"
                                   "Upgrade: foo\r\n"
                                   "X-End: ok\r\n")};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip(get(o.url("/resp")));
    REQUIRE(r);
    INFO("client saw:\n" << r->raw_head);
    CHECK(r->status == 200);
    CHECK(r->body == "body-bytes");
    CHECK(r->count("X-Resp-Secret") == 0);
    CHECK(r->count("Keep-Alive") == 0);
    CHECK(r->count("Proxy-Connection") == 0);
    CHECK(r->count("Upgrade") == 0);
    CHECK(r->raw_head.find("hidden") == std::string::npos);
    CHECK(r->header("X-End") == "ok");
    auto via = r->header("Via");
    REQUIRE(via);
    CHECK(via->find("1.1 cproxy") != std::string::npos);
    // The connection is still usable.
    auto r2 = c.roundtrip(get(o.url("/again")));
    REQUIRE(r2);
    CHECK(r2->body == "body-bytes");
}

TEST_CASE("integration: request bodies are relayed by Content-Length and chunked",
          "[integration][forwarding]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, std::to_string(r.body.size()) + ":" +
                                            std::to_string(fnv1a(r.body)))};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();

    SECTION("Content-Length, 300 KiB")
    {
        std::string body = random_bytes(300 * 1024, 1);
        auto r = c.roundtrip("POST " + o.url("/upload") +
                             " HTTP/1.1\r\nHost: x\r\nContent-Type: application/octet-stream\r\n"
                             "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == std::to_string(body.size()) + ":" + std::to_string(fnv1a(body)));
        auto q = o.requests().at(0);
        CHECK(q.header("Content-Length") == std::to_string(body.size()));
        CHECK(q.body == body);
    }
    SECTION("chunked, relayed as-is")
    {
        std::string chunked = "5\r\nhello\r\n"
                              "1;ext=1\r\n \r\n"
                              "10\r\n0123456789abcdef\r\n"
                              "0\r\n\r\n";
        std::string big = random_bytes(100000, 2);
        char hex[32];
        std::snprintf(hex, sizeof hex, "%zx", big.size());
        chunked.insert(chunked.size() - 5, std::string(hex) + "\r\n" + big + "\r\n");
        auto r = c.roundtrip("POST " + o.url("/chunked") +
                             " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked);
        REQUIRE(r);
        CHECK(r->status == 200);
        std::string decoded = "hello 0123456789abcdef" + big;
        CHECK(r->body == std::to_string(decoded.size()) + ":" + std::to_string(fnv1a(decoded)));
        auto q = o.requests().at(0);
        CHECK(q.header("Transfer-Encoding") == "chunked");
        CHECK(q.count("Content-Length") == 0);
        CHECK(q.raw_body.size() == chunked.size());
        CHECK(q.raw_body == chunked);
    }
    // A second request on the same connection after a body still works.
    auto r3 = c.roundtrip("POST " + o.url("/after") +
                          " HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
    REQUIRE(r3);
    CHECK(r3->body == "3:" + std::to_string(fnv1a("abc")));
}

TEST_CASE("integration: response bodies by Content-Length and chunked are relayed intact",
          "[integration][forwarding]")
{
    const std::string big = random_bytes(2 * 1024 * 1024, 3);
    Origin o(http_origin([&big](const HttpRequest& r) {
        if (r.target == "/big")
            return Reply{http_response(200, big)};
        // chunked, with a chunk extension and a trailer
        std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                          "4\r\nWiki\r\n"
                          "6;name=val\r\npedia \r\n"
                          "E\r\nin \r\n\r\nchunks.\r\n"
                          "0\r\nX-Trailer: t\r\n\r\n";
        return Reply{raw};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r1 = c.roundtrip(get(o.url("/big")), Ms(10000));
    REQUIRE(r1);
    CHECK(r1->status == 200);
    CHECK(r1->body.size() == big.size());
    CHECK(fnv1a(r1->body) == fnv1a(big));
    auto r2 = c.roundtrip(get(o.url("/chunked")));
    REQUIRE(r2);
    CHECK(r2->status == 200);
    CHECK(r2->body == "Wikipedia in \r\n\r\nchunks.");
    // The connection survives a chunked response.
    auto r3 = c.roundtrip(get(o.url("/big")), Ms(10000));
    REQUIRE(r3);
    CHECK(fnv1a(r3->body) == fnv1a(big));
    CHECK(o.requests().size() == 3);
}

TEST_CASE("integration: a close-delimited response closes the client connection",
          "[integration][forwarding]")
{
    const std::string body = random_bytes(200000, 4);
    Origin o(http_origin([&body](const HttpRequest&) {
        return Reply{"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n\r\n" + body,
                     true};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    REQUIRE(c.send_all(get(o.url("/eof"))));
    auto r = c.read_response();
    REQUIRE(r);
    INFO("client saw:\n" << r->raw_head);
    CHECK(r->status == 200);
    // Delimited by close towards the client too (or by a length); either way
    // the bytes are intact and the connection is closed after.
    CHECK(r->body.size() == body.size());
    CHECK(fnv1a(r->body) == fnv1a(body));
    auto conn = r->header("Connection");
    REQUIRE(conn);
    CHECK(icontains(*conn, "close"));
    CHECK(c.wait_closed(Ms(3000)));
}

TEST_CASE("integration: HEAD, 204, 304 and 1xx responses carry no body", "[integration][forwarding]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        if (r.method == "HEAD")
            return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: text/plain\r\n\r\n"};
        if (r.target == "/204")
            return Reply{"HTTP/1.1 204 No Content\r\nX-A: 1\r\n\r\n"};
        if (r.target == "/304")
            return Reply{"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\nContent-Length: 99\r\n\r\n"};
        if (r.target == "/100")
            return Reply{"HTTP/1.1 100 Continue\r\n\r\n" + http_response(200, "after-100")};
        return Reply{http_response(200, "plain:" + r.target)};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();

    auto h = c.roundtrip("HEAD " + o.url("/head") + " HTTP/1.1\r\nHost: x\r\n\r\n", kWait, true);
    REQUIRE(h);
    CHECK(h->status == 200);
    CHECK(h->header("Content-Length") == "1234");
    auto n1 = c.roundtrip(get(o.url("/n1")));
    REQUIRE(n1); // would time out or be garbled if the proxy waited for 1234 bytes
    CHECK(n1->body == "plain:/n1");

    auto r204 = c.roundtrip(get(o.url("/204")));
    REQUIRE(r204);
    CHECK(r204->status == 204);
    auto n2 = c.roundtrip(get(o.url("/n2")));
    REQUIRE(n2);
    CHECK(n2->body == "plain:/n2");

    auto r304 = c.roundtrip(get(o.url("/304")));
    REQUIRE(r304);
    CHECK(r304->status == 304);
    auto n3 = c.roundtrip(get(o.url("/n3")));
    REQUIRE(n3);
    CHECK(n3->body == "plain:/n3");

    auto r100 = c.roundtrip("POST " + o.url("/100") +
                            " HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
    REQUIRE(r100);
    CHECK(r100->status == 200);
    CHECK(r100->body == "after-100");
    auto n4 = c.roundtrip(get(o.url("/n4")));
    REQUIRE(n4);
    CHECK(n4->body == "plain:/n4");
    CHECK(c.buffer().empty());
}

TEST_CASE("integration: keep-alive requests to two origins on one connection reach the right one",
          "[integration][forwarding]")
{
    Origin a(target_echo_origin("A"));
    Origin b(target_echo_origin("B"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    for (int i = 0; i < 3; ++i) {
        auto ra = c.roundtrip(get(a.url("/a" + std::to_string(i))));
        REQUIRE(ra);
        CHECK(ra->body == "A/a" + std::to_string(i));
        auto rb = c.roundtrip(get(b.url("/b" + std::to_string(i))));
        REQUIRE(rb);
        CHECK(rb->body == "B/b" + std::to_string(i));
    }
    auto qa = a.requests();
    auto qb = b.requests();
    REQUIRE(qa.size() == 3);
    REQUIRE(qb.size() == 3);
    for (int i = 0; i < 3; ++i) {
        CHECK(qa[static_cast<std::size_t>(i)].target == "/a" + std::to_string(i));
        CHECK(qb[static_cast<std::size_t>(i)].target == "/b" + std::to_string(i));
    }
}

TEST_CASE("integration: pipelined requests are answered in order", "[integration][forwarding]")
{
    // Origin A answers slowly, B at once: order must still follow requests.
    Origin a(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, "A" + r.target), false, Ms(150)};
    }));
    Origin b(target_echo_origin("B"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    std::string batch = get(a.url("/1")) + get(b.url("/2")) + get(a.url("/3")) +
                        "POST " + b.url("/4") + " HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody" +
                        get(b.url("/5"));
    REQUIRE(c.send_all(batch));
    const char* expect[] = {"A/1", "B/2", "A/3", "B/4", "B/5"};
    for (const char* e : expect) {
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == e);
    }
    CHECK(a.requests().size() == 2);
    CHECK(b.requests().size() == 3);
}

TEST_CASE("integration: HTTP/1.0 clients are closed after the response unless keep-alive",
          "[integration][forwarding]")
{
    Origin o(static_origin("ten"));
    Proxy p(proxy_args());

    SECTION("plain HTTP/1.0: closed")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/10") + " HTTP/1.0\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "ten");
        CHECK(c.wait_closed(Ms(3000)));
    }
    SECTION("HTTP/1.0 with Connection: keep-alive: stays open")
    {
        Conn c = p.connect();
        auto r = c.roundtrip("GET " + o.url("/10ka") + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "ten");
        auto r2 = c.roundtrip("GET " + o.url("/10ka2") + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        REQUIRE(r2);
        CHECK(r2->body == "ten");
        // The last one without keep-alive closes it.
        REQUIRE(c.send_all("GET " + o.url("/10end") + " HTTP/1.0\r\n\r\n"));
        auto r3 = c.read_response();
        REQUIRE(r3);
        CHECK(r3->body == "ten");
        CHECK(c.wait_closed(Ms(3000)));
    }
    SECTION("HTTP/1.1 with Connection: close: closed")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/11c") + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->body == "ten");
        CHECK(c.wait_closed(Ms(3000)));
    }
}

TEST_CASE("integration: origin-form requests go to --backend", "[integration][forwarding]")
{
    Origin o(target_echo_origin("backend:"));
    Proxy p(proxy_args({"--backend", o.authority()}));
    Conn c = p.connect();
    for (int i = 0; i < 3; ++i) {
        auto r = c.roundtrip("GET /index.html?i=" + std::to_string(i) +
                             " HTTP/1.1\r\nHost: anything\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "backend:/index.html?i=" + std::to_string(i));
    }
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 3);
    CHECK(reqs[0].target == "/index.html?i=0");
    CHECK(reqs[0].header("Via"));
}

TEST_CASE("integration: origin-form without --backend is 400 asking for an absolute URL",
          "[integration][forwarding]")
{
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    REQUIRE(r);
    INFO("body: " << r->body);
    CHECK(r->status == 400);
    CHECK(icontains(r->body, "absolute"));
}

TEST_CASE("integration: a request for the proxy's own address is refused without looping",
          "[integration][forwarding]")
{
    Proxy p(proxy_args({"-v"}));
    const int fds_before = p.open_fds();
    Conn c = p.connect();
    auto start = Clock::now();
    auto r = c.roundtrip("GET " + p.url() + "/loop HTTP/1.1\r\nHost: x\r\n\r\n", Ms(3000));
    REQUIRE(r);
    INFO("status " << r->status << " body: " << r->body);
    CHECK(r->status >= 400);
    CHECK(r->status < 600);
    CHECK(elapsed_ms(start) < 2000);
    c.close();
    // Nothing keeps circulating: at most a couple of requests were logged and
    // the proxy's descriptors return to their idle count.
    std::this_thread::sleep_for(Ms(200));
    INFO("stderr: " << p.err());
    CHECK(access_log_lines(p.err()).size() <= 2);
    // (a small allowance for lazily created pools; a loop would hold far more)
    CHECK(wait_until([&] { return p.open_fds() <= fds_before + 4; }, Ms(2000)));
    // Still serving.
    Origin o(static_origin("alive"));
    Conn c2 = p.connect();
    auto r2 = c2.roundtrip(get(o.url("/")));
    REQUIRE(r2);
    CHECK(r2->body == "alive");
}

TEST_CASE("integration: names resolve through /etc/hosts (origin.test)", "[integration][forwarding][dns]")
{
    REQUIRE(std::getenv("CPROXY_TEST_NETNS"));
    Origin o(static_origin("by-name"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    std::string auth = "origin.test:" + std::to_string(o.port());
    auto r = c.roundtrip("GET http://" + auth + "/named HTTP/1.1\r\nHost: " + auth + "\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "by-name");
    REQUIRE(o.wait_requests(1));
    auto q = o.requests().at(0);
    CHECK(q.target == "/named");
    CHECK(q.header("Host") == auth);
}

TEST_CASE("integration: an unresolvable name gives 502 naming the host", "[integration][forwarding][dns]")
{
    REQUIRE(std::getenv("CPROXY_TEST_NETNS"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto start = Clock::now();
    auto r = c.roundtrip("GET http://nxdomain.test/ HTTP/1.1\r\nHost: nxdomain.test\r\n\r\n");
    REQUIRE(r);
    INFO("body: " << r->body);
    CHECK(r->status == 502);
    CHECK(r->body.find("nxdomain.test") != std::string::npos);
    CHECK(elapsed_ms(start) < 4000);
}

TEST_CASE("integration: curl fetches through the proxy", "[integration][forwarding][curl]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, r.method + " " + r.target + " " + r.body)};
    }));
    Proxy p(proxy_args());
    auto g = curl({"-x", p.url(), o.url("/curl?x=1")});
    INFO("curl stderr: " << g.err);
    CHECK(g.exited);
    CHECK(g.exit_code == 0);
    CHECK(g.out == "GET /curl?x=1 ");
    auto post = curl({"-x", p.url(), "--data-binary", "payload-123", o.url("/post")});
    INFO("curl stderr: " << post.err);
    CHECK(post.exit_code == 0);
    CHECK(post.out == "POST /post payload-123");
    // Two URLs in one curl run: keep-alive through the proxy.
    auto two = curl({"-x", p.url(), o.url("/one"), o.url("/two")});
    CHECK(two.exit_code == 0);
    CHECK(two.out == "GET /one GET /two ");
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 4);
    CHECK(reqs[0].count("Proxy-Connection") == 0);
}

TEST_CASE("integration: an IPv6 listener serves a client on ::1", "[integration][forwarding][ipv6]")
{
    REQUIRE(ipv6_loopback_available());
    Origin o(static_origin("six"));
    Proxy p({"-c", "/dev/null", "-l", "[::1]:0"});
    INFO("line: " << p.listen_line());
    REQUIRE(p.listeners().size() == 1);
    CHECK(p.listeners()[0].first == "::1");
    CHECK(p.listen_line().find("[::1]:") != std::string::npos);
    Conn c = connect_to(p.port(), "::1");
    auto r = c.roundtrip(get(o.url("/v6")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "six");
    auto g = curl({"-x", "http://[::1]:" + std::to_string(p.port()), o.url("/v6curl")});
    INFO("curl stderr: " << g.err);
    CHECK(g.exit_code == 0);
    CHECK(g.out == "six");
}

TEST_CASE("integration: IPv4 and IPv6 listeners together", "[integration][forwarding][ipv6]")
{
    REQUIRE(ipv6_loopback_available());
    Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:0", "-l", "[::1]:0"});
    INFO("line: " << p.listen_line());
    REQUIRE(p.listeners().size() == 2);
    CHECK(p.listen_line().find("listening on 127.0.0.1:") != std::string::npos);
    CHECK(p.listen_line().find(", [::1]:") != std::string::npos);
    Origin o(static_origin("both"));
    for (std::size_t i = 0; i < 2; ++i) {
        Conn c = connect_to(p.port(i), p.listeners()[i].first);
        auto r = c.roundtrip(get(o.url("/")));
        REQUIRE(r);
        CHECK(r->body == "both");
    }
}

TEST_CASE("integration: forwarded off|xff|rfc7239 tells the origin the client's address, after earlier hops",
          "[integration][forwarding]")
{
    Origin o(static_origin("ok"));
    auto seen = [&](const std::vector<std::string>& extra, const std::string& fields) {
        Proxy p(proxy_args(extra));
        Conn c = p.connect();
        std::size_t before = o.requests().size();
        auto r = c.roundtrip("GET " + o.url("/f") + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n" + fields + "\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(o.wait_requests(before + 1));
        return o.requests().back();
    };
    auto q = seen({}, "");
    CHECK(q.count("X-Forwarded-For") == 0);  // off by default: clients' privacy
    CHECK(q.count("Forwarded") == 0);

    q = seen({"--forwarded", "xff"}, "");
    CHECK(q.header("X-Forwarded-For") == "127.0.0.1");
    q = seen({"--forwarded", "xff"}, "X-Forwarded-For: 198.51.100.4\r\n");
    CHECK(q.count("X-Forwarded-For") == 1);
    CHECK(q.header("X-Forwarded-For") == "198.51.100.4, 127.0.0.1");

    q = seen({"--forwarded", "rfc7239"}, "Forwarded: for=198.51.100.4;proto=https\r\n");
    CHECK(q.count("Forwarded") == 1);
    CHECK(q.header("Forwarded") == "for=198.51.100.4;proto=https, for=127.0.0.1");
    CHECK(q.count("X-Forwarded-For") == 0);
}

TEST_CASE("integration: forwarded: an IPv6 client is bracketed and quoted in Forwarded", "[integration][forwarding]")
{
    REQUIRE(ipv6_loopback_available());  // the test namespace always has ::1
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--forwarded", "rfc7239", "--listen", "[::1]:0"}));
    Conn c = connect_to(p.port(1), "::1");
    auto r = c.roundtrip("GET " + o.url("/v6") + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests().back().header("Forwarded") == "for=\"[::1]\"");
}

TEST_CASE("integration: forwarded: a bad value is a start-up error", "[integration][forwarding][cli]")
{
    std::string bin = proxy_binary();
    RunResult r = run_command({bin.find('/') == std::string::npos ? "./" + bin : bin, "--forwarded", "yes"}, kWait);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("--forwarded: 'yes' is not off, xff or rfc7239") != std::string::npos);
}
