// Proxy Basic authentication, and the seed benchmark's request shape.
#include "harness.hpp"

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string creds(const std::string& userpass)
{
    return "Proxy-Authorization: Basic " + base64(userpass) + "\r\n";
}

std::string get(const std::string& url, const std::string& extra = "")
{
    return "GET " + url + " HTTP/1.1\r\nHost: x\r\n" + extra + "\r\n";
}

void check_407(const std::optional<HttpResponse>& r)
{
    REQUIRE(r);
    INFO("head:\n" << r->raw_head);
    CHECK(r->status == 407);
    auto pa = r->header("Proxy-Authenticate");
    REQUIRE(pa);
    CHECK(*pa == "Basic realm=\"cproxy\"");
}

} // namespace

TEST_CASE("integration: --auth: requests without valid credentials get 407", "[integration][auth]")
{
    Origin o(static_origin("secret-content"));
    Proxy p(proxy_args({"--auth", "user:pass"}));

    SECTION("no Proxy-Authorization")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/none"))));
    }
    SECTION("wrong password")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/wrongpass"), creds("user:wrong"))));
    }
    SECTION("unknown user")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/wronguser"), creds("mallory:pass"))));
    }
    SECTION("password prefix only")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/prefix"), creds("user:pas"))));
    }
    SECTION("not Basic")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/bearer"), "Proxy-Authorization: Bearer " + base64("user:pass") + "\r\n")));
    }
    SECTION("credentials in Authorization instead of Proxy-Authorization")
    {
        Conn c = p.connect();
        check_407(c.roundtrip(get(o.url("/authz"), "Authorization: Basic " + base64("user:pass") + "\r\n")));
    }
    SECTION("CONNECT without credentials")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n"));
        check_407(c.read_response(kWait, true));
    }
    CHECK_FALSE(o.wait_connections(1, Ms(100)));
    CHECK(o.received().empty());
}

TEST_CASE("integration: --auth: valid credentials pass and never reach the origin",
          "[integration][auth]")
{
    Origin o(static_origin("secret-content"));
    Proxy p(proxy_args({"--auth", "user:pass"}));
    Conn c = p.connect();
    auto r = c.roundtrip(get(o.url("/ok"), creds("user:pass")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "secret-content");
    REQUIRE(o.wait_requests(1));
    auto q = o.requests().at(0);
    INFO("origin saw:\n" << q.raw_head);
    CHECK(q.count("Proxy-Authorization") == 0);
    CHECK(o.received().find(base64("user:pass")) == std::string::npos);
}

TEST_CASE("integration: --auth is checked on every request of a keep-alive connection",
          "[integration][auth]")
{
    Origin o(static_origin("content"));
    Proxy p(proxy_args({"--auth", "user:pass"}));
    Conn c = p.connect();
    auto r1 = c.roundtrip(get(o.url("/first"), creds("user:pass")));
    REQUIRE(r1);
    CHECK(r1->status == 200);
    auto r2 = c.roundtrip(get(o.url("/second")));
    check_407(r2);
    // The origin saw only the authenticated request.
    std::this_thread::sleep_for(Ms(100));
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].target == "/first");
    CHECK(o.received().find("/second") == std::string::npos);
}

TEST_CASE("integration: several --auth users are all accepted", "[integration][auth]")
{
    Origin o(static_origin("multi"));
    Proxy p(proxy_args({"--auth", "alice:a1", "--auth", "bob:b:2"}));
    Conn c = p.connect();
    auto ra = c.roundtrip(get(o.url("/a"), creds("alice:a1")));
    REQUIRE(ra);
    CHECK(ra->status == 200);
    // A password may itself contain ':' (split at the first one).
    auto rb = c.roundtrip(get(o.url("/b"), creds("bob:b:2")));
    REQUIRE(rb);
    CHECK(rb->status == 200);
    // Mixing one user's name with another's password is refused.
    check_407(c.roundtrip(get(o.url("/mix"), creds("alice:b:2"))));
    CHECK(o.requests().size() == 2);
}

TEST_CASE("integration: --auth with CONNECT", "[integration][auth][connect]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args({"--auth", "user:pass", "--connect-ports", "any"}));
    SECTION("valid credentials open the tunnel")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() +
                           "\r\n" + creds("user:pass") + "\r\n"));
        auto head = c.read_until("\r\n\r\n");
        REQUIRE(head);
        CHECK(head->rfind("HTTP/1.1 200 Connection established\r\n", 0) == 0);
        REQUIRE(c.send_all("tunnel"));
        auto e = c.read_exact(6);
        REQUIRE(e);
        CHECK(*e == "tunnel");
        CHECK(o.received() == "tunnel");
    }
    SECTION("wrong password is 407")
    {
        Conn c = p.connect();
        REQUIRE(c.send_all("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() +
                           "\r\n" + creds("user:nope") + "\r\n"));
        check_407(c.read_response(kWait, true));
        CHECK_FALSE(o.wait_connections(1, Ms(100)));
    }
}

TEST_CASE("integration: curl -U authenticates; curl without it sees 407", "[integration][auth][curl]")
{
    Origin o(static_origin("curl-auth"));
    Proxy p(proxy_args({"--auth", "user:pass"}));
    auto ok = curl({"-U", "user:pass", "-x", p.url(), o.url("/c")});
    INFO("curl stderr: " << ok.err);
    CHECK(ok.exit_code == 0);
    CHECK(ok.out == "curl-auth");
    auto no = curl({"-x", p.url(), "-o", "/dev/null", "-w", "%{http_code}", o.url("/c2")});
    CHECK(no.exit_code == 0);
    CHECK(no.out == "407");
    auto bad = curl({"-U", "user:bad", "-x", p.url(), "-o", "/dev/null", "-w", "%{http_code}", o.url("/c3")});
    CHECK(bad.out == "407");
    auto reqs = o.requests();
    REQUIRE(reqs.size() == 1);
    CHECK(reqs[0].count("Proxy-Authorization") == 0);
}

TEST_CASE("integration: seed benchmark shape: --auth + --backend, origin-form over keep-alive",
          "[integration][auth][forwarding]")
{
    const std::string page = random_bytes(4096, 21);
    Origin o(http_origin([&page](const HttpRequest& r) {
        return Reply{r.target == "/index.html" ? http_response(200, page)
                                               : http_response(404, "not found")};
    }));
    Proxy p(proxy_args({"--auth", "username:password", "--backend", o.authority()}));
    Conn c = p.connect();
    const std::string req = "GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(p.port()) +
                            "\r\nProxy-Authorization: Basic dXNlcm5hbWU6cGFzc3dvcmQ=\r\n\r\n";
    REQUIRE(base64("username:password") == "dXNlcm5hbWU6cGFzc3dvcmQ=");
    const int n = 200;
    int good = 0;
    for (int i = 0; i < n; ++i) {
        auto r = c.roundtrip(req);
        REQUIRE(r);
        const bool keep = !icontains(r->header("Connection").value_or(""), "close");
        if (r->status == 200 && r->body == page && keep)
            ++good;
        else
            FAIL_CHECK("request " << i << ": status " << r->status << " head:\n" << r->raw_head);
    }
    CHECK(good == n);
    // Pipelined batch of the same request, as wrk-style clients send.
    std::string batch;
    for (int i = 0; i < 20; ++i)
        batch += req;
    REQUIRE(c.send_all(batch));
    for (int i = 0; i < 20; ++i) {
        auto r = c.read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body.size() == page.size());
    }
    REQUIRE(o.wait_requests(static_cast<std::size_t>(n + 20)));
    auto reqs = o.requests();
    CHECK(reqs.size() == static_cast<std::size_t>(n + 20));
    CHECK(reqs.front().count("Proxy-Authorization") == 0);
    CHECK(reqs.back().count("Proxy-Authorization") == 0);
    // Keep-alive on both sides: one client connection used one upstream one.
    CHECK(o.connections() == 1);
}
