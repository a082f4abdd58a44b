// Parent proxies: cproxy sends requests and tunnels through other proxies
// (--parent "HOST:PORT [auth USER:PASS] [weight N]"), chosen by smooth
// weighted round-robin among the parents that are up; parent_for/direct_for
// choose which hosts go through them; a parent that cannot be reached is held
// down for parent_down_time while the request fails over, to the next parent
// or, without never_direct, straight to the origin.
//
// The parents are cproxy itself (the real binary, its access log on stderr,
// `--via parent`) or, where the exact bytes on the wire matter, a stand-in run
// by the test that records what it receives. The proxy under test is called
// the child (`--via child`).
#include "stats_client.hpp"

#include <algorithm>
#include <cctype>
#include <csignal>
#include <cstdlib>
#include <memory>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

// An access-log line split into its fields: 0 time, 1 client, 2 user,
// 3 method, 4 target, 5 status, 6 bytes in, 7 bytes out, 8 ms, 9 upstream,
// 10 end.
using LogLine = std::vector<std::string>;

bool is_status(const std::string& s)
{
    return s.size() == 3 && std::isdigit(static_cast<unsigned char>(s[0])) &&
           std::isdigit(static_cast<unsigned char>(s[1])) && std::isdigit(static_cast<unsigned char>(s[2]));
}

// The access-log lines of a proxy's stderr for proxied requests; error-log
// lines ("TIME cproxy[PID] warning: ...") that happen to have 11 words, and
// the test's own scrapes of the stats listener (GET /metrics), are left out.
std::vector<LogLine> log_of(const std::string& err)
{
    std::vector<LogLine> out;
    for (auto& fields : access_log_lines(err))
        if (is_status(fields[5]) && fields[1].rfind("cproxy[", 0) != 0 && fields[4] != "/metrics")
            out.push_back(std::move(fields));
    return out;
}

std::vector<LogLine> with_target(const std::vector<LogLine>& lines, const std::string& target)
{
    std::vector<LogLine> out;
    for (const auto& l : lines)
        if (l[4] == target)
            out.push_back(l);
    return out;
}

// Waits (bounded) until `p` has logged at least `n` requests for `target`;
// returns the lines it has for that target then.
std::vector<LogLine> wait_logged(Proxy& p, const std::string& target, std::size_t n = 1, Ms timeout = kWait)
{
    p.wait_err([&](const std::string& e) { return with_target(log_of(e), target).size() >= n; }, timeout);
    return with_target(log_of(p.err()), target);
}

// Waits (bounded) until `p` has logged at least `n` requests; returns them all.
std::vector<LogLine> wait_log_size(Proxy& p, std::size_t n, Ms timeout = kWait)
{
    p.wait_err([&](const std::string& e) { return log_of(e).size() >= n; }, timeout);
    return log_of(p.err());
}

bool err_has(Proxy& p, const std::string& needle, Ms timeout = kWait)
{
    return p.wait_err([&](const std::string& e) { return e.find(needle) != std::string::npos; }, timeout);
}

std::size_t occurrences(const std::string& hay, const std::string& needle)
{
    std::size_t n = 0;
    for (std::size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + needle.size()))
        ++n;
    return n;
}

// The error-log lines of `err` at level warning.
std::vector<std::string> warnings(const std::string& err)
{
    std::vector<std::string> out;
    std::size_t pos = 0;
    while (pos < err.size()) {
        std::size_t eol = err.find('\n', pos);
        if (eol == std::string::npos)
            break;
        std::string line = err.substr(pos, eol - pos);
        pos = eol + 1;
        if (line.find(" warning: ") != std::string::npos)
            out.push_back(line);
    }
    return out;
}

std::string addr(const Proxy& p) { return "127.0.0.1:" + std::to_string(p.port()); }

std::string down_warning(const std::string& address) { return "parent proxy " + address + " is down"; }
std::string up_again(const std::string& address) { return "parent proxy " + address + " is up again"; }

// A cproxy parent: access log on stderr, Via name "parent".
std::vector<std::string> parent_args(std::vector<std::string> extra = {})
{
    std::vector<std::string> a{"-v", "--via", "parent"};
    a.insert(a.end(), extra.begin(), extra.end());
    return proxy_args(a);
}

// The proxy under test: access log on stderr, Via name "child", one --parent
// per item of `parents` (each item is the option's whole value).
std::vector<std::string> child_args(const std::vector<std::string>& parents, std::vector<std::string> extra = {})
{
    std::vector<std::string> a{"-v", "--via", "child"};
    for (const auto& p : parents) {
        a.push_back("--parent");
        a.push_back(p);
    }
    a.insert(a.end(), extra.begin(), extra.end());
    return proxy_args(a);
}

// "http://host:port/x" -> "host:port".
std::string authority_of(const std::string& url)
{
    std::size_t start = url.find("://") + 3;
    return url.substr(start, url.find('/', start) - start);
}

std::string get(const std::string& url, const std::string& extra = "")
{
    return "GET " + url + " HTTP/1.1\r\nHost: " + authority_of(url) + "\r\n" + extra + "\r\n";
}

// One request on a new client connection that asks to be closed after it.
std::optional<HttpResponse> fetch(const Proxy& p, const std::string& url, const std::string& extra = "")
{
    Conn c = p.connect();
    return c.roundtrip(get(url, "Connection: close\r\n" + extra));
}

int status(const std::optional<HttpResponse>& r) { return r ? r->status : 0; }

std::string basic(const std::string& user_pass) { return "Basic " + base64(user_pass); }

// Every Via element of a request, in order, over all its Via fields.
std::vector<std::string> via_of(const HttpRequest& q)
{
    std::vector<std::string> out;
    for (const auto& [name, value] : q.headers) {
        if (!iequals(name, "Via"))
            continue;
        std::size_t i = 0;
        while (i <= value.size()) {
            std::size_t comma = value.find(',', i);
            if (comma == std::string::npos)
                comma = value.size();
            std::string item = value.substr(i, comma - i);
            std::size_t b = item.find_first_not_of(" \t");
            std::size_t e = item.find_last_not_of(" \t");
            if (b != std::string::npos)
                out.push_back(item.substr(b, e - b + 1));
            i = comma + 1;
        }
    }
    return out;
}

// Origin answering each request with its own target as the body.
Origin::Handler target_origin()
{
    return http_origin([](const HttpRequest& r) { return Reply{http_response(200, r.target)}; });
}

// The origin's request for `target`; REQUIREs exactly one.
HttpRequest request_for(const Origin& o, const std::string& target)
{
    std::vector<HttpRequest> found;
    for (const auto& q : o.requests())
        if (q.target == target)
            found.push_back(q);
    INFO("requests to the origin for " << target);
    REQUIRE(found.size() == 1);
    return found[0];
}

std::string connect_req(const std::string& authority, const std::string& extra = "")
{
    return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n" + extra + "\r\n";
}

// Reads a reply head to a CONNECT; returns its status line.
std::string reply_line(Conn& c, std::string* head_out = nullptr)
{
    auto head = c.read_until("\r\n\r\n");
    if (!head)
        return "<no reply>";
    if (head_out)
        *head_out = *head;
    return head->substr(0, head->find("\r\n"));
}

// A stand-in parent. It records every request; a CONNECT gets
// `tunnel_answer` ("200 Connection established" unless told) and then an echo
// of the tunnel's bytes (bytes that came before its answer are noted: a child
// must wait for the 2xx), anything else gets 200 "fake parent" on a
// kept-alive connection.
Origin::Handler fake_parent(std::string tunnel_answer = "HTTP/1.1 200 Connection established\r\n\r\n")
{
    return [tunnel_answer](Origin& self, Conn& conn) {
        while (!self.stopping()) {
            auto q = conn.read_request(kWait);
            if (!q)
                return;
            bool tunnel = q->method == "CONNECT";
            self.record(*q);
            if (!tunnel) {
                if (!conn.send_all(http_response(200, "fake parent")))
                    return;
                continue;
            }
            if (!conn.buffer().empty() || conn.fill(Ms(200)) > 0)
                self.note("bytes before the 200");
            if (!conn.send_all(tunnel_answer))
                return;
            for (;;) {
                if (conn.buffer().empty() && conn.fill(kWait) <= 0)
                    return;
                std::string bytes = std::move(conn.buffer());
                conn.buffer().clear();
                if (!conn.send_all(bytes))
                    return;
            }
        }
    };
}

// Sends `url` through `child` on new connections until its stderr says the
// parent at `address` is down, at most `tries` times; each must get 200.
// Returns how many were sent, 0 when the warning never came.
int until_down(Proxy& child, const std::string& address, const std::string& url, int tries)
{
    for (int i = 1; i <= tries; ++i) {
        auto r = fetch(child, url);
        INFO("request " << i << " to " << url << ": status " << status(r) << "\nchild stderr:\n" << child.err());
        CHECK(status(r) == 200);
        if (err_has(child, down_warning(address), Ms(500)))
            return i;
    }
    return 0;
}

// The value of `name`{worker="0"}, nullopt when there is no such sample.
std::optional<double> worker0(const Exposition& e, const std::string& name)
{
    std::optional<double> v;
    for (const auto& s : e.samples) {
        auto w = s.labels.find("worker");
        if (s.name == name && w != s.labels.end() && w->second == "0" && s.labels.size() == 1)
            v = s.value;
    }
    return v;
}

std::string type_of(const Exposition& e, const std::string& family)
{
    auto t = e.types.find(family);
    return t == e.types.end() ? "<no TYPE line>" : t->second;
}

std::string proxy_bin()
{
    std::string bin = proxy_binary();
    if (bin.find('/') == std::string::npos)
        bin = "./" + bin;
    return bin;
}

} // namespace

TEST_CASE("integration: parent: an HTTP request goes child -> parent -> origin, logged with the parent as upstream",
          "[integration][parent]")
{
    Origin o(target_origin());
    Proxy parent(parent_args());
    Proxy child(child_args({addr(parent)}));
    const std::string url = o.url("/through?x=1");
    auto r = fetch(child, url);
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "/through?x=1");
    {
        // The response passed both proxies too.
        std::string vias;
        for (const auto& [name, value] : r->headers)
            if (iequals(name, "Via"))
                vias += value + ", ";
        INFO("response Via: " << vias);
        CHECK(vias.find("1.1 parent") != std::string::npos);
        CHECK(vias.find("1.1 child") != std::string::npos);
    }

    REQUIRE(o.wait_requests(1));
    const HttpRequest q = o.requests().at(0);
    INFO("origin saw:\n" << q.raw_head);
    CHECK(q.target == "/through?x=1"); // origin-form, from the parent
    CHECK(q.count("Host") == 1);
    CHECK(q.header("Host") == o.authority());
    CHECK(via_of(q) == std::vector<std::string>{"1.1 child", "1.1 parent"});
    CHECK(o.connections() == 1);

    auto in_parent = wait_logged(parent, url);
    INFO("parent stderr:\n" << parent.err());
    REQUIRE(in_parent.size() == 1); // the parent got the absolute URL
    CHECK(in_parent[0][3] == "GET");
    CHECK(in_parent[0][5] == "200");
    CHECK(in_parent[0][9] == o.authority());

    auto in_child = wait_logged(child, url);
    INFO("child stderr:\n" << child.err());
    REQUIRE(in_child.size() == 1);
    CHECK(in_child[0][5] == "200");
    CHECK(in_child[0][9] == addr(parent));
}

TEST_CASE("integration: parent: on the wire the parent gets absolute-form with Host, its own credentials only",
          "[integration][parent]")
{
    Origin fake(fake_parent());
    const std::string parent_addr = fake.authority();
    // Nothing listens at the origin: only the parent may answer.
    const std::string origin = "127.0.0.1:" + std::to_string(unused_port());
    const std::string client_auth = "Proxy-Authorization: " + basic("c:d") + "\r\n";

    SECTION("HTTP, with auth on the parent line")
    {
        Proxy child(child_args({parent_addr + " auth u:p"}, {"--auth", "c:d"}));
        auto r = fetch(child, "http://" + origin + "/wire?q=1", client_auth);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "fake parent");
        REQUIRE(fake.wait_requests(1));
        const HttpRequest q = fake.requests().at(0);
        INFO("parent saw:\n" << q.raw_head);
        CHECK(q.method == "GET");
        CHECK(q.target == "http://" + origin + "/wire?q=1");
        CHECK(q.version == "HTTP/1.1");
        CHECK(q.count("Host") == 1);
        CHECK(q.header("Host") == origin);
        CHECK(q.count("Proxy-Authorization") == 1);
        CHECK(q.header("Proxy-Authorization") == basic("u:p"));
        CHECK(q.raw_head.find(base64("c:d")) == std::string::npos);
        CHECK(via_of(q) == std::vector<std::string>{"1.1 child"});
    }
    SECTION("HTTP, without auth on the parent line the client's credentials stay behind")
    {
        Proxy child(child_args({parent_addr}, {"--auth", "c:d"}));
        auto r = fetch(child, "http://" + origin + "/no-auth", client_auth);
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(fake.wait_requests(1));
        const HttpRequest q = fake.requests().at(0);
        INFO("parent saw:\n" << q.raw_head);
        CHECK(q.target == "http://" + origin + "/no-auth");
        CHECK(q.count("Proxy-Authorization") == 0);
        CHECK(q.raw_head.find(base64("c:d")) == std::string::npos);
    }
    SECTION("CONNECT, with auth on the parent line; early bytes wait for the parent's 200")
    {
        Proxy child(child_args({parent_addr + " auth u:p"}, {"--auth", "c:d", "--connect-ports", "any"}));
        Conn c = child.connect();
        REQUIRE(c.send_all(connect_req(origin, client_auth) + "EARLY|"));
        std::string head;
        CHECK(reply_line(c, &head) == "HTTP/1.1 200 Connection established");
        INFO("reply head: " << head);
        auto early = c.read_exact(6);
        REQUIRE(early);
        CHECK(*early == "EARLY|");
        REQUIRE(c.send_all("later"));
        auto later = c.read_exact(5);
        REQUIRE(later);
        CHECK(*later == "later");
        REQUIRE(fake.wait_requests(1));
        const HttpRequest q = fake.requests().at(0);
        INFO("parent saw:\n" << q.raw_head);
        CHECK(q.method == "CONNECT");
        CHECK(q.target == origin);
        CHECK(q.version == "HTTP/1.1");
        CHECK(q.header("Host") == origin);
        CHECK(q.count("Proxy-Authorization") == 1);
        CHECK(q.header("Proxy-Authorization") == basic("u:p"));
        CHECK(q.raw_head.find(base64("c:d")) == std::string::npos);
        CHECK(fake.notes().empty()); // nothing before the parent's 200
    }
}

TEST_CASE("integration: parent: auth on the parent line passes the parent's --auth; wrong credentials give 502",
          "[integration][parent][auth]")
{
    Origin o(target_origin());
    Proxy parent(parent_args({"--auth", "u:p"}));
    const std::string client_auth = "Proxy-Authorization: " + basic("c:d") + "\r\n";
    {
        Proxy child(child_args({addr(parent) + " auth u:p"}, {"--auth", "c:d"}));
        const std::string url = o.url("/authorized");
        auto r = fetch(child, url, client_auth);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "/authorized");
        REQUIRE(o.wait_requests(1));
        const HttpRequest q = o.requests().at(0);
        INFO("origin saw:\n" << q.raw_head);
        CHECK(q.count("Proxy-Authorization") == 0);
        auto in_parent = wait_logged(parent, url);
        INFO("parent stderr:\n" << parent.err());
        REQUIRE(in_parent.size() == 1);
        CHECK(in_parent[0][2] == "u");
        CHECK(in_parent[0][5] == "200");
        auto in_child = wait_logged(child, url);
        INFO("child stderr:\n" << child.err());
        REQUIRE(in_child.size() == 1);
        CHECK(in_child[0][2] == "c");
    }
    {
        Proxy child(child_args({addr(parent) + " auth u:wrong"}));
        auto r = fetch(child, o.url("/refused"));
        REQUIRE(r);
        INFO("client got: " << r->raw_head << r->body);
        CHECK(r->status == 502);
        CHECK(r->body.find("407") != std::string::npos);
        CHECK(icontains(r->body, "parent"));
        CHECK(r->count("Proxy-Authenticate") == 0); // the parent's challenge is not the client's business
        CHECK(o.requests().size() == 1);
        // The parent did answer 407.
        CHECK(parent.wait_err([](const std::string& e) {
            for (const auto& l : log_of(e))
                if (l[5] == "407")
                    return true;
            return false;
        }));
        // The child tells its operator.
        bool warned = child.wait_err([&](const std::string& e) {
            for (const auto& w : warnings(e))
                if (w.find("407") != std::string::npos || w.find(addr(parent)) != std::string::npos)
                    return true;
            return false;
        });
        INFO("child stderr:\n" << child.err());
        CHECK(warned);
    }
}

TEST_CASE("integration: parent: CONNECT through a parent, early bytes first, then a round trip",
          "[integration][parent][connect]")
{
    Origin o(echo_origin());
    Proxy parent(parent_args({"--connect-ports", "any"}));
    Proxy child(child_args({addr(parent)}, {"--connect-ports", "any"}));
    Conn c = child.connect();
    // The head and the first tunnel bytes in one write.
    REQUIRE(c.send_all(connect_req(o.authority()) + "EARLY-BYTES|"));
    std::string head;
    CHECK(reply_line(c, &head) == "HTTP/1.1 200 Connection established");
    INFO("reply head: " << head);
    auto early = c.read_exact(12);
    REQUIRE(early);
    CHECK(*early == "EARLY-BYTES|");
    const std::string payload = random_bytes(6000, 31);
    REQUIRE(c.send_all(payload));
    auto back = c.read_exact(payload.size());
    REQUIRE(back);
    CHECK(fnv1a(*back) == fnv1a(payload));
    c.close();
    CHECK(o.connections() == 1);
    CHECK(o.received().size() == 12 + payload.size());
    CHECK(fnv1a(o.received()) == fnv1a("EARLY-BYTES|" + payload));

    auto in_parent = wait_logged(parent, o.authority());
    INFO("parent stderr:\n" << parent.err());
    REQUIRE(in_parent.size() == 1);
    CHECK(in_parent[0][3] == "CONNECT");
    CHECK(in_parent[0][5] == "200");
    CHECK(in_parent[0][9] == o.authority());
    auto in_child = wait_logged(child, o.authority());
    INFO("child stderr:\n" << child.err());
    REQUIRE(in_child.size() == 1);
    CHECK(in_child[0][3] == "CONNECT");
    CHECK(in_child[0][9] == addr(parent));
}

TEST_CASE("integration: parent: a CONNECT the parent refuses gets the parent's 403, then the connection closes",
          "[integration][parent][connect]")
{
    Origin o(echo_origin());
    Proxy parent(parent_args()); // default connect_ports: not this high port
    Proxy child(child_args({addr(parent)}, {"--connect-ports", "any"}));
    Conn c = child.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    auto r = c.read_response(kWait);
    REQUIRE(r);
    INFO("client got: " << r->raw_head << r->body);
    CHECK(r->status == 403);
    CHECK(c.wait_closed(Ms(3000)));
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
    // The 403 is the parent's: the child allows any port.
    CHECK(parent.wait_err([&](const std::string& e) {
        for (const auto& l : log_of(e))
            if (l[3] == "CONNECT" && l[5] == "403")
                return true;
        return false;
    }));
}

TEST_CASE("integration: parent: a CONNECT to a port outside connect_ports gets 403 from the child, and the "
          "parent sees nothing",
          "[integration][parent][connect]")
{
    Origin o(echo_origin());
    Proxy parent(parent_args({"--connect-ports", "any"}));
    Proxy child(child_args({addr(parent)}));  // default connect_ports: 443 only
    Conn c = child.connect();
    auto r = c.roundtrip(connect_req(o.authority()));
    REQUIRE(r);
    CHECK(r->status == 403);
    CHECK(r->body.find("not allowed (--connect-ports)") != std::string::npos);
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
    CHECK(log_of(parent.err()).empty());
}

TEST_CASE("integration: parent: weights 3 and 1 split 8 requests 6 and 2", "[integration][parent]")
{
    Origin o(target_origin());
    Proxy heavy(parent_args());
    Proxy light(parent_args());
    Proxy child(child_args({addr(heavy) + " weight 3", addr(light) + " weight 1"}));
    for (int i = 0; i < 8; ++i) {
        auto r = fetch(child, o.url("/w" + std::to_string(i)));
        INFO("request " << i);
        CHECK(status(r) == 200);
    }
    REQUIRE(o.wait_requests(8));
    auto count = [](Proxy& p) { return log_of(p.err()).size(); };
    bool all = wait_until([&] { return count(heavy) + count(light) >= 8; });
    INFO("weight 3 parent stderr:\n" << heavy.err() << "\nweight 1 parent stderr:\n" << light.err());
    CHECK(all);
    CHECK(count(heavy) == 6);
    CHECK(count(light) == 2);
}

TEST_CASE("integration: parent: a parent that refuses connections fails over to the next, with one warning",
          "[integration][parent]")
{
    Origin o(target_origin());
    Proxy first(parent_args());
    Proxy second(parent_args());
    const std::string first_addr = addr(first);
    Proxy child(child_args({first_addr, addr(second)}));
    REQUIRE(first.stop(SIGKILL, kWait));
    for (int i = 0; i < 10; ++i) {
        auto r = fetch(child, o.url("/f" + std::to_string(i)));
        INFO("request " << i << "\nchild stderr:\n" << child.err());
        CHECK(status(r) == 200);
    }
    REQUIRE(o.wait_requests(10));
    auto in_second = wait_log_size(second, 10);
    INFO("second parent stderr:\n" << second.err());
    CHECK(in_second.size() == 10);
    auto in_child = wait_log_size(child, 10);
    INFO("child stderr:\n" << child.err());
    REQUIRE(in_child.size() == 10);
    for (const auto& l : in_child) {
        CHECK(l[5] == "200");
        CHECK(l[9] == addr(second));
    }
    CHECK(err_has(child, down_warning(first_addr)));
    CHECK(occurrences(child.err(), down_warning(first_addr)) == 1);
    bool warned = false;
    for (const auto& w : warnings(child.err()))
        warned = warned || w.find(down_warning(first_addr)) != std::string::npos;
    CHECK(warned); // at level warning
}

TEST_CASE("integration: parent: every parent down: 502 with never_direct, else straight to the origin",
          "[integration][parent]")
{
    Origin o(target_origin());
    const std::string dead = "127.0.0.1:" + std::to_string(unused_port());
    SECTION("never_direct on")
    {
        Proxy child(child_args({dead}, {"--never-direct", "on"}));
        // The first finds the parent down, the second finds it held down.
        for (const std::string path : {"/nd1", "/nd2"}) {
            auto r = fetch(child, o.url(path));
            REQUIRE(r);
            INFO("client got: " << r->raw_head << r->body);
            CHECK(r->status == 502);
            CHECK(r->body.find("every parent proxy is down") != std::string::npos);
            auto in_child = wait_logged(child, o.url(path));
            INFO("child stderr:\n" << child.err());
            REQUIRE(in_child.size() == 1);
            CHECK(in_child[0][5] == "502");
            CHECK(in_child[0][10] == "parents-down");
        }
        CHECK(err_has(child, down_warning(dead)));
        CHECK(o.connections() == 0);
        CHECK(o.requests().empty());
    }
    SECTION("never_direct off")
    {
        Proxy child(child_args({dead}));
        auto r = fetch(child, o.url("/direct?k=v"));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "/direct?k=v");
        REQUIRE(o.wait_requests(1));
        const HttpRequest q = o.requests().at(0);
        INFO("origin saw:\n" << q.raw_head);
        CHECK(q.target == "/direct?k=v");
        CHECK(q.header("Host") == o.authority());
        CHECK(via_of(q) == std::vector<std::string>{"1.1 child"});
        auto in_child = wait_logged(child, o.url("/direct?k=v"));
        INFO("child stderr:\n" << child.err());
        REQUIRE(in_child.size() == 1);
        CHECK(in_child[0][5] == "200");
        CHECK(in_child[0][9] == o.authority());
        CHECK(err_has(child, down_warning(dead)));
    }
}

TEST_CASE("integration: parent: after parent_down_time a parent that is back gets requests again",
          "[integration][parent]")
{
    Origin o(target_origin());
    auto first = std::make_unique<Proxy>(parent_args());
    Proxy second(parent_args());
    const std::uint16_t first_port = first->port();
    const std::string first_addr = addr(*first);
    Proxy child(child_args({first_addr, addr(second)}, {"--parent-down-time", "1s"}));
    REQUIRE(first->stop(SIGKILL, kWait));
    first.reset();

    int sent = until_down(child, first_addr, o.url("/before"), 4);
    INFO("child stderr:\n" << child.err());
    REQUIRE(sent > 0);
    CHECK(wait_logged(second, o.url("/before"), static_cast<std::size_t>(sent)).size() ==
          static_cast<std::size_t>(sent));

    Proxy again(std::vector<std::string>{"-c", "/dev/null", "-l", "127.0.0.1:" + std::to_string(first_port), "-v",
                                         "--via", "parent"});
    REQUIRE(again.port() == first_port);
    std::this_thread::sleep_for(Ms(1300)); // parent_down_time has passed
    for (int i = 0; i < 4; ++i) {
        auto r = fetch(child, o.url("/after"));
        INFO("request " << i << " after the down time");
        CHECK(status(r) == 200);
    }
    auto in_again = wait_logged(again, o.url("/after"));
    INFO("restarted parent stderr:\n" << again.err() << "\nchild stderr:\n" << child.err());
    CHECK(in_again.size() >= 1);
    CHECK(err_has(child, up_again(first_addr)));
}

TEST_CASE("integration: parent: parent_for and direct_for choose by domain and subdomain, and by address",
          "[integration][parent][dns]")
{
    REQUIRE(std::getenv("CPROXY_TEST_NETNS"));
    Origin o(target_origin());
    ScratchDir dir("cproxy-parent");
    const std::string hosts =
        dir.write("hosts", "127.0.0.1 a.example sub.a.example direct.a.example b.example ba.example\n");
    Proxy parent(parent_args({"--hosts-file", hosts}));
    const std::string port = std::to_string(o.port());
    auto url = [&](const std::string& host, const std::string& path) {
        return "http://" + host + ":" + port + path;
    };
    // Each request's target at the origin is unique, so its Via tells the way it took.
    auto check_way = [&](Proxy& child, const std::string& host, const std::string& path, bool via_parent) {
        auto r = fetch(child, url(host, path));
        INFO(url(host, path) << (via_parent ? " should go through the parent" : " should go direct"));
        REQUIRE(status(r) == 200);
        CHECK(r->body == path);
        const HttpRequest q = request_for(o, path);
        INFO("origin saw:\n" << q.raw_head);
        if (via_parent)
            CHECK(via_of(q) == std::vector<std::string>{"1.1 child", "1.1 parent"});
        else
            CHECK(via_of(q) == std::vector<std::string>{"1.1 child"});
        auto in_child = wait_logged(child, url(host, path));
        INFO("child stderr:\n" << child.err());
        REQUIRE(in_child.size() == 1);
        CHECK(in_child[0][9] == (via_parent ? addr(parent) : o.authority()));
    };
    {
        Proxy child(child_args({addr(parent)}, {"--hosts-file", hosts, "--parent-for", "a.example",
                                                "--direct-for", "direct.a.example 10.9.8.0/24"}));
        check_way(child, "a.example", "/a", true);
        check_way(child, "direct.a.example", "/direct-a", false);
        check_way(child, "b.example", "/b", false);
        check_way(child, "ba.example", "/ba", false);
        check_way(child, "127.0.0.1", "/ip", false);
        check_way(child, "sub.a.example", "/sub-a", true);
    }
    {
        // An address block matches IP-literal hosts, not names that resolve into it.
        Proxy child(child_args({addr(parent)}, {"--hosts-file", hosts, "--parent-for", "127.0.0.0/8"}));
        check_way(child, "a.example", "/name-in-block", false);
        check_way(child, "127.0.0.1", "/literal-in-block", true);
    }
    // The parent's log, complete up to its last request, holds exactly those sent to it.
    wait_logged(parent, url("127.0.0.1", "/literal-in-block"));
    std::vector<std::string> targets;
    for (const auto& l : log_of(parent.err()))
        targets.push_back(l[4]);
    INFO("parent stderr:\n" << parent.err());
    CHECK(targets == std::vector<std::string>{url("a.example", "/a"), url("sub.a.example", "/sub-a"),
                                              url("127.0.0.1", "/literal-in-block")});
}

TEST_CASE("integration: parent: origin-form requests to --backend never go through a parent",
          "[integration][parent]")
{
    Origin o(target_origin());
    Proxy parent(parent_args());
    Proxy child(child_args({addr(parent)}, {"--backend", o.authority()}));
    {
        Conn c = child.connect();
        auto r = c.roundtrip("GET /backend?i=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "/backend?i=1");
    }
    const HttpRequest q = request_for(o, "/backend?i=1");
    INFO("origin saw:\n" << q.raw_head);
    CHECK(via_of(q) == std::vector<std::string>{"1.1 child"});
    // An absolute-form request still goes through the parent: its log then
    // holds that one alone.
    auto r = fetch(child, o.url("/absolute"));
    CHECK(status(r) == 200);
    wait_logged(parent, o.url("/absolute"));
    auto lines = log_of(parent.err());
    INFO("parent stderr:\n" << parent.err());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0][4] == o.url("/absolute"));
}

TEST_CASE("integration: parent: one kept-alive client, requests to two origins, one connection to the parent",
          "[integration][parent]")
{
    Origin a(target_origin());
    Origin b(target_origin());
    Proxy parent(parent_args({"--stats-listen", "127.0.0.1:0"}));
    StatsClient stats(stats_port(parent));
    const Exposition before = stats.metrics();
    Proxy child(child_args({addr(parent)}));
    Conn c = child.connect();
    const std::vector<std::pair<const Origin*, std::string>> requests{{&a, "/ka-1"}, {&b, "/ka-2"}, {&a, "/ka-3"}};
    for (const auto& [origin, path] : requests) {
        auto r = c.roundtrip(get(origin->url(path)));
        INFO(origin->url(path));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == path);
    }
    REQUIRE(a.wait_requests(2));
    REQUIRE(b.wait_requests(1));
    auto lines = wait_log_size(parent, 3);
    INFO("parent stderr:\n" << parent.err());
    CHECK(lines.size() == 3);
    const Exposition after = stats.metrics();
    auto accepted_before = worker0(before, "cproxy_connections_accepted_total");
    auto accepted_after = worker0(after, "cproxy_connections_accepted_total");
    REQUIRE(accepted_before);
    REQUIRE(accepted_after);
    INFO("stats reconnects: " << stats.reconnects);
    CHECK(*accepted_after - *accepted_before - stats.reconnects == 1);
}

TEST_CASE("integration: parent: /metrics count requests through parents and parents marked down",
          "[integration][parent][stats]")
{
    Origin o(target_origin());
    Proxy first(parent_args());
    Proxy second(parent_args());
    const std::string first_addr = addr(first);
    Proxy child(child_args({first_addr, addr(second)}, {"--stats-listen", "127.0.0.1:0"}));
    StatsClient stats(stats_port(child));
    {
        const Exposition e = stats.metrics();
        CHECK(type_of(e, "cproxy_parent_requests_total") == "counter");
        CHECK(type_of(e, "cproxy_parents_marked_down_total") == "counter");
        CHECK(type_of(e, "cproxy_parents_down") == "gauge");
        CHECK(worker0(e, "cproxy_parent_requests_total").value_or(-1) == 0);
        CHECK(worker0(e, "cproxy_parents_marked_down_total").value_or(-1) == 0);
        CHECK(worker0(e, "cproxy_parents_down").value_or(-1) == 0);
    }
    REQUIRE(first.stop(SIGKILL, kWait));
    int sent = until_down(child, first_addr, o.url("/m"), 4);
    INFO("child stderr:\n" << child.err());
    REQUIRE(sent > 0);
    for (; sent < 3; ++sent)
        CHECK(status(fetch(child, o.url("/m"))) == 200);
    auto requests = [](const Exposition& e) { return worker0(e, "cproxy_parent_requests_total").value_or(-1); };
    auto marked = [](const Exposition& e) { return worker0(e, "cproxy_parents_marked_down_total").value_or(-1); };
    auto down = [](const Exposition& e) { return worker0(e, "cproxy_parents_down").value_or(-1); };
    const Exposition e = stats.metrics_when(
        [&](const Exposition& x) { return marked(x) == 1 && down(x) == 1 && requests(x) >= sent; });
    INFO("requests sent: " << sent);
    CHECK(marked(e) == 1);
    CHECK(down(e) == 1);
    CHECK(requests(e) >= sent);
}

TEST_CASE("integration: parent: configuration errors name the place; a full parent setup passes -t",
          "[integration][parent][cli]")
{
    const std::string bin = proxy_bin();
    ScratchDir dir("cproxy-parent-conf");
    struct Bad {
        std::string line, mentions;
    };
    const std::vector<Bad> bad{
        {"parent 127.0.0.1", ""},
        {"parent 127.0.0.1:3128 weight 0", "weight"},
        {"parent 127.0.0.1:3128 weight 1001", "weight"},
        {"parent 127.0.0.1:3128 colour blue", "colour"},
        {"never_direct on", "never_direct"},
        {"parent_for a.example", "parent_for"},
        {"direct_for a.example", "direct_for"},
    };
    for (const auto& b : bad) {
        const std::string conf = dir.write("bad.conf", "listen 127.0.0.1:0\n" + b.line + "\n");
        RunResult r = run_command({bin, "-c", conf, "-t"}, kWait);
        INFO("config line: " << b.line << "\nstderr:\n" << r.err);
        CHECK(r.exited);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(conf + ":2:") != std::string::npos);
        if (!b.mentions.empty())
            CHECK(r.err.find(b.mentions) != std::string::npos);
    }
    {
        // The same checks for options name the option.
        RunResult r = run_command({bin, "-c", "/dev/null", "-l", "127.0.0.1:0", "--never-direct", "on", "-t"}, kWait);
        INFO("stderr:\n" << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--never-direct") != std::string::npos);
        r = run_command({bin, "-c", "/dev/null", "-l", "127.0.0.1:0", "--parent-for", "a.example", "-t"}, kWait);
        INFO("stderr:\n" << r.err);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--parent-for") != std::string::npos);
    }
    {
        const std::string conf = dir.write("good.conf", "listen 127.0.0.1:0\n"
                                                        "parent 127.0.0.1:3128 auth u:p weight 2\n"
                                                        "parent 127.0.0.1:3129 weight 1000\n"
                                                        "parent 127.0.0.1:3130\n"
                                                        "parent_for a.example,10.0.0.0/8\n"
                                                        "direct_for direct.a.example\n"
                                                        "never_direct on\n"
                                                        "parent_down_time 500ms\n");
        RunResult r = run_command({bin, "-c", conf, "-t"}, kWait);
        INFO("stderr:\n" << r.err);
        CHECK(r.exit_code == 0);
        r = run_command({bin, "-c", "/dev/null", "-l", "127.0.0.1:0", "--parent", "127.0.0.1:3128 weight 3",
                         "--parent", "127.0.0.1:3129 auth u:p", "--parent-for", "a.example b.example",
                         "--direct-for", "c.a.example", "--never-direct", "on", "--parent-down-time", "2s", "-t"},
                        kWait);
        INFO("stderr:\n" << r.err);
        CHECK(r.exit_code == 0);
    }
}

TEST_CASE("integration: parent: a parent's interim answer to CONNECT is dropped; its bytes after the 2xx are the tunnel's",
          "[integration][parent]")
{
    Origin fake(fake_parent("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nX-Parent: yes\r\n\r\nFIRST|"));
    Proxy child(child_args({fake.authority()}, {"--connect-ports", "any"}));
    Conn c = child.connect();
    REQUIRE(c.send_all(connect_req("127.0.0.1:" + std::to_string(unused_port()))));
    auto head = c.read_until("\r\n\r\n");
    REQUIRE(head);
    // Exactly the answer a direct tunnel gets: no 100 before it, nothing of the parent's head.
    CHECK(*head == "HTTP/1.1 200 Connection established\r\n\r\n");
    auto first = c.read_exact(6);
    REQUIRE(first);
    CHECK(*first == "FIRST|");
    REQUIRE(c.send_all("echo me"));
    auto echoed = c.read_exact(7);
    REQUIRE(echoed);
    CHECK(*echoed == "echo me");
}

TEST_CASE("integration: parent: a reload that drops the parent a request is connecting to moves the request on",
          "[integration][parent]")
{
    ScratchDir dir("cproxy-parent");
    Origin o(target_origin());
    HangListener hang;  // connections to it never complete
    Proxy second(parent_args());
    const std::string hang_addr = "127.0.0.1:" + std::to_string(hang.port());
    const std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\naccess_log stderr\n"
                                                      "parent " + hang_addr + "\nparent " + addr(second) + "\n");
    Proxy child({"-c", conf});
    // Equal weights: the first request goes to the first parent, and hangs there.
    Conn c = child.connect();
    auto started = Clock::now();
    REQUIRE(c.send_all(get(o.url("/moved"), "Connection: close\r\n")));
    // The child's own connection attempt (the listener's filler socket is in SYN-SENT too).
    REQUIRE(wait_until([&] {
        auto mine = socket_inodes(child.pid());
        for (const auto& socket : tcp_sockets())
            if (socket.remote == hang_addr && socket.state == kTcpSynSent &&
                std::find(mine.begin(), mine.end(), socket.inode) != mine.end())
                return true;
        return false;
    }));
    dir.write("cproxy.conf", "listen 127.0.0.1:0\naccess_log stderr\nparent " + addr(second) + "\n");
    ::kill(child.pid(), SIGHUP);
    auto r = c.read_response();
    INFO("child stderr:\n" << child.err());
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "/moved");
    // Well before timeout_connect (10 s): the reload, not a timeout, moved it.
    CHECK(elapsed_ms(started) < 5000);
    CHECK(wait_logged(second, o.url("/moved")).size() == 1);
    // A parent taken out of the list is not reported down.
    CHECK(child.err().find(down_warning(hang_addr)) == std::string::npos);
}

TEST_CASE("integration: parent: requests queued for a parent that goes down fail over when their turn comes",
          "[integration][parent]")
{
    Origin o(target_origin());
    HangListener hang;
    Proxy second(parent_args());
    const std::string hang_addr = "127.0.0.1:" + std::to_string(hang.port());
    // Weights 10 and 1: both requests choose the hanging parent, where one
    // connection at a time is allowed, so the second waits for the first's.
    Proxy child(child_args({hang_addr + " weight 10", addr(second)},
                           {"--upstream-max-connections", "1", "--timeout-connect", "1s"}));
    Conn first = child.connect();
    REQUIRE(first.send_all(get(o.url("/first"), "Connection: close\r\n")));
    std::this_thread::sleep_for(Ms(300));
    Conn queued = child.connect();
    auto queued_at = Clock::now();
    REQUIRE(queued.send_all(get(o.url("/queued"), "Connection: close\r\n")));
    auto r1 = first.read_response();
    auto r2 = queued.read_response();
    long long waited = elapsed_ms(queued_at);
    INFO("child stderr:\n" << child.err());
    REQUIRE(r1);
    REQUIRE(r2);
    CHECK(r1->status == 200);
    CHECK(r2->status == 200);
    // The first request's connect timed out about 0.7 s after the second
    // was sent; the place it gave up passed to the second, which then must
    // not spend another timeout_connect on the parent just marked down.
    CHECK(waited < 1500);
    CHECK(occurrences(child.err(), down_warning(hang_addr)) == 1);
    CHECK(wait_logged(second, o.url("/queued")).size() == 1);
}

TEST_CASE("integration: parent: a parent switching protocols on a CONNECT is an invalid answer: 502",
          "[integration][parent]")
{
    Origin fake(fake_parent("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n"));
    Proxy child(child_args({fake.authority()}, {"--connect-ports", "any"}));
    Conn c = child.connect();
    REQUIRE(c.send_all(connect_req("127.0.0.1:" + std::to_string(unused_port()))));
    auto r = c.read_response();
    REQUIRE(r);
    CHECK(r->status == 502);
    CHECK(r->body.find("invalid response") != std::string::npos);
    CHECK(c.wait_closed());
}

TEST_CASE("integration: parent: a head written for a parent that does not answer is rewritten for the next hop",
          "[integration][parent]")
{
    HangListener hang;  // connections to it never complete: the head is already written when it fails
    const std::string hang_addr = "127.0.0.1:" + std::to_string(hang.port());

    SECTION("to the next parent, with that parent's own credentials")
    {
        Origin fake(fake_parent());
        Proxy child(child_args({hang_addr + " auth first:one weight 10", fake.authority() + " auth second:two"},
                               {"--timeout-connect", "500ms"}));
        Conn c = child.connect();
        REQUIRE(c.send_all("POST http://127.0.0.1:9/path?q=1 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
        auto r = c.read_response();
        INFO("child stderr:\n" << child.err());
        REQUIRE(r);
        CHECK(r->status == 200);
        REQUIRE(fake.wait_requests(1));
        const HttpRequest q = fake.requests().at(0);
        INFO("parent saw:\n" << q.raw_head);
        CHECK(q.target == "http://127.0.0.1:9/path?q=1");
        CHECK(q.count("Proxy-Authorization") == 1);
        CHECK(q.header("Proxy-Authorization") == basic("second:two"));
        CHECK(q.raw_head.find(base64("first:one")) == std::string::npos);
        CHECK(q.body == "hello");
    }
    SECTION("to the origin, in origin-form and without credentials")
    {
        Origin o(http_origin([](const HttpRequest& q) { return Reply{http_response(200, q.body)}; }));
        Proxy child(child_args({hang_addr + " auth first:one"}, {"--timeout-connect", "500ms"}));
        Conn c = child.connect();
        REQUIRE(c.send_all("POST " + o.url("/path?q=1") + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"));
        auto r = c.read_response();
        INFO("child stderr:\n" << child.err());
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "hello");
        REQUIRE(o.wait_requests(1));
        const HttpRequest q = o.requests().at(0);
        INFO("origin saw:\n" << q.raw_head);
        CHECK(q.target == "/path?q=1");
        CHECK(q.count("Proxy-Authorization") == 0);
        CHECK(q.raw_head.find(base64("first:one")) == std::string::npos);
        CHECK(q.header("Host") == o.authority());
    }
}
