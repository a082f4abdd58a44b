// The built-in DNS stub resolver, seen from outside: cproxy is pointed at a
// scripted DNS server (fake_dns.hpp) with --resolver and the tests check what
// the clients get, what the server was asked, and how long it took. Also
// Happy Eyeballs between ::1 and 127.0.0.1, IPv6 end to end, the hosts file,
// and --resolver system.
//
// Every test that uses names REQUIREs $CPROXY_TEST_NETNS: inside test/run's
// namespace /etc/hosts and /etc/resolv.conf are scratch files (resolv.conf
// says "nameserver 127.0.0.1", "options timeout:1 attempts:1").
//
// Timing bounds allow for a 2-core machine running ASan builds: "fast" is
// under 300 ms where the slow path takes a second or more.
#include "fake_dns.hpp"
#include "harness.hpp"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>

#include <sys/stat.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string authority(const std::string& host, std::uint16_t port)
{
    return (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string get_req(const std::string& auth, const std::string& path = "/")
{
    return "GET http://" + auth + path + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n";
}

struct Fetch {
    std::optional<HttpResponse> r;
    long long ms = 0;
    int status() const { return r ? r->status : 0; }
    std::string body() const { return r ? r->body : std::string("<no response>"); }
};

// One GET on a new client connection, timed from the send to the end of the response.
Fetch fetch(const Proxy& p, const std::string& auth, const std::string& path = "/", Ms timeout = kWait)
{
    Conn c = p.connect();
    Fetch f;
    auto start = Clock::now();
    f.r = c.roundtrip(get_req(auth, path), timeout);
    f.ms = elapsed_ms(start);
    return f;
}

// Replies 200 with `body` and closes, so every request needs a fresh upstream
// connection (a parked one would skip the lookup).
Origin::Handler closing_origin(std::string body)
{
    return http_origin([body = std::move(body)](const HttpRequest&) {
        return Reply{http_response(200, body, "Connection: close\r\n"), true};
    });
}

// The END field of the first access-log line whose TARGET contains `needle`
// (waits for the buffered log); "" when none came.
std::string end_reason(Proxy& p, const std::string& needle)
{
    std::string found;
    p.wait_err([&](const std::string& e) {
        for (const auto& f : access_log_lines(e))
            if (f[4].find(needle) != std::string::npos) {
                found = f[10];
                return true;
            }
        return false;
    });
    return found;
}

bool in_netns() { return std::getenv("CPROXY_TEST_NETNS") != nullptr; }

void require_ipv6()
{
    // The test namespace always has ::1: without it this is a failure, not a skip.
    if (!ipv6_loopback_available())
        FAIL("cannot bind [::1]:0 here");
}

DnsScript a_record(std::string addr, std::uint32_t ttl = 300)
{
    DnsScript s;
    s.a = {std::move(addr)};
    s.ttl = ttl;
    return s;
}

// cproxy's sockets in SYN-SENT toward `remote` ("[::1]:PORT").
std::size_t syn_sent_from(pid_t pid, const std::string& remote)
{
    auto mine = socket_inodes(pid);
    std::size_t n = 0;
    for (const auto& t : tcp_sockets())
        if (t.state == kTcpSynSent && t.remote == remote &&
            std::find(mine.begin(), mine.end(), t.inode) != mine.end())
            ++n;
    return n;
}

std::size_t syn_sent_to(const std::string& remote)
{
    std::size_t n = 0;
    for (const auto& t : tcp_sockets())
        if (t.state == kTcpSynSent && t.remote == remote)
            ++n;
    return n;
}

// A listener on [::1]:P that never completes a connection, and an origin on
// 127.0.0.1:P with the same P.
struct SplitPort {
    std::unique_ptr<HangListener> hang;
    std::unique_ptr<Origin> origin;
};

SplitPort split_port(const Origin::Handler& h)
{
    for (int i = 0; i < 20; ++i) {
        auto hang = std::make_unique<HangListener>("::1");
        try {
            auto o = std::make_unique<Origin>(h, "127.0.0.1", hang->port());
            return SplitPort{std::move(hang), std::move(o)};
        } catch (const std::runtime_error&) {
            // 127.0.0.1:P is taken: another P
        }
    }
    throw std::runtime_error("no port free on both ::1 and 127.0.0.1");
}

// An origin on 127.0.0.2 with the same port as `first` (on 127.0.0.1).
std::unique_ptr<Origin> same_port_on(const std::string& host, const Origin& first, Origin::Handler h)
{
    return std::make_unique<Origin>(std::move(h), host, first.port());
}


// Rewrites the file itself (same inode), as `echo ... > file` does.
void write_in_place(const std::string& path, const std::string& text)
{
    std::ofstream out(path, std::ios::trunc);
    out << text;
}

// Puts the file's contents back when the test ends, however it ends.
class RestoreFile {
public:
    explicit RestoreFile(std::string path) : path_(std::move(path)), saved_(read_file(path_)) {}
    ~RestoreFile() { write_in_place(path_, saved_); }
    RestoreFile(const RestoreFile&) = delete;
    RestoreFile& operator=(const RestoreFile&) = delete;

private:
    std::string path_, saved_;
};

} // namespace

// ------------------------------------------------------------ answers

TEST_CASE("integration: dns: a name the DNS server answers with an A record is fetched",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("by-dns"));
    dns.script("www.a.test", a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns));
    const std::string auth = authority("www.a.test", o.port());
    auto f = fetch(p, auth, "/named");
    INFO(dns.describe());
    REQUIRE(f.r);
    CHECK(f.status() == 200);
    CHECK(f.body() == "by-dns");
    CHECK(dns.count("www.a.test", dns::A) >= 1);
    CHECK(dns.wait_count("www.a.test", dns::AAAA, 1, Ms(1000)));
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests()[0].target == "/named");
    CHECK(o.requests()[0].header("Host") == auth);
}

TEST_CASE("integration: dns: queries are plain stub queries (UDP, RD, no EDNS, a socket each)",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("q"));
    for (const char* n : {"q1.test", "q2.test", "q3.test", "q4.test"})
        dns.script(n, a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns));
    for (const char* n : {"q1.test", "q2.test", "q3.test", "q4.test"})
        CHECK(fetch(p, authority(n, o.port())).status() == 200);
    REQUIRE(dns.wait_queries(8, Ms(2000)));
    INFO(dns.describe());
    std::set<std::uint16_t> ids;
    for (const auto& q : dns.queries()) {
        CHECK_FALSE(q.tcp);
        CHECK(q.rd);
        CHECK(q.arcount == 0); // no OPT record
        CHECK((q.qtype == dns::A || q.qtype == dns::AAAA));
        ids.insert(q.id);
    }
    CHECK(ids.size() > 1); // not one fixed ID
    for (const char* n : {"q1.test", "q2.test", "q3.test", "q4.test"}) {
        auto a = dns.queries_for(n, dns::A);
        auto aaaa = dns.queries_for(n, dns::AAAA);
        REQUIRE(a.size() == 1);
        REQUIRE(aaaa.size() == 1);
        // One socket per query: A and AAAA come from different source ports.
        CHECK(a[0].source_port != aaaa[0].source_port);
    }
}

TEST_CASE("integration: dns: IP literals never reach the DNS server", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("literal"));
    Proxy p(proxy_args_dns(dns));
    CHECK(fetch(p, o.authority()).body() == "literal");
    require_ipv6();
    Origin o6(static_origin("literal6"), "::1");
    CHECK(fetch(p, o6.authority()).body() == "literal6");
    std::this_thread::sleep_for(Ms(200));
    INFO(dns.describe());
    CHECK(dns.queries().empty());
}

TEST_CASE("integration: dns: a name with only an AAAA record is fetched over IPv6",
          "[integration][dns][ipv6]")
{
    REQUIRE(in_netns());
    require_ipv6();
    FakeDns dns;
    Origin o6(static_origin("six"), "::1");
    DnsScript s;
    s.aaaa = {"::1"};
    dns.script("v6only.test", s);
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("v6only.test", o6.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "six");
    CHECK(dns.count("v6only.test", dns::AAAA) >= 1);
    CHECK(o6.wait_requests(1));
}

TEST_CASE("integration: dns: a CNAME chain in the answer is followed", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("at the end of the chain"));
    DnsScript alias, mid;
    alias.cname = "mid.test";
    mid.cname = "Real.Test"; // names compare case-insensitively
    dns.script("alias.test", alias);
    dns.script("mid.test", mid);
    dns.script("real.test", a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("alias.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "at the end of the chain");
    CHECK(dns.count("alias.test", dns::A) >= 1);
}

// ------------------------------------------------------------ failures

TEST_CASE("integration: dns: NXDOMAIN gives 502 naming the host, END resolve-failed",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns; // missing.test is not scripted: NXDOMAIN
    Origin o(static_origin("never"));
    Proxy p(proxy_args_dns(dns, {"-v"}));
    auto f = fetch(p, authority("missing.test", o.port()), "/nx");
    INFO(dns.describe());
    INFO("body: " << f.body());
    REQUIRE(f.r);
    CHECK(f.status() == 502);
    CHECK(f.body().find("cannot resolve host 'missing.test'") != std::string::npos);
    CHECK(f.body().find("no such name") != std::string::npos);
    CHECK(f.ms < 2000);
    CHECK(dns.count("missing.test") >= 1);
    CHECK(end_reason(p, "/nx") == "resolve-failed");
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: dns: SERVFAIL and REFUSED give 502 'the DNS server failed'",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("never"));
    DnsScript servfail, refused;
    servfail.rcode = dns::SERVFAIL;
    refused.rcode = dns::REFUSED;
    dns.script("servfail.test", servfail);
    dns.script("refused.test", refused);
    Proxy p(proxy_args_dns(dns, {"-v"}));
    for (const char* name : {"servfail.test", "refused.test"}) {
        INFO("name: " << name);
        auto f = fetch(p, authority(name, o.port()), std::string("/") + name);
        INFO("body: " << f.body());
        REQUIRE(f.r);
        CHECK(f.status() == 502);
        CHECK(f.body().find("cannot resolve host '" + std::string(name) + "': the DNS server failed") !=
              std::string::npos);
        CHECK(f.ms < 4000);
        CHECK(end_reason(p, std::string("/") + name) == "resolve-failed");
    }
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: dns: a name without addresses gives 502 'it has no address'",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("never"));
    dns.script("empty.test", DnsScript{}); // NOERROR, no records
    Proxy p(proxy_args_dns(dns, {"-v"}));
    auto f = fetch(p, authority("empty.test", o.port()), "/empty");
    INFO(dns.describe());
    INFO("body: " << f.body());
    REQUIRE(f.r);
    CHECK(f.status() == 502);
    CHECK(f.body().find("cannot resolve host 'empty.test': it has no address") != std::string::npos);
    CHECK(end_reason(p, "/empty") == "resolve-failed");
    CHECK(o.connections() == 0);
}

// ------------------------------------------------------------ timing

TEST_CASE("integration: dns: a slow answer holds up only its own client", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("ok"));
    DnsScript slow = a_record("127.0.0.1");
    slow.delay = Ms(1500);
    dns.script("slow.test", slow);
    dns.script("fast.test", a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns));
    // fast.test is in the cache from here on.
    REQUIRE(fetch(p, authority("fast.test", o.port())).status() == 200);
    REQUIRE(dns.wait_count("fast.test", dns::AAAA, 1, Ms(1000)));
    const auto fast_queries = dns.count("fast.test");

    Conn slow_client = p.connect();
    auto start = Clock::now();
    REQUIRE(slow_client.send_all(get_req(authority("slow.test", o.port()), "/slow")));
    REQUIRE(dns.wait_count("slow.test", dns::A, 1, Ms(1000)));

    auto literal = fetch(p, o.authority(), "/literal");
    CHECK(literal.status() == 200);
    CHECK(literal.ms < 300);
    auto cached = fetch(p, authority("fast.test", o.port()), "/cached");
    CHECK(cached.status() == 200);
    CHECK(cached.ms < 300);
    CHECK(elapsed_ms(start) < 1400); // both were done while slow.test was pending

    auto r = slow_client.read_response(kWait);
    auto ms = elapsed_ms(start);
    INFO(dns.describe());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(ms >= 1400);
    CHECK(ms < 4500);
    CHECK(dns.count("fast.test") == fast_queries);
}

TEST_CASE("integration: dns: a lost UDP query is sent again and answered", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("second try"));
    DnsScript s = a_record("127.0.0.1");
    s.drop_first_udp = 1; // per query type: the first A and the first AAAA are lost
    dns.script("lossy.test", s);
    Proxy p(proxy_args_dns(dns, {"--dns-timeout", "3s"}));
    auto f = fetch(p, authority("lossy.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "second try");
    CHECK(f.ms >= 200);   // a try waits at least 250 ms before it is sent again
    CHECK(f.ms < 3000);   // within --dns-timeout
    auto a = dns.queries_for("lossy.test", dns::A);
    REQUIRE(a.size() >= 2);
    CHECK_FALSE(a[1].tcp);
    auto gap = std::chrono::duration_cast<Ms>(a[1].at - a[0].at).count();
    CHECK(gap >= 200);
    CHECK(gap <= 1600);
}

TEST_CASE("integration: dns: a silent server gives 504 after --dns-timeout, END timeout-resolve",
          "[integration][dns][timeouts]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("ok"));
    DnsScript silent;
    silent.silent = true;
    dns.script("silent.test", silent);
    Proxy p(proxy_args_dns(dns, {"--dns-timeout", "2s", "-v"}));

    Conn c = p.connect();
    auto start = Clock::now();
    REQUIRE(c.send_all(get_req(authority("silent.test", o.port()), "/silent")));
    REQUIRE(dns.wait_count("silent.test", dns::A, 1, Ms(1000)));
    // Other clients are served meanwhile.
    auto other = fetch(p, o.authority(), "/other");
    CHECK(other.status() == 200);
    CHECK(other.ms < 300);

    auto r = c.read_response(kWait);
    auto ms = elapsed_ms(start);
    INFO(dns.describe());
    REQUIRE(r);
    INFO("body: " << r->body);
    CHECK(r->status == 504);
    CHECK(r->body.find("resolving host 'silent.test' timed out") != std::string::npos);
    CHECK(ms >= 1800);
    CHECK(ms < 3500);
    // With --resolver there are two attempts: one server, 2 s, so the query
    // is sent again after about a second.
    auto a = dns.queries_for("silent.test", dns::A);
    REQUIRE(a.size() >= 2);
    auto gap = std::chrono::duration_cast<Ms>(a[1].at - a[0].at).count();
    CHECK(gap >= 700);
    CHECK(gap <= 1500);
    CHECK(end_reason(p, "/silent") == "timeout-resolve");
    CHECK(o.connections() == 1); // only /other
}

TEST_CASE("integration: dns: a second --resolver is asked when the first is silent or fails",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns first, second;
    Origin o(static_origin("from the second server"));
    DnsScript bad;
    SECTION("silent") { bad.silent = true; }
    SECTION("SERVFAIL") { bad.rcode = dns::SERVFAIL; }
    first.script("two.test", bad);
    second.script("two.test", a_record("127.0.0.1"));
    Proxy p(proxy_args({"--resolver", first.address() + "," + second.address(), "--dns-timeout", "4s"}));
    auto f = fetch(p, authority("two.test", o.port()));
    INFO(first.describe());
    INFO(second.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "from the second server");
    CHECK(f.ms < 4000);
    CHECK(first.count("two.test", dns::A) >= 1);
    CHECK(second.count("two.test", dns::A) >= 1);
}

TEST_CASE("integration: dns: a truncated UDP answer is asked again over TCP", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("via tcp"));
    DnsScript s = a_record("127.0.0.1");
    s.truncate_udp = true;
    dns.script("tc.test", s);
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("tc.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "via tcp");
    CHECK(f.ms < 2000);
    auto a = dns.queries_for("tc.test", dns::A);
    REQUIRE(a.size() >= 2);
    CHECK_FALSE(a[0].tcp);
    CHECK(dns.count_tcp("tc.test", dns::A) >= 1);
}

// ------------------------------------------------------------ cache

TEST_CASE("integration: dns: answers are cached for their TTL", "[integration][dns][cache]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("ttl"));
    dns.script("ttl1.test", a_record("127.0.0.1", 1));
    Proxy p(proxy_args_dns(dns));
    const std::string auth = authority("ttl1.test", o.port());
    REQUIRE(fetch(p, auth, "/1").status() == 200);
    REQUIRE(dns.wait_count("ttl1.test", dns::AAAA, 1, Ms(1000)));
    const auto first = dns.count("ttl1.test", dns::A);
    CHECK(first == 1);
    CHECK(fetch(p, auth, "/2").status() == 200);
    std::this_thread::sleep_for(Ms(100));
    CHECK(dns.count("ttl1.test", dns::A) == first);
    std::this_thread::sleep_for(Ms(1400)); // now past the 1 s TTL
    CHECK(fetch(p, auth, "/3").status() == 200);
    INFO(dns.describe());
    CHECK(dns.wait_count("ttl1.test", dns::A, first + 1, Ms(500)));
    CHECK(o.wait_requests(3));
}

TEST_CASE("integration: dns: --dns-cache-size 0 asks the server every time", "[integration][dns][cache]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("nocache"));
    dns.script("nocache.test", a_record("127.0.0.1", 300));
    Proxy p(proxy_args_dns(dns, {"--dns-cache-size", "0"}));
    const std::string auth = authority("nocache.test", o.port());
    for (int i = 0; i < 3; ++i)
        CHECK(fetch(p, auth, "/" + std::to_string(i)).status() == 200);
    INFO(dns.describe());
    CHECK(dns.wait_count("nocache.test", dns::A, 3, Ms(500)));
}

TEST_CASE("integration: dns: TTLs are clamped to --dns-min-ttl and --dns-max-ttl",
          "[integration][dns][cache]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("clamp"));
    dns.script("long.test", a_record("127.0.0.1", 3600));
    dns.script("zero.test", a_record("127.0.0.1", 0));
    SECTION("--dns-max-ttl 1s shortens a one-hour TTL")
    {
        Proxy p(proxy_args_dns(dns, {"--dns-min-ttl", "0", "--dns-max-ttl", "1s"}));
        const std::string auth = authority("long.test", o.port());
        REQUIRE(fetch(p, auth).status() == 200);
        CHECK(fetch(p, auth).status() == 200);
        std::this_thread::sleep_for(Ms(100));
        CHECK(dns.count("long.test", dns::A) == 1);
        std::this_thread::sleep_for(Ms(1400));
        CHECK(fetch(p, auth).status() == 200);
        INFO(dns.describe());
        CHECK(dns.wait_count("long.test", dns::A, 2, Ms(500)));
    }
    SECTION("--dns-min-ttl 3s keeps a zero TTL")
    {
        Proxy p(proxy_args_dns(dns, {"--dns-min-ttl", "3s"}));
        const std::string auth = authority("zero.test", o.port());
        REQUIRE(fetch(p, auth).status() == 200);
        std::this_thread::sleep_for(Ms(1000));
        CHECK(fetch(p, auth).status() == 200);
        std::this_thread::sleep_for(Ms(100));
        INFO(dns.describe());
        CHECK(dns.count("zero.test", dns::A) == 1);
    }
    SECTION("without --dns-min-ttl a zero TTL is not cached")
    {
        Proxy p(proxy_args_dns(dns));
        const std::string auth = authority("zero.test", o.port());
        REQUIRE(fetch(p, auth).status() == 200);
        // Not the same instant (lookups of one moment may share an answer).
        std::this_thread::sleep_for(Ms(50));
        CHECK(fetch(p, auth).status() == 200);
        INFO(dns.describe());
        CHECK(dns.wait_count("zero.test", dns::A, 2, Ms(500)));
    }
}

TEST_CASE("integration: dns: negative answers are cached for the SOA's negative TTL",
          "[integration][dns][cache]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("never"));
    // Two requests for `name`; the queries seen after the first and after the second.
    auto twice = [&](Proxy& p, const std::string& name) {
        const std::string auth = authority(name, o.port());
        auto f1 = fetch(p, auth);
        CHECK(f1.status() == 502);
        std::this_thread::sleep_for(Ms(200)); // the other query type's answer too
        const auto before = dns.count(name);
        CHECK(before >= 1);
        auto f2 = fetch(p, auth);
        CHECK(f2.status() == 502);
        std::this_thread::sleep_for(Ms(200));
        return std::pair{before, dns.count(name)};
    };
    DnsScript nx;
    nx.rcode = dns::NXDOMAIN;
    nx.soa_minimum = 60;
    SECTION("NXDOMAIN with SOA minimum 60")
    {
        Proxy p(proxy_args_dns(dns));
        dns.script("neg.test", nx);
        auto [before, after] = twice(p, "neg.test");
        INFO(dns.describe());
        CHECK(after == before);
    }
    SECTION("no data with SOA minimum 60")
    {
        Proxy p(proxy_args_dns(dns));
        DnsScript s;
        s.soa_minimum = 60;
        dns.script("nodata.test", s);
        auto [before, after] = twice(p, "nodata.test");
        INFO(dns.describe());
        CHECK(after == before);
    }
    SECTION("the SOA record's own TTL (1 s) caps the minimum field")
    {
        Proxy p(proxy_args_dns(dns));
        DnsScript s = nx;
        s.soa_ttl = 1;
        dns.script("shortneg.test", s);
        auto [before, after] = twice(p, "shortneg.test");
        CHECK(after == before);
        std::this_thread::sleep_for(Ms(1200));
        CHECK(fetch(p, authority("shortneg.test", o.port())).status() == 502);
        INFO(dns.describe());
        CHECK(dns.wait_count("shortneg.test", 0, before + 1, Ms(500)));
    }
    SECTION("--dns-max-ttl 1s clamps the negative TTL too")
    {
        Proxy p(proxy_args_dns(dns, {"--dns-max-ttl", "1s"}));
        dns.script("maxneg.test", nx);
        auto [before, after] = twice(p, "maxneg.test");
        CHECK(after == before);
        std::this_thread::sleep_for(Ms(1200));
        CHECK(fetch(p, authority("maxneg.test", o.port())).status() == 502);
        INFO(dns.describe());
        CHECK(dns.wait_count("maxneg.test", 0, before + 1, Ms(500)));
    }
    CHECK(o.connections() == 0);
}

TEST_CASE("integration: dns: concurrent lookups of one name share one query", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("shared"));
    DnsScript s = a_record("127.0.0.1");
    s.delay = Ms(500); // under the one-second wait before a try is sent again
    dns.script("shared.test", s);
    Proxy p(proxy_args_dns(dns));
    const std::string req = get_req(authority("shared.test", o.port()));
    std::vector<Conn> clients;
    for (int i = 0; i < 10; ++i) {
        clients.push_back(p.connect());
        REQUIRE(clients.back().send_all(req));
    }
    int ok = 0;
    for (auto& c : clients) {
        auto r = c.read_response(kWait);
        if (r && r->status == 200 && r->body == "shared")
            ++ok;
    }
    INFO(dns.describe());
    CHECK(ok == 10);
    CHECK(dns.count("shared.test", dns::A) == 1);
    CHECK(dns.count("shared.test", dns::AAAA) == 1);
}

TEST_CASE("integration: dns: a client leaving during a lookup does not disturb the others",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("stayed"));
    DnsScript s = a_record("127.0.0.1");
    s.delay = Ms(500);
    dns.script("leave.test", s);
    Proxy p(proxy_args_dns(dns));
    const std::string req = get_req(authority("leave.test", o.port()));
    Conn leaver = p.connect();
    REQUIRE(leaver.send_all(req));
    REQUIRE(dns.wait_count("leave.test", dns::A, 1, Ms(1000)));
    Conn stayer = p.connect();
    REQUIRE(stayer.send_all(req));
    std::this_thread::sleep_for(Ms(50));
    leaver.close(); // gone while the lookup is pending
    auto r = stayer.read_response(kWait);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "stayed");
    // The answer was cached although its first asker left.
    auto f = fetch(p, authority("leave.test", o.port()));
    CHECK(f.status() == 200);
    CHECK(f.ms < 300);
    INFO(dns.describe());
    CHECK(dns.count("leave.test", dns::A) == 1);
}

TEST_CASE("integration: dns: many names looked up at once are all answered", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("many"));
    const int n = 40;
    for (int i = 0; i < n; ++i) {
        DnsScript s = a_record("127.0.0.1");
        s.delay = Ms(100 + 5 * i);
        dns.script("n" + std::to_string(i) + ".test", s);
    }
    Proxy p(proxy_args_dns(dns));
    std::vector<Conn> clients;
    for (int i = 0; i < n; ++i) {
        clients.push_back(p.connect());
        REQUIRE(clients.back().send_all(get_req(authority("n" + std::to_string(i) + ".test", o.port()))));
    }
    int ok = 0;
    for (auto& c : clients) {
        auto r = c.read_response(kWait);
        if (r && r->status == 200 && r->body == "many")
            ++ok;
    }
    INFO(dns.describe());
    CHECK(ok == n);
    for (int i = 0; i < n; ++i)
        CHECK(dns.count("n" + std::to_string(i) + ".test", dns::A) == 1);
}

TEST_CASE("integration: dns: a reply with the wrong ID is ignored", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("genuine"));
    DnsScript s = a_record("127.0.0.1");
    s.spoof_a = {"127.0.0.3"}; // nothing listens there: using it would give 502
    s.delay = Ms(100);
    dns.script("spoofed.test", s);
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("spoofed.test", o.port()));
    INFO(dns.describe());
    INFO("body: " << f.body());
    CHECK(f.status() == 200);
    CHECK(f.body() == "genuine");
}

TEST_CASE("integration: dns: CONNECT to a name goes through the resolver", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin echo(echo_origin());
    dns.script("tunnel.test", a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns, {"--connect-ports", "any", "-v"}));
    {
        Conn c = p.connect();
        const std::string auth = authority("tunnel.test", echo.port());
        REQUIRE(c.send_all("CONNECT " + auth + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n"));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(c.send_all("through the tunnel"));
        auto back = c.read_exact(18);
        REQUIRE(back);
        CHECK(*back == "through the tunnel");
    }
    {
        Conn c = p.connect();
        const std::string auth = authority("notunnel.test", echo.port());
        REQUIRE(c.send_all("CONNECT " + auth + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n"));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 502);
    }
    INFO(dns.describe());
    CHECK(dns.count("tunnel.test", dns::A) >= 1);
    CHECK(dns.count("notunnel.test") >= 1);
    CHECK(end_reason(p, "notunnel.test") == "resolve-failed");
}

TEST_CASE("integration: dns: --dns-timeout 500ms: two tries of 250 ms, then 504", "[integration][dns][timeouts]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("ok"));
    DnsScript silent;
    silent.silent = true;
    dns.script("quiet.test", silent);
    Proxy p(proxy_args_dns(dns, {"--dns-timeout", "500ms"}));
    auto f = fetch(p, authority("quiet.test", o.port()));
    INFO(dns.describe());
    INFO("body: " << f.body());
    CHECK(f.status() == 504);
    CHECK(f.ms >= 400);
    CHECK(f.ms < 1500);
    auto a = dns.queries_for("quiet.test", dns::A);
    REQUIRE(a.size() >= 2);
    auto gap = std::chrono::duration_cast<Ms>(a[1].at - a[0].at).count();
    CHECK(gap >= 200);
    CHECK(gap <= 450);
}

// ------------------------------------------------------------ Happy Eyeballs

TEST_CASE("integration: dns: Happy Eyeballs falls back to IPv4 when IPv6 hangs",
          "[integration][dns][ipv6][happy-eyeballs]")
{
    REQUIRE(in_netns());
    require_ipv6();
    FakeDns dns;
    auto split = split_port(static_origin("v4 won"));
    const std::uint16_t port = split.hang->port();
    const std::string v6_remote = "[::1]:" + std::to_string(port);
    // The listener's own filler is stuck in SYN-SENT: the /proc reading works.
    REQUIRE(syn_sent_to(v6_remote) >= 1);
    DnsScript s = a_record("127.0.0.1");
    s.aaaa = {"::1"};
    dns.script("dual.test", s);

    SECTION("IPv6 first: IPv4 starts after 250 ms and wins; the IPv6 attempt is closed")
    {
        Proxy p(proxy_args_dns(dns));
        Conn c = p.connect();
        auto start = Clock::now();
        REQUIRE(c.send_all(get_req(authority("dual.test", port))));
        bool tried_v6 = wait_until([&] { return syn_sent_from(p.pid(), v6_remote) >= 1; }, Ms(1000));
        auto r = c.read_response(kWait);
        auto ms = elapsed_ms(start);
        INFO(dns.describe());
        CHECK(tried_v6);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "v4 won");
        CHECK(ms >= 250);
        CHECK(ms < 2000); // far below the 10 s connect timeout
        CHECK(wait_until([&] { return syn_sent_from(p.pid(), v6_remote) == 0; }, Ms(1000)));
        CHECK(syn_sent_to(v6_remote) >= 1); // the filler is still there
    }
    SECTION("--prefer-ipv6 off: IPv4 first, at once")
    {
        Proxy p(proxy_args_dns(dns, {"--prefer-ipv6", "off"}));
        auto f = fetch(p, authority("dual.test", port));
        INFO(dns.describe());
        CHECK(f.status() == 200);
        CHECK(f.body() == "v4 won");
        CHECK(f.ms < 200);
        CHECK(syn_sent_from(p.pid(), v6_remote) == 0);
    }
}

TEST_CASE("integration: dns: a refused IPv6 address moves on to IPv4 at once",
          "[integration][dns][ipv6][happy-eyeballs]")
{
    REQUIRE(in_netns());
    require_ipv6();
    FakeDns dns;
    Origin o(static_origin("v4 after refusal"));
    // Nothing listens on [::1]:P: binding it shows it is free (this throws if not).
    { Origin probe(echo_origin(), "::1", o.port()); }
    DnsScript s = a_record("127.0.0.1");
    s.aaaa = {"::1"};
    dns.script("refused6.test", s);
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("refused6.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "v4 after refusal");
    CHECK(f.ms < 250);
}

TEST_CASE("integration: dns: a refused address moves on to the next A record at once",
          "[integration][dns][happy-eyeballs]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("next address"));
    DnsScript s;
    s.a = {"127.0.0.2", "127.0.0.1"}; // nothing listens on 127.0.0.2:P
    dns.script("two-a.test", s);
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("two-a.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "next address");
    CHECK(f.ms < 250);
}

// ------------------------------------------------------------ IPv6 end to end

TEST_CASE("integration: dns: IPv6 end to end: [::1] listener, CONNECT and GET to [::1]",
          "[integration][dns][ipv6]")
{
    require_ipv6();
    Proxy p({"-c", "/dev/null", "-l", "[::1]:0", "--connect-ports", "any"});
    INFO("listen line: " << p.listen_line());
    CHECK(p.listen_line().find("[::1]:") != std::string::npos);
    REQUIRE(p.listeners().size() == 1);
    CHECK(p.listeners()[0].first == "::1");

    SECTION("GET http://[::1]:PORT/")
    {
        Origin o6(static_origin("v6 origin"), "::1");
        Conn c = connect_to(p.port(), "::1");
        auto r = c.roundtrip(get_req(o6.authority(), "/six"));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "v6 origin");
        REQUIRE(o6.wait_requests(1));
        CHECK(o6.requests()[0].target == "/six");
    }
    SECTION("CONNECT [::1]:PORT")
    {
        Origin echo6(echo_origin(), "::1");
        Conn c = connect_to(p.port(), "::1");
        const std::string auth = echo6.authority();
        REQUIRE(c.send_all("CONNECT " + auth + " HTTP/1.1\r\nHost: " + auth + "\r\n\r\n"));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(c.send_all("ping over six"));
        auto back = c.read_exact(13);
        REQUIRE(back);
        CHECK(*back == "ping over six");
    }
}

// ------------------------------------------------------------ hosts file

TEST_CASE("integration: dns: /etc/hosts names need no DNS query", "[integration][dns][hosts]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("from hosts"));
    Proxy p(proxy_args_dns(dns));
    auto f = fetch(p, authority("origin.test", o.port()));
    CHECK(f.status() == 200);
    CHECK(f.body() == "from hosts");
    std::this_thread::sleep_for(Ms(200));
    INFO(dns.describe());
    CHECK(dns.queries().empty());
}

TEST_CASE("integration: dns: --hosts-file is consulted before DNS and re-read when it changes",
          "[integration][dns][hosts]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    dns.script("hosted.test", a_record("127.0.0.3")); // never used, if the file wins
    ScratchDir dir;
    Origin first(closing_origin("first"));
    auto second = same_port_on("127.0.0.2", first, closing_origin("second"));
    const std::string hosts = dir.write("hosts", "# test hosts\n127.0.0.1\thosted.test other.test\n");
    Proxy p(proxy_args_dns(dns, {"--hosts-file", hosts}));
    const std::string auth = authority("hosted.test", first.port());
    CHECK(fetch(p, auth).body() == "first");

    SECTION("rewritten in place")
    {
        write_in_place(hosts, "127.0.0.2 hosted.test\n");
    }
    SECTION("replaced by rename")
    {
        std::string tmp = dir.write("hosts.new", "127.0.0.2 hosted.test\n");
        REQUIRE(std::rename(tmp.c_str(), hosts.c_str()) == 0);
    }
    auto start = Clock::now();
    std::string body;
    bool switched = wait_until([&] {
        body = fetch(p, auth).body();
        return body == "second";
    }, Ms(2000));
    INFO("last body: " << body << " after " << elapsed_ms(start) << " ms");
    CHECK(switched);
    INFO(dns.describe());
    CHECK(dns.count("hosted.test") == 0);
}

TEST_CASE("integration: dns: --hosts-file off sends every name to DNS", "[integration][dns][hosts]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("asked dns"));
    dns.script("origin.test", a_record("127.0.0.1"));
    Proxy p(proxy_args_dns(dns, {"--hosts-file", "off"}));
    auto f = fetch(p, authority("origin.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(dns.count("origin.test", dns::A) >= 1);
}

// ------------------------------------------------------------ configuration

TEST_CASE("integration: dns: --resolver system resolves through /etc/hosts",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    Origin o(static_origin("system"));
    Proxy p(proxy_args({"--resolver", "system"}));
    auto f = fetch(p, authority("origin.test", o.port()));
    CHECK(f.status() == 200);
    CHECK(f.body() == "system");
}

TEST_CASE("integration: dns: the DNS settings work as config-file directives", "[integration][dns]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("configured"));
    dns.script("origin.test", a_record("127.0.0.1"));
    ScratchDir dir;
    const std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n"
                                                      "resolver " + dns.address() + "\n"
                                                      "dns_timeout 2s\n"
                                                      "dns_cache_size 0\n"
                                                      "dns_min_ttl 0\n"
                                                      "dns_max_ttl 1m\n"
                                                      "prefer_ipv6 on\n"
                                                      "hosts_file off\n");
    Proxy p({"-c", conf});
    const std::string auth = authority("origin.test", o.port());
    CHECK(fetch(p, auth).body() == "configured");
    CHECK(fetch(p, auth).body() == "configured");
    INFO(dns.describe());
    // hosts_file off: asked although /etc/hosts has it; dns_cache_size 0: twice.
    CHECK(dns.wait_count("origin.test", dns::A, 2, Ms(500)));
}

TEST_CASE("integration: dns: without --resolver, /etc/resolv.conf's server and search list are used",
          "[integration][dns]")
{
    REQUIRE(in_netns());
    RestoreFile keep("/etc/resolv.conf");
    write_in_place("/etc/resolv.conf", "nameserver 127.0.0.1\n"
                                       "search broken.test example.test\n"
                                       "options ndots:1 timeout:1 attempts:2\n");
    FakeDns dns(53);
    Origin o(static_origin("searched"));
    Proxy p(proxy_args());

    SECTION("the search list completes a name without dots, past a domain whose server fails")
    {
        DnsScript failing;
        failing.rcode = dns::SERVFAIL;
        dns.script("www.broken.test", failing);
        dns.script("www.example.test", a_record("127.0.0.1"));
        auto f = fetch(p, authority("www", o.port()));
        INFO(dns.describe());
        CHECK(f.status() == 200);
        CHECK(f.body() == "searched");
        CHECK(dns.count("www.broken.test", dns::A) >= 1);
        CHECK(dns.count("www.example.test", dns::A) >= 1);
    }
    SECTION("a name with a final dot is not completed, nor cached with the bare name")
    {
        dns.script("www.example.test", a_record("127.0.0.1"));
        auto absolute = fetch(p, authority("www.", o.port()));
        INFO(dns.describe());
        CHECK(absolute.status() == 502);
        CHECK(absolute.body().find("no such name") != std::string::npos);
        CHECK(dns.count("www.example.test", dns::A) == 0);
        auto relative = fetch(p, authority("www", o.port()));
        CHECK(relative.status() == 200);
        CHECK(relative.body() == "searched");
    }
    SECTION("timeout:1 caps the wait before a try is sent again; attempts:2 allows it")
    {
        DnsScript s = a_record("127.0.0.1");
        s.drop_first_udp = 1;
        dns.script("lossy.example.test", s);
        auto f = fetch(p, authority("lossy", o.port()));
        INFO(dns.describe());
        CHECK(f.status() == 200);
        CHECK(f.ms < 2000);
        auto a = dns.queries_for("lossy.example.test", dns::A);
        REQUIRE(a.size() >= 2);
        // 5 s / (2 attempts x 1 server) = 2.5 s, capped at resolv.conf's 1 s.
        auto gap = std::chrono::duration_cast<Ms>(a[1].at - a[0].at).count();
        CHECK(gap >= 700);
        CHECK(gap <= 1500);
    }
}

TEST_CASE("integration: dns: after IPv4 wins the race, the next request reuses its connection at once",
          "[integration][dns][ipv6][happy-eyeballs]")
{
    REQUIRE(in_netns());
    require_ipv6();
    FakeDns dns;
    auto split = split_port(static_origin("kept"));
    const std::uint16_t port = split.hang->port();
    DnsScript s = a_record("127.0.0.1");
    s.aaaa = {"::1"};
    dns.script("kept.test", s);
    Proxy p(proxy_args_dns(dns));
    Conn c = p.connect();
    auto first = c.roundtrip(get_req(authority("kept.test", port)), kWait);
    REQUIRE(first);
    CHECK(first->status == 200);
    auto start = Clock::now();
    auto second = c.roundtrip(get_req(authority("kept.test", port)), kWait);
    auto ms = elapsed_ms(start);
    REQUIRE(second);
    CHECK(second->status == 200);
    CHECK(second->body == "kept");
    CHECK(ms < 200);  // no new race: the IPv4 connection that won is used again
    CHECK(split.origin->connections() == 1);
}

TEST_CASE("integration: dns: with two addresses hanging, the third is reached within a second",
          "[integration][dns][happy-eyeballs]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(static_origin("third"), "127.0.0.4");
    HangListener hang_first("127.0.0.2", o.port());
    HangListener hang_second("127.0.0.3", o.port());
    DnsScript s;
    s.a = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};
    dns.script("three.test", s);
    Proxy p(proxy_args_dns(dns, {"--prefer-ipv6", "off"}));
    auto f = fetch(p, authority("three.test", o.port()));
    INFO(dns.describe());
    CHECK(f.status() == 200);
    CHECK(f.body() == "third");
    CHECK(f.ms >= 450);  // 250 ms per address that did not connect
    CHECK(f.ms < 2000);  // far below the 10 s connect timeout
}

TEST_CASE("integration: dns: a family that answers late still reaches the cache",
          "[integration][dns][cache][ipv6]")
{
    REQUIRE(in_netns());
    require_ipv6();
    FakeDns dns;
    // Closing origins, so no pooled connection decides where a request goes.
    Origin o4(closing_origin("via IPv4"));
    auto o6 = same_port_on("::1", o4, closing_origin("via IPv6"));
    DnsScript s = a_record("127.0.0.1");
    s.aaaa = {"::1"};
    s.aaaa_delay = Ms(300);  // well past the 50 ms cproxy waits for the second family
    dns.script("late.test", s);
    Proxy p(proxy_args_dns(dns));
    auto first = fetch(p, authority("late.test", o4.port()));
    CHECK(first.status() == 200);
    CHECK(first.body() == "via IPv4");  // answered without waiting for AAAA
    CHECK(first.ms < 250);
    REQUIRE(dns.wait_count("late.test", dns::AAAA, 1));
    std::this_thread::sleep_for(Ms(500));  // the AAAA answer has arrived
    auto second = fetch(p, authority("late.test", o4.port()));
    std::this_thread::sleep_for(Ms(100));
    INFO(dns.describe());
    CHECK(second.status() == 200);
    CHECK(second.body() == "via IPv6");  // the preferred family, from the cache
    CHECK(dns.count("late.test", dns::A) == 1);
    CHECK(dns.count("late.test", dns::AAAA) == 1);
}

TEST_CASE("integration: dns: lookups of every kind leave no socket and no lookup behind",
          "[integration][dns][hardening]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    Origin o(closing_origin("settled"));
    dns.script("ok.test", a_record("127.0.0.1"));
    DnsScript truncated = a_record("127.0.0.1");
    truncated.truncate_udp = true;
    dns.script("tc.test", truncated);
    DnsScript slow = a_record("127.0.0.1");
    slow.delay = Ms(300);  // within the first try (1 s / 2 attempts)
    dns.script("slow.test", slow);
    DnsScript silent;
    silent.silent = true;
    dns.script("silent.test", silent);
    DnsScript dual = a_record("127.0.0.1");
    dual.aaaa = {"::1"};  // nothing listens on [::1]:P: refused, then IPv4
    dns.script("dual.test", dual);
    // No cache and no upstream pool: every request looks its name up, and
    // every descriptor left afterwards would be a leak.
    Proxy p(proxy_args_dns(dns, {"--dns-timeout", "1s", "--dns-cache-size", "0", "--upstream-max-idle", "0",
                                 "--stats-listen", "127.0.0.1:0"}));
    auto stats = p.stats_line();
    REQUIRE(stats);
    auto metric = [&](const std::string& name) {
        Conn c = connect_to(stats->port);
        auto r = c.roundtrip("GET /metrics HTTP/1.1\r\nHost: stats\r\nConnection: close\r\n\r\n");
        REQUIRE(r);
        std::string key = "\n" + name + "{worker=\"0\"} ";
        auto at = r->body.find(key);
        REQUIRE(at != std::string::npos);
        return std::stoll(r->body.substr(at + key.size()));
    };
    const int baseline = p.open_fds();

    for (int round = 0; round < 3; ++round) {
        for (const char* name : {"ok.test", "tc.test", "dual.test"}) {
            auto f = fetch(p, authority(name, o.port()));
            INFO(name << ": " << dns.describe());
            CHECK(f.status() == 200);
        }
        CHECK(fetch(p, authority("missing.test", o.port())).status() == 502);
        // Two of three clients leave while their shared lookup is pending.
        std::vector<Conn> leaving;
        for (int i = 0; i < 2; ++i) {
            leaving.push_back(p.connect());
            REQUIRE(leaving.back().send_all(get_req(authority("slow.test", o.port()))));
        }
        Conn staying = p.connect();
        REQUIRE(staying.send_all(get_req(authority("slow.test", o.port()))));
        leaving.clear();
        auto r = staying.read_response(kWait);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(fetch(p, authority("silent.test", o.port())).status() == 504);
    }
    INFO(dns.describe());
    CHECK(wait_until([&] { return metric("cproxy_dns_lookups_active") == 0; }, Ms(3000)));
    CHECK(wait_until([&] { return metric("cproxy_connections_open") == 1; }, Ms(3000)));  // the scrape itself
    CHECK(wait_until([&] { return p.open_fds() == baseline; }, Ms(3000)));
    CHECK(p.open_fds() == baseline);
}

// upstream_max_connections with a racing attempt pending: the request keeps
// trying rather than queue for a busy address, and no attempt outlives it.
TEST_CASE("integration: dns: under upstream_max_connections a pending racer is never left behind by a queued request",
          "[integration][dns][happy-eyeballs][upstream-limit]")
{
    REQUIRE(in_netns());
    FakeDns dns;
    HangListener first("127.0.0.2");
    const std::uint16_t port = first.port();
    HangListener second("127.0.0.3", port);
    Origin busy(http_origin([](const HttpRequest&) { return Reply{http_response(200, "late"), false, Ms(4000)}; }),
                "127.0.0.4", port);
    DnsScript s;
    s.a = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};
    dns.script("three.test", s);
    Proxy p(proxy_args_dns(dns, {"--upstream-max-connections", "1", "--timeout-connect", "1500ms"}));
    // Another client holds the only place at 127.0.0.4.
    Conn holder = p.connect();
    REQUIRE(holder.send_all(get_req(authority("127.0.0.4", port), "/hold")));
    REQUIRE(busy.wait_requests(1));
    // .2 hangs; .3 races it at 250 ms and hangs too; at 500 ms .2 gives way
    // and .4 is at its limit.
    Conn c = p.connect();
    REQUIRE(c.send_all(get_req(authority("three.test", port))));
    const std::string racer = "127.0.0.3:" + std::to_string(port);
    CHECK(wait_until([&] { return syn_sent_from(p.pid(), racer) == 1; }, Ms(2000)));
    auto r = c.read_response(Ms(4000));
    INFO(dns.describe());
    REQUIRE(r);
    CHECK(r->status == 504);  // the connect timeout, not 503 upstream-busy
    CHECK(wait_until([&] { return syn_sent_from(p.pid(), racer) == 0; }, Ms(1000)));
    CHECK(syn_sent_from(p.pid(), "127.0.0.2:" + std::to_string(port)) == 0);
}
