// `listen ADDR:PORT proxy_protocol` with `proxy_trusted`: a load balancer's
// PROXY protocol header (v1 or v2) names the real client, and that address
// drives the allow/deny rules, the access log and forwarded fields. A
// connection from a source not trusted, or without a valid header, is closed
// unanswered.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string v1(const std::string& source, std::uint16_t port)
{
    return "PROXY TCP4 " + source + " 127.0.0.1 " + std::to_string(port) + " 8888\r\n";
}

// A v2 PROXY header for TCP over IPv4: 192.0.2.7:51234 -> 127.0.0.1:8888.
std::string v2_tcp4()
{
    return std::string("\r\n\r\n\0\r\nQUIT\n\x21\x11\x00\x0c", 16) +
           std::string("\xc0\x00\x02\x07\x7f\x00\x00\x01\xc8\x22\x22\xb8", 12);
}

// A v2 LOCAL header: the balancer's own health check.
std::string v2_local() { return std::string("\r\n\r\n\0\r\nQUIT\n\x20\x00\x00\x00", 16); }

std::string get(const Origin& o, const std::string& path)
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n";
}

// A balancer forwards whoever reaches it, so a proxy_protocol listener needs
// an allow rule (or auth) of its own: here the last rule, after the test's.
std::vector<std::string> pp_args(std::vector<std::string> extra = {}, const std::string& trusted = "127.0.0.0/8")
{
    std::vector<std::string> a{"-c", "/dev/null", "-l", "127.0.0.1:0 proxy_protocol", "--proxy-trusted",
                               trusted, "-v", "--forwarded", "xff"};
    a.insert(a.end(), extra.begin(), extra.end());
    a.insert(a.end(), {"--allow", "0.0.0.0/0,::/0"});
    return a;
}

bool logged(Proxy& p, const std::string& needle)
{
    return p.wait_err([&](const std::string& err) { return err.find(needle) != std::string::npos; });
}

}  // namespace

TEST_CASE("integration: proxy protocol: v1 and v2 headers name the client for logs and X-Forwarded-For",
          "[integration][proxy-protocol]")
{
    Origin o(static_origin("ok"));
    Proxy p(pp_args());
    {
        Conn c = p.connect();
        auto r = c.roundtrip(v1("198.51.100.7", 4444) + get(o, "/one"));
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(o.wait_requests(1));
        CHECK(o.requests().back().header("X-Forwarded-For") == "198.51.100.7");
        // Later requests on the connection are the same client's.
        auto again = c.roundtrip(get(o, "/two"));
        REQUIRE(again);
        CHECK(again->status == 200);
        REQUIRE(o.wait_requests(2));
        CHECK(o.requests().back().header("X-Forwarded-For") == "198.51.100.7");
    }
    {
        Conn c = p.connect();
        auto r = c.roundtrip(v2_tcp4() + get(o, "/three"));
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(o.wait_requests(3));
        CHECK(o.requests().back().header("X-Forwarded-For") == "192.0.2.7");
    }
    CHECK(logged(p, " 198.51.100.7:4444 - GET " + o.url("/one") + " 200 "));
    CHECK(logged(p, " 198.51.100.7:4444 - GET " + o.url("/two") + " 200 "));
    CHECK(logged(p, " 192.0.2.7:51234 - GET " + o.url("/three") + " 200 "));
}

TEST_CASE("integration: proxy protocol: a header in pieces, a LOCAL health check and UNKNOWN keep working",
          "[integration][proxy-protocol]")
{
    Origin o(static_origin("ok"));
    Proxy p(pp_args());
    {
        Conn c = p.connect();
        std::string header = v1("198.51.100.8", 5555);
        REQUIRE(c.send_all(header.substr(0, 9)));
        std::this_thread::sleep_for(Ms(100));
        REQUIRE(c.send_all(header.substr(9) + get(o, "/pieces").substr(0, 10)));
        std::this_thread::sleep_for(Ms(100));
        auto r = c.roundtrip(get(o, "/pieces").substr(10));
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(o.wait_requests(1));
        CHECK(o.requests().back().header("X-Forwarded-For") == "198.51.100.8");
    }
    for (const std::string& header : {v2_local(), std::string("PROXY UNKNOWN\r\n")}) {
        Conn c = p.connect();
        std::size_t before = o.requests().size();
        auto r = c.roundtrip(header + get(o, "/local"));
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(o.wait_requests(before + 1));
        CHECK(o.requests().back().header("X-Forwarded-For") == "127.0.0.1");  // the connection's own
    }
}

TEST_CASE("integration: proxy protocol: allow/deny rules judge the client the header names",
          "[integration][proxy-protocol]")
{
    Origin o(static_origin("ok"));
    // The balancer itself (127.0.0.1) is denied: only the header's address counts.
    Proxy p(pp_args({"--deny", "192.0.2.0/24,127.0.0.1"}));
    {
        Conn c = p.connect();
        auto r = c.roundtrip(v1("192.0.2.99", 1000) + get(o, "/denied"));
        REQUIRE(r);
        CHECK(r->status == 403);
    }
    {
        Conn c = p.connect();
        auto r = c.roundtrip(v1("198.51.100.9", 1000) + get(o, "/allowed"));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests().size() == 1);
    CHECK(logged(p, " 192.0.2.99:1000 - - - 403 "));
}

TEST_CASE("integration: proxy protocol: an untrusted source, a missing or a malformed header closes the connection",
          "[integration][proxy-protocol]")
{
    Origin o(static_origin("ok"));
    SECTION("untrusted source")
    {
        Proxy p(pp_args({"-l", "127.0.0.1:0"}, "10.0.0.0/8"));
        Conn c = p.connect();
        REQUIRE(c.send_all(v1("198.51.100.7", 1) + get(o, "/x")));
        CHECK(c.wait_closed(Ms(3000)));
        CHECK(c.buffer().empty());
        CHECK(logged(p, "not in proxy_trusted, may not send a PROXY protocol header; closed"));
        // The plain listener next to it serves as usual.
        Conn plain = connect_to(p.port(1), "127.0.0.1");
        auto r = plain.roundtrip(get(o, "/plain"));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    SECTION("missing or malformed header")
    {
        Proxy p(pp_args());
        const std::string bad[] = {
            get(o, "/no-header"),
            "PROXY TCP4 198.51.100.7 127.0.0.1 99999 1\r\n" + get(o, "/bad-port"),
            "PROXY TCP4 " + std::string(120, '1') + "\r\n",
            std::string("\r\n\r\n\0\r\nQUIT\n\x11\x11\x00\x0c", 16) + std::string(12, '\0'),
        };
        for (const std::string& bytes : bad) {
            INFO(bytes);
            Conn c = p.connect();
            REQUIRE(c.send_all(bytes));
            CHECK(c.wait_closed(Ms(3000)));
            CHECK(c.buffer().empty());  // no HTTP answer to something that is not HTTP
        }
        CHECK(logged(p, "no PROXY protocol header; closed"));
        CHECK(o.requests().empty());
    }
}

TEST_CASE("integration: proxy protocol: configuration errors", "[integration][proxy-protocol][cli]")
{
    std::string bin = proxy_binary();
    if (bin.find('/') == std::string::npos)
        bin = "./" + bin;
    RunResult r = run_command({bin, "-c", "/dev/null", "-l", "127.0.0.1:0 proxy_protocol", "-t"}, kWait);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("proxy_protocol needs proxy_trusted") != std::string::npos);
    r = run_command({bin, "-c", "/dev/null", "-l", "127.0.0.1:0 proxy", "-t"}, kWait);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("'proxy' after the address is not proxy_protocol") != std::string::npos);
    ScratchDir dir("cproxy-pp");
    // A loopback address restricts nothing behind a balancer: an allow rule or auth must.
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0 proxy_protocol\nproxy_trusted 10.0.0.0/8\n");
    r = run_command({bin, "-c", conf, "-t"}, kWait);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find("refusing to run an open proxy: listen 127.0.0.1:0 proxy_protocol") != std::string::npos);
    conf = dir.write("allowed.conf", "listen 127.0.0.1:0 proxy_protocol\nproxy_trusted 10.0.0.0/8\nallow 192.0.2.0/24\n");
    r = run_command({bin, "-c", conf, "-t"}, kWait);
    INFO(r.err);
    CHECK(r.exit_code == 0);
    conf = dir.write("bad.conf", "listen 127.0.0.1:0\nproxy_trusted nonsense\n");
    r = run_command({bin, "-c", conf, "-t"}, kWait);
    CHECK(r.exit_code == 2);
    CHECK(r.err.find(conf + ":2: proxy_trusted:") != std::string::npos);
}
