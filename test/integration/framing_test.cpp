// Framing written from the parse (RFC 9110 §5.6.1, §8.6; RFC 9112 §6): what
// the next hop receives frames each message exactly as cproxy did, whatever
// spelling the sender used; HTTP/1.0 clients are served over HTTP/1.1
// upstream connections that stay reusable; an upstream connection is reused
// only when both the request and the response allow it.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

namespace {

const std::string chunked_hello = "5\r\nhello\r\n0\r\n\r\n";

// A request followed on the same connection by GET /after: the origin must
// see two requests, the first with body `body`, the second intact.
void expect_two_requests(Origin& o, const std::string& body)
{
    REQUIRE(o.wait_requests(2));
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 2);
    CHECK(reqs[0].body == body);
    CHECK(reqs[1].method == "GET");
    CHECK(reqs[1].target == "/after");
}

} // namespace

TEST_CASE("integration: framing: a leniently spelled Transfer-Encoding reaches the origin as exactly one "
          "'Transfer-Encoding: chunked' (RFC 9112 §6.1, RFC 9110 §5.6.1)",
          "[integration][framing]")
{
    for (std::string framing : {"Transfer-Encoding: ,chunked\r\n", "Transfer-Encoding: chunked,\r\n",
                                "Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n",
                                "Transfer-Encoding: , chunked ,\r\n"}) {
        INFO("framing sent: " << framing);
        Origin o(static_origin("ok"));
        Proxy p(proxy_args());
        Conn c = p.connect();
        REQUIRE(c.send_all("POST " + o.url("/upload") + " HTTP/1.1\r\nHost: h\r\n" + framing + "\r\n" +
                           chunked_hello + "GET " + o.url("/after") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
        auto first = c.read_response();
        auto second = c.read_response();
        REQUIRE(first);
        REQUIRE(second);
        CHECK(first->status == 200);
        CHECK(second->status == 200);
        expect_two_requests(o, "hello");
        auto upload = o.requests()[0];
        INFO("origin saw:\n" << upload.raw_head);
        CHECK(upload.count("Transfer-Encoding") == 1);
        CHECK(upload.header("Transfer-Encoding") == "chunked");
        CHECK(upload.count("Content-Length") == 0);
        CHECK(upload.raw_body == chunked_hello);
    }
}

TEST_CASE("integration: framing: equal Content-Length values reach the origin as one 'Content-Length: N' "
          "(RFC 9110 §8.6)",
          "[integration][framing]")
{
    for (std::string framing : {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n",
                                "Content-Length: 5,5,\r\n"}) {
        INFO("framing sent: " << framing);
        Origin o(static_origin("ok"));
        Proxy p(proxy_args());
        Conn c = p.connect();
        REQUIRE(c.send_all("POST " + o.url("/upload") + " HTTP/1.1\r\nHost: h\r\n" + framing + "\r\nhello" +
                           "GET " + o.url("/after") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
        auto first = c.read_response();
        REQUIRE(first);
        CHECK(first->status == 200);
        auto second = c.read_response();
        REQUIRE(second);
        expect_two_requests(o, "hello");
        auto upload = o.requests()[0];
        INFO("origin saw:\n" << upload.raw_head);
        CHECK(upload.count("Content-Length") == 1);
        CHECK(upload.header("Content-Length") == "5");
    }
}

TEST_CASE("integration: framing: a request field named Content_Length or Transfer_Encoding gets 400 and the "
          "connection closes (servers that read '_' as '-' would frame it differently)",
          "[integration][framing]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    for (std::string field : {"Transfer_Encoding: chunked\r\n", "content_length: 5\r\n", "CONTENT_LENGTH: 0\r\n"}) {
        INFO("field: " << field);
        Conn c = p.connect();
        REQUIRE(c.send_all("POST " + o.url("/u") + " HTTP/1.1\r\nHost: h\r\n" + field + "\r\n" + chunked_hello +
                           "GET " + o.url("/after") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 400);
        CHECK(r->header("Connection") == "close");
        CHECK(c.wait_closed());
    }
    // Other names with underscores pass as they are.
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/x") + " HTTP/1.1\r\nHost: h\r\nX_Custom_Field: 1\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests().size() == 1);
    CHECK(o.requests()[0].header("X_Custom_Field") == "1");
}

TEST_CASE("integration: framing: a request coded other than by a single chunked gets 501 and the connection "
          "closes (RFC 9112 §6.1)",
          "[integration][framing]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    for (std::string coding : {"gzip, chunked", "deflate,chunked"}) {
        INFO("coding: " << coding);
        Conn c = p.connect();
        REQUIRE(c.send_all("POST " + o.url("/u") + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: " + coding +
                           "\r\n\r\n" + chunked_hello));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 501);
        CHECK(r->header("Connection") == "close");
        CHECK(c.wait_closed());
    }
    // A final coding other than chunked leaves the length unknown: 400 (RFC 9112 §6.3).
    Conn c = p.connect();
    REQUIRE(c.send_all("POST " + o.url("/u") + " HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nxx"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 400);
    CHECK(c.wait_closed());
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: framing: response codings reach the client normalised, chunked last, and "
          "Content-Length collapsed to one",
          "[integration][framing]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        if (r.target == "/coded")
            return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: ,chunked\r\n\r\n" +
                         std::string("3\r\nabc\r\n0\r\n\r\n")};
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\nContent-Length: 3\r\n\r\nxyz"};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto coded = c.roundtrip("GET " + o.url("/coded") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(coded);
    INFO("client got:\n" << coded->raw_head);
    CHECK(coded->count("Transfer-Encoding") == 1);
    CHECK(coded->header("Transfer-Encoding") == "gzip, chunked");
    CHECK(coded->body == "abc");
    auto length = c.roundtrip("GET " + o.url("/length") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(length);
    INFO("client got:\n" << length->raw_head);
    CHECK(length->count("Content-Length") == 1);
    CHECK(length->header("Content-Length") == "3");
    CHECK(length->body == "xyz");
}

TEST_CASE("integration: framing: responses to HEAD and 304 keep their Content-Length; 204 gets none",
          "[integration][framing]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        if (r.target == "/304") return Reply{"HTTP/1.1 304 Not Modified\r\nContent-Length: 12\r\n\r\n"};
        if (r.target == "/204") return Reply{"HTTP/1.1 204 No Content\r\nContent-Length: 12\r\n\r\n"};
        return Reply{"HTTP/1.1 200 OK\r\nContent-Length: 12, 12\r\n\r\n"};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto head = c.roundtrip("HEAD " + o.url("/h") + " HTTP/1.1\r\nHost: h\r\n\r\n", kWait, true);
    REQUIRE(head);
    CHECK(head->header("Content-Length") == "12");
    CHECK(head->count("Content-Length") == 1);
    auto not_modified = c.roundtrip("GET " + o.url("/304") + " HTTP/1.1\r\nHost: h\r\n\r\n", kWait, true);
    REQUIRE(not_modified);
    CHECK(not_modified->status == 304);
    CHECK(not_modified->header("Content-Length") == "12");
    auto no_content = c.roundtrip("GET " + o.url("/204") + " HTTP/1.1\r\nHost: h\r\n\r\n", kWait, true);
    REQUIRE(no_content);
    CHECK(no_content->status == 204);
    CHECK(no_content->count("Content-Length") == 0);
}

TEST_CASE("integration: framing: a chunked request naming Transfer-Encoding in Connection still reaches the "
          "origin chunked",
          "[integration][framing]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args());
    Conn c = p.connect();
    REQUIRE(c.send_all("POST " + o.url("/u") + " HTTP/1.1\r\nHost: h\r\nConnection: transfer-encoding\r\n"
                       "Transfer-Encoding: chunked\r\n\r\n" + chunked_hello + "GET " + o.url("/after") +
                       " HTTP/1.1\r\nHost: h\r\n\r\n"));
    REQUIRE(c.read_response());
    REQUIRE(c.read_response());
    expect_two_requests(o, "hello");
    CHECK(o.requests()[0].header("Transfer-Encoding") == "chunked");
}

TEST_CASE("integration: http10: an HTTP/1.0 client's request goes upstream as HTTP/1.1, and the connection "
          "is reused for the next one (RFC 9110 §6.2)",
          "[integration][framing][http10]")
{
    // Like a real server: an HTTP/1.0 request without keep-alive is answered,
    // without saying so, and the connection closed.
    Origin o(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, r.target), r.version == "HTTP/1.0"};
    }));
    Proxy p(proxy_args());
    for (int i = 0; i < 5; ++i) {
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/r" + std::to_string(i)) + " HTTP/1.0\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "/r" + std::to_string(i));
        CHECK(c.wait_closed());
    }
    REQUIRE(o.wait_requests(5));
    for (const auto& q : o.requests()) {
        CHECK(q.version == "HTTP/1.1");
        CHECK(q.count("Connection") == 0);
    }
    CHECK(o.connections() == 1);
}

TEST_CASE("integration: http10: a chunked response reaches an HTTP/1.0 client decoded and ended by close",
          "[integration][framing][http10]")
{
    Origin o(http_origin([](const HttpRequest&) {
        return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;x=1\r\n world\r\n"
                     "0\r\nX-Trailer: t\r\n\r\n"};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    REQUIRE(c.send_all("GET " + o.url("/") + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto all = c.read_until_close();
    REQUIRE(all.closed);
    auto end = all.data.find("\r\n\r\n");
    REQUIRE(end != std::string::npos);
    std::string head = all.data.substr(0, end + 4);
    INFO("client got:\n" << all.data);
    CHECK(head.find("Transfer-Encoding") == std::string::npos);
    CHECK(head.find("Content-Length") == std::string::npos);
    CHECK(head.find("Connection: close\r\n") != std::string::npos);
    CHECK(all.data.substr(end + 4) == "hello world");
    // The upstream connection is still good for the next request.
    Conn again = p.connect();
    auto r = again.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->body == "hello world");
    CHECK(o.connections() == 1);
}

TEST_CASE("integration: http10: keep-alive is honoured for an HTTP/1.0 client when the response length is "
          "known, and Host comes from the target",
          "[integration][framing][http10]")
{
    Origin o(http_origin([](const HttpRequest& r) { return Reply{http_response(200, r.target)}; }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    for (int i = 0; i < 3; ++i) {
        auto r = c.roundtrip("GET " + o.url("/k" + std::to_string(i)) + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->header("Connection") == "keep-alive");
    }
    REQUIRE(o.wait_requests(3));
    for (const auto& q : o.requests()) CHECK(q.header("Host") == o.authority());
}

TEST_CASE("integration: http10: an origin-form HTTP/1.0 request without Host gets the backend's HOST:PORT",
          "[integration][framing][http10]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--backend", o.authority()}));
    Conn c = p.connect();
    REQUIRE(c.send_all("GET /x HTTP/1.0\r\n\r\n"));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests()[0].header("Host") == o.authority());
    CHECK(o.requests()[0].version == "HTTP/1.1");
}

TEST_CASE("integration: reuse: an upstream connection is reused only when the response allows it",
          "[integration][framing]")
{
    struct Case {
        const char* name;
        std::string response;
        bool reusable;
    };
    const std::vector<Case> cases = {
        {"HTTP/1.1 with a length", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", true},
        {"HTTP/1.1 chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n", true},
        {"Connection: close", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok", false},
        {"HTTP/1.0 without keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false},
        {"HTTP/1.0 with keep-alive", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\nok",
         true},
    };
    for (const Case& k : cases) {
        INFO("response: " << k.name);
        // The origin keeps every connection open: whether the proxy reuses
        // one is its own decision, and shows in the count.
        Origin o(http_origin([&k](const HttpRequest&) { return Reply{k.response}; }));
        Proxy p(proxy_args());
        for (int i = 0; i < 2; ++i) {
            Conn c = p.connect();
            auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
            REQUIRE(r);
            CHECK(r->body == "ok");
        }
        REQUIRE(o.wait_requests(2));
        CHECK(o.connections() == (k.reusable ? 1u : 2u));
    }
    // A close-delimited response cannot leave the connection reusable.
    Origin o(http_origin([](const HttpRequest&) { return Reply{"HTTP/1.1 200 OK\r\n\r\nok", true}; }));
    Proxy p(proxy_args());
    for (int i = 0; i < 2; ++i) {
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n"));
        auto all = c.read_until_close();
        CHECK(all.data.find("\r\n\r\nok") != std::string::npos);
    }
    CHECK(o.connections() == 2);
}

TEST_CASE("integration: framing: a response with more fields than max_headers allows requests is relayed "
          "(up to 256)",
          "[integration][framing]")
{
    std::string cookies;
    for (int i = 0; i < 101; ++i) cookies += "Set-Cookie: c" + std::to_string(i) + "=v\r\n";
    Origin o(http_origin([&cookies](const HttpRequest&) { return Reply{http_response(200, "ok", cookies)}; }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->count("Set-Cookie") == 101);
}

TEST_CASE("integration: framing: a malformed chunked response body that has not reached the client gets 502",
          "[integration][framing]")
{
    Origin o(http_origin([](const HttpRequest&) {
        return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloXX\r\n0\r\n\r\n"};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(r->header("Connection") == "close");
    CHECK(c.wait_closed());
}

TEST_CASE("integration: http10: an HTTP/1.0 client gets no 1xx (RFC 9110 §15.2), and its Upgrade is not passed "
          "on",
          "[integration][framing][http10]")
{
    Origin o(http_origin([](const HttpRequest&) {
        return Reply{"HTTP/1.1 103 Early Hints\r\nLink: </s.css>\r\n\r\n" + http_response(200, "ok")};
    }));
    Proxy p(proxy_args());
    Conn c = p.connect();
    REQUIRE(c.send_all("GET " + o.url("/") + " HTTP/1.0\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n"));
    auto all = c.read_until_close();
    REQUIRE(all.closed);
    INFO("client got:\n" << all.data);
    CHECK(all.data.rfind("HTTP/1.1 200 ", 0) == 0);
    CHECK(all.data.find("103") == std::string::npos);
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests()[0].count("Upgrade") == 0);
    CHECK(o.requests()[0].count("Connection") == 0);
}

TEST_CASE("integration: http10: an HTTP/1.0 client is sent no Transfer-Encoding (RFC 9112 §6.1); a coding "
          "cproxy cannot undo gets 502",
          "[integration][framing][http10]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        if (r.target == "/gzip")
            return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"};
        return Reply{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"};
    }));
    Proxy p(proxy_args());
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("GET " + o.url("/gzip") + " HTTP/1.0\r\n\r\n"));
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 502);
        CHECK(r->count("Transfer-Encoding") == 0);
    }
    Conn c = p.connect();
    REQUIRE(c.send_all("HEAD " + o.url("/plain") + " HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"));
    auto head = c.read_response(kWait, true);
    REQUIRE(head);
    CHECK(head->status == 200);
    CHECK(head->count("Transfer-Encoding") == 0);
}
