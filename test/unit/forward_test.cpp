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
    std::string out = rewrite_request(
        "POST http://o/ HTTP/1.1\r\nConnection: Content-Length, Transfer-Encoding\r\n"
        "Content-Length: 3\r\n\r\n",
        {"/", "o", "cproxy"});
    CHECK(out.find("Content-Length: 3\r\n") != std::string::npos);
}

TEST_CASE("forward: origin-form keeps the client's Host; empty paths become /") {
    std::string out = rewrite_request("GET /index.html HTTP/1.1\r\nHost: h\r\n\r\n", {"/index.html", "", "cproxy"});
    CHECK(out == "GET /index.html HTTP/1.1\r\nHost: h\r\nVia: 1.1 cproxy\r\n\r\n");
    out = rewrite_request("GET http://o HTTP/1.0\r\n\r\n", {"", "o", "cproxy", true});
    CHECK(out == "GET / HTTP/1.0\r\nHost: o\r\nVia: 1.0 cproxy\r\n\r\n");
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
    std::size_t n = forward::write_response_head(head, forward::ClientConnection::Close, "cproxy", out, sizeof out);
    CHECK(std::string(out, n) ==
          "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\nVia: 1.1 cproxy\r\n\r\n");
    n = forward::write_response_head(head, forward::ClientConnection::KeepAliveLegacy, "cproxy", out, sizeof out);
    CHECK(std::string(out, n).find("Connection: keep-alive\r\n") != std::string::npos);
    n = forward::write_response_head(head, forward::ClientConnection::Persistent, "cproxy", out, sizeof out);
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
    std::size_t n = forward::write_response_head(response, forward::ClientConnection::Upgrade, "cproxy", buffer,
                                                 sizeof buffer);
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
