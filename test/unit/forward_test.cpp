// Head rewriting: what a forward proxy changes on the way through.
// Parsed heads hold views into their text, so each text outlives its head.
#include <catch2/catch.hpp>

#include <string>

#include "cproxy/forward.hpp"

using namespace cproxy;

namespace {

http::RequestHead parse_request(const std::string& text) {
    http::RequestParser parser(16384);
    http::RequestHead head;
    REQUIRE(parser.parse(text, head) == http::ParseStatus::Done);
    return head;
}

http::ResponseHead parse_response(const std::string& text) {
    http::ResponseParser parser(16384);
    http::ResponseHead head;
    REQUIRE(parser.parse(text, head) == http::ParseStatus::Done);
    return head;
}

std::string rewrite_request(const std::string& text, forward::RequestRewrite rewrite) {
    auto head = parse_request(text);
    char out[16384];
    std::size_t n = forward::write_request_head(head, rewrite, out, sizeof out);
    REQUIRE(n > 0);
    return std::string(out, n);
}

// The request as cproxy sends it: framing from request_framing, as the session does.
std::string forward_request(const std::string& text) {
    auto head = parse_request(text);
    auto framing = http::request_framing(head);
    REQUIRE(framing.refusal == 0);
    forward::RequestRewrite rewrite{"/", "o", "cproxy"};
    rewrite.framing = framing.framing;
    char out[16384];
    std::size_t n = forward::write_request_head(head, rewrite, out, sizeof out);
    REQUIRE(n > 0);
    return std::string(out, n);
}

std::string forward_response(const std::string& text, const char* method = "GET", bool http10_client = false) {
    auto head = parse_response(text);
    auto framing = http::response_framing(head, method);
    REQUIRE(framing);
    forward::ResponseRewrite rewrite;
    rewrite.framing = *framing;
    rewrite.http10_client = http10_client;
    char out[16384];
    std::size_t n = forward::write_response_head(head, rewrite, out, sizeof out);
    REQUIRE(n > 0);
    return std::string(out, n);
}

std::size_t count(const std::string& text, const std::string& part) {
    std::size_t n = 0;
    for (auto at = text.find(part); at != std::string::npos; at = text.find(part, at + 1)) ++n;
    return n;
}

}  // namespace

TEST_CASE("forward: absolute URLs split into host, port and path") {
    auto url = forward::parse_http_url("http://example.com:8080/a/b?q=1");
    REQUIRE(url);
    CHECK(url->authority == "example.com:8080");
    CHECK(url->host == "example.com");
    CHECK(url->port == 8080);
    CHECK(url->path == "/a/b?q=1");

    url = forward::parse_http_url("HTTP://[::1]/x");
    REQUIRE(url);
    CHECK(url->host == "::1");
    CHECK(url->port == 80);

    url = forward::parse_http_url("http://host?q");
    REQUIRE(url);
    CHECK(url->path == "?q");

    CHECK_FALSE(forward::parse_http_url("http://user:pw@host/"));
    CHECK_FALSE(forward::parse_http_url("http:///path"));
    CHECK_FALSE(forward::parse_http_url("http://host:0/"));
    CHECK_FALSE(forward::parse_http_url("http://host:99999/"));
    CHECK_FALSE(forward::parse_http_url("https://host/"));
    CHECK(forward::has_scheme("https://host/"));
    CHECK_FALSE(forward::has_scheme("/path://x"));
}

TEST_CASE("forward: request heads lose hop-by-hop fields and gain Host and Via") {
    std::string out = rewrite_request(
        "GET http://origin:81/p HTTP/1.1\r\n"
        "Host: wrong\r\n"
        "Proxy-Authorization: Basic dTpw\r\n"
        "Proxy-Connection: keep-alive\r\n"
        "Connection: keep-alive, X-Secret\r\n"
        "Keep-Alive: 300\r\n"
        "TE: trailers\r\n"
        "Trailer: X\r\n"
        "Upgrade: websocket\r\n"
        "X-Secret: 1\r\n"
        "Accept: */*\r\n"
        "\r\n",
        {"/p", "origin:81", "cproxy"});
    CHECK(out ==
          "GET /p HTTP/1.1\r\n"
          "Host: origin:81\r\n"
          "Accept: */*\r\n"
          "Via: 1.1 cproxy\r\n"
          "\r\n");
}

TEST_CASE("forward: Connection cannot remove framing fields") {
    std::string out = forward_request(
        "POST http://o/ HTTP/1.1\r\nConnection: Content-Length, Transfer-Encoding\r\n"
        "Content-Length: 3\r\n\r\n");
    CHECK(out.find("Content-Length: 3\r\n") != std::string::npos);
    out = forward_request("POST http://o/ HTTP/1.1\r\nConnection: transfer-encoding\r\n"
                          "Transfer-Encoding: chunked\r\n\r\n");
    CHECK(count(out, "Transfer-Encoding: chunked\r\n") == 1);
}

TEST_CASE("forward: request framing is written from the parse, never copied") {
    // Each of these was once forwarded byte for byte.
    for (const char* framing : {"Transfer-Encoding: ,chunked\r\n", "Transfer-Encoding: chunked,\r\n",
                                "Transfer-Encoding: chunked\r\nTransfer-Encoding:\r\n",
                                "transfer-encoding:  Chunked \r\n"}) {
        INFO(framing);
        std::string out = forward_request(std::string("POST http://o/ HTTP/1.1\r\nHost: o\r\n") + framing + "\r\n");
        CHECK(count(out, "Transfer-Encoding") + count(out, "transfer-encoding") == 1);
        CHECK(count(out, "Transfer-Encoding: chunked\r\n") == 1);
    }
    for (const char* framing : {"Content-Length: 5, 5\r\n", "Content-Length: 5\r\nContent-Length: 5\r\n",
                                "content-length: 005\r\n"}) {
        INFO(framing);
        std::string out = forward_request(std::string("POST http://o/ HTTP/1.1\r\nHost: o\r\n") + framing + "\r\n");
        CHECK(count(out, "ontent-") == 1);
        CHECK(count(out, "Content-Length: 5\r\n") == 1);
    }
    CHECK(count(forward_request("POST http://o/ HTTP/1.1\r\nContent-Length: 0\r\n\r\n"), "Content-Length: 0\r\n") == 1);
    CHECK(count(forward_request("GET http://o/ HTTP/1.1\r\n\r\n"), "ontent-Length") == 0);
}

TEST_CASE("forward: requests go upstream as HTTP/1.1 whatever the client spoke") {
    std::string out = forward_request("GET http://o/ HTTP/1.0\r\n\r\n");
    CHECK(out == "GET / HTTP/1.1\r\nHost: o\r\nVia: 1.0 cproxy\r\n\r\n");
}

TEST_CASE("forward: response framing keeps codings, normalised, chunked last") {
    std::string out = forward_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip,  ,chunked\r\n\r\n");
    CHECK(count(out, "Transfer-Encoding: gzip, chunked\r\n") == 1);
    out = forward_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(count(out, "Transfer-Encoding") == 1);
    CHECK(count(out, "Transfer-Encoding: gzip, chunked\r\n") == 1);
    // Close-delimited: the non-chunked codings only.
    out = forward_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n");
    CHECK(count(out, "Transfer-Encoding: gzip\r\n") == 1);
    out = forward_response("HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n");
    CHECK(count(out, "Transfer-Encoding") == 0);
    // No transfer coding at all for an HTTP/1.0 client (RFC 9112 §6.1), whose body is decoded.
    out = forward_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "GET", true);
    CHECK(count(out, "Transfer-Encoding") == 0);
    out = forward_response("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "HEAD", true);
    CHECK(count(out, "Transfer-Encoding") == 0);
    // Lengths collapse to one; HEAD and 304 keep theirs; 204 and 1xx get none.
    CHECK(count(forward_response("HTTP/1.1 200 OK\r\nContent-Length: 7, 7\r\n\r\n"), "Content-Length: 7\r\n") == 1);
    CHECK(count(forward_response("HTTP/1.1 200 OK\r\nContent-Length: 7\r\n\r\n", "HEAD"), "Content-Length: 7\r\n") == 1);
    CHECK(count(forward_response("HTTP/1.1 304 Not Modified\r\nContent-Length: 7\r\n\r\n"), "Content-Length: 7\r\n") == 1);
    CHECK(count(forward_response("HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n"), "Content-Length") == 0);
    CHECK(count(forward_response("HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n", "HEAD"), "Content-Length") == 0);
}

TEST_CASE("forward: fields named in Connection are found with work linear in fields and tokens") {
    // 250 fields, and one Connection field of 20,000 tokens: repeats, names
    // of fields present and absent. A quadratic search would compare names
    // millions of times.
    std::string text = "HTTP/1.1 200 OK\r\n";
    for (int i = 0; i < 248; ++i) text += "X-F" + std::to_string(i) + ": v\r\n";
    text += "Connection: ";
    for (int i = 0; i < 20000; ++i) text += "x-f" + std::to_string(i % 500) + ",";
    text += "x-f0\r\nContent-Length: 0\r\n\r\n";
    http::ResponseParser parser(200000, http::header_capacity);
    http::ResponseHead head;
    REQUIRE(parser.parse(text, head) == http::ParseStatus::Done);
    REQUIRE(head.header_count == 250);
    forward::ConnectionNamed named;
    forward::mark_connection_named(head.headers.data(), head.header_count, named);
    for (std::size_t i = 0; i < 248; ++i) CHECK(named.marked[i]);
    CHECK_FALSE(named.marked[248]);  // Connection itself goes as hop-by-hop, not as named
    CHECK_FALSE(named.marked[249]);  // Content-Length is protected
    INFO("name comparisons: " << named.comparisons);
    CHECK(named.comparisons <= 4 * (head.header_count + 20001));

    // Duplicate field names are all marked.
    const std::string dup_text = "HTTP/1.1 200 OK\r\nX-A: 1\r\nConnection: x-a\r\nX-A: 2\r\nx-a: 3\r\n\r\n";
    auto dup = parse_response(dup_text);
    forward::ConnectionNamed dup_named;
    forward::mark_connection_named(dup.headers.data(), dup.header_count, dup_named);
    CHECK(dup_named.marked[0]);
    CHECK_FALSE(dup_named.marked[1]);
    CHECK(dup_named.marked[2]);
    CHECK(dup_named.marked[3]);
}

TEST_CASE("forward: Via elements are read for this proxy's own name") {
    auto named = [](const std::string& via) {
        const std::string text = "GET / HTTP/1.1\r\nVia: " + via + "\r\n\r\n";
        auto head = parse_request(text);
        return forward::via_names(head, "cproxy-1a2b3c4d");
    };
    CHECK(named("1.1 cproxy-1a2b3c4d"));
    CHECK(named("1.0 fred, 1.1 CPROXY-1A2B3C4D (cproxy)"));
    CHECK(named("HTTP/1.1 other (a, b), 1.1 cproxy-1a2b3c4d"));
    CHECK_FALSE(named("1.1 cproxy-1a2b3c4e"));
    CHECK_FALSE(named("1.1 other (cproxy-1a2b3c4d)"));
    CHECK_FALSE(named("1.1 other (x, 1.1 cproxy-1a2b3c4d)"));
    CHECK_FALSE(named("cproxy-1a2b3c4d"));  // a protocol alone names no hop
}

TEST_CASE("forward: origin-form keeps the client's Host; empty paths become /") {
    std::string out = rewrite_request("GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n", {"/index.html", "", "cproxy"});
    CHECK(out == "GET /index.html HTTP/1.1\r\nHost: h\r\nVia: 1.1 cproxy\r\n\r\n");
    out = rewrite_request("GET http://o HTTP/1.0\r\n\r\n", {"", "o", "cproxy"});
    CHECK(out == "GET / HTTP/1.1\r\nHost: o\r\nVia: 1.0 cproxy\r\n\r\n");
}

TEST_CASE("forward: a head that does not fit is refused, not truncated") {
    std::string text = "GET http://o/ HTTP/1.1\r\nAccept: */*\r\n\r\n";
    auto head = parse_request(text);
    char out[20];
    CHECK(forward::write_request_head(head, {"/", "o", "cproxy"}, out, sizeof out) == 0);
}

TEST_CASE("forward: response heads and the client connection") {
    std::string text =
        "HTTP/1.1 200 OK\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\n"
        "Content-Length: 2\r\n\r\n";
    auto head = parse_response(text);
    char out[1024];
    forward::ResponseRewrite rewrite;
    rewrite.framing = *http::response_framing(head, "GET");
    rewrite.via_name = "cproxy";
    rewrite.connection = forward::ClientConnection::Close;
    std::size_t n = forward::write_response_head(head, rewrite, out, sizeof out);
    CHECK(std::string(out, n) ==
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nVia: 1.1 cproxy\r\n\r\n");
    rewrite.connection = forward::ClientConnection::KeepAliveLegacy;
    n = forward::write_response_head(head, rewrite, out, sizeof out);
    CHECK(std::string(out, n).find("Connection: keep-alive\r\n") != std::string::npos);
    rewrite.connection = forward::ClientConnection::Persistent;
    n = forward::write_response_head(head, rewrite, out, sizeof out);
    CHECK(std::string(out, n).find("Connection") == std::string::npos);
}

TEST_CASE("forward: keep-alive rules for HTTP/1.0 and 1.1") {
    CHECK(forward::client_wants_keep_alive(parse_request("GET / HTTP/1.1\r\nHost: h\r\n\r\n")));
    CHECK_FALSE(forward::client_wants_keep_alive(parse_request("GET / HTTP/1.1\r\nConnection: close\r\n\r\n")));
    CHECK_FALSE(forward::client_wants_keep_alive(parse_request("GET / HTTP/1.0\r\n\r\n")));
    CHECK(forward::client_wants_keep_alive(parse_request("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")));
    CHECK(forward::upstream_allows_reuse(parse_response("HTTP/1.1 200 OK\r\n\r\n")));
    CHECK_FALSE(forward::upstream_allows_reuse(parse_response("HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n")));
    CHECK_FALSE(forward::upstream_allows_reuse(parse_response("HTTP/1.0 200 OK\r\n\r\n")));
}

TEST_CASE("forward: an asked-for Upgrade is forwarded with Connection: Upgrade, and passed back on a 101") {
    const std::string text = "GET http://o/ws HTTP/1.1\r\nHost: o\r\nConnection: keep-alive, Upgrade\r\n"
                             "Upgrade: websocket\r\nSec-WebSocket-Key: k\r\n\r\n";
    auto head = parse_request(text);
    CHECK(forward::requested_upgrade(head) == "websocket");
    forward::RequestRewrite rewrite{"/ws", "o", "cproxy"};
    rewrite.upgrade = forward::requested_upgrade(head);
    std::string out = rewrite_request(text, rewrite);
    CHECK(out == "GET /ws HTTP/1.1\r\nHost: o\r\nSec-WebSocket-Key: k\r\nConnection: Upgrade\r\n"
                 "Upgrade: websocket\r\nVia: 1.1 cproxy\r\n\r\n");
    // An Upgrade field not named in Connection is not a request to switch.
    CHECK(forward::requested_upgrade(parse_request("GET / HTTP/1.1\r\nUpgrade: h2c\r\n\r\n")).empty());

    const std::string switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                                  "Sec-WebSocket-Accept: a\r\n\r\n";
    auto response = parse_response(switching);
    CHECK(forward::response_names_upgrade(response));
    char buffer[1024];
    forward::ResponseRewrite upgrade;
    upgrade.connection = forward::ClientConnection::Upgrade;
    upgrade.via_name = "cproxy";
    std::size_t n = forward::write_response_head(response, upgrade, buffer, sizeof buffer);
    CHECK(std::string(buffer, n) == "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                                    "Sec-WebSocket-Accept: a\r\nConnection: Upgrade\r\nVia: 1.1 cproxy\r\n\r\n");
    CHECK_FALSE(forward::response_names_upgrade(parse_response("HTTP/1.1 101 Switching\r\n\r\n")));
}

TEST_CASE("forward: Max-Forwards is replaced by the decremented value; Via off adds no field") {
    forward::RequestRewrite rewrite{"/", "o", ""};
    rewrite.max_forwards = 4;
    std::string out = rewrite_request("OPTIONS http://o/ HTTP/1.1\r\nMax-Forwards: 5\r\nX: y\r\n\r\n", rewrite);
    CHECK(out == "OPTIONS / HTTP/1.1\r\nHost: o\r\nX: y\r\nMax-Forwards: 4\r\n\r\n");
}

TEST_CASE("forward: X-Forwarded-For and Forwarded name the client after earlier hops") {
    forward::RequestRewrite rewrite;
    rewrite.path = "/";
    rewrite.host = "example.com";
    rewrite.client_ip = "192.0.2.7";

    const std::string plain = "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n\r\n";
    CHECK(rewrite_request(plain, rewrite).find("Forwarded") == std::string::npos);  // off by default

    rewrite.forwarded = forward::ForwardedStyle::Xff;
    std::string out = rewrite_request(plain, rewrite);
    CHECK(out.find("\r\nX-Forwarded-For: 192.0.2.7\r\n") != std::string::npos);

    const std::string relayed = "GET http://example.com/ HTTP/1.1\r\nHost: example.com\r\n"
                                "X-Forwarded-For: 203.0.113.1\r\nx-forwarded-for: 203.0.113.2, 10.0.0.1\r\n"
                                "Forwarded: for=203.0.113.9\r\n\r\n";
    out = rewrite_request(relayed, rewrite);
    CHECK(out.find("\r\nX-Forwarded-For: 203.0.113.1, 203.0.113.2, 10.0.0.1, 192.0.2.7\r\n") != std::string::npos);
    CHECK(out.find("x-forwarded-for") == std::string::npos);  // one field, not the client's two
    CHECK(out.find("\r\nForwarded: for=203.0.113.9\r\n") != std::string::npos);  // the other style untouched

    rewrite.forwarded = forward::ForwardedStyle::Rfc7239;
    out = rewrite_request(relayed, rewrite);
    CHECK(out.find("\r\nForwarded: for=203.0.113.9, for=192.0.2.7\r\n") != std::string::npos);
    CHECK(out.find("X-Forwarded-For: 203.0.113.1\r\n") != std::string::npos);

    rewrite.client_ip = "2001:db8::7";
    out = rewrite_request(plain, rewrite);
    CHECK(out.find("\r\nForwarded: for=\"[2001:db8::7]\"\r\n") != std::string::npos);
    rewrite.forwarded = forward::ForwardedStyle::Xff;
    out = rewrite_request(plain, rewrite);
    CHECK(out.find("\r\nX-Forwarded-For: 2001:db8::7\r\n") != std::string::npos);
}

TEST_CASE("forward: a head for a parent proxy keeps absolute-form and ends with its credentials") {
    forward::RequestRewrite rewrite{"/p?q", "origin:81", "cproxy"};
    rewrite.absolute_authority = "origin:81";
    rewrite.proxy_authorization = "Basic dTpw";
    std::string out = rewrite_request(
        "GET http://origin:81/p?q HTTP/1.1\r\nProxy-Authorization: Basic Y2xpZW50OnB3\r\nAccept: */*\r\n\r\n", rewrite);
    CHECK(out ==
          "GET http://origin:81/p?q HTTP/1.1\r\n"
          "Host: origin:81\r\n"
          "Accept: */*\r\n"
          "Via: 1.1 cproxy\r\n"
          "Proxy-Authorization: Basic dTpw\r\n"
          "\r\n");
    rewrite = forward::RequestRewrite{"", "o", ""};
    rewrite.absolute_authority = "o";
    CHECK(rewrite_request("GET http://o HTTP/1.1\r\n\r\n", rewrite) == "GET http://o/ HTTP/1.1\r\nHost: o\r\n\r\n");
}
