// upstream_max_connections (--upstream-max-connections): at most N
// connections to one upstream address:port per worker, counting those being
// opened, those in use by a request or a CONNECT tunnel and the idle parked
// ones. A request that needs one more waits, first come first served, up to
// timeout_connect (then 503, end reason upstream-busy); a connection a request
// leaves reusable goes straight to the first waiter, and one that closes lets
// the first waiter open a new one. /metrics and /stats show how many wait.
//
// The origin here answers "answer to TARGET"; targets starting with /hold are
// held until the test opens the gate, so a test decides when a connection
// comes free. Origin::peak_connections() says how many connections the proxy
// held open at once.
#include "harness.hpp"
#include "stats_client.hpp"

#include <algorithm>
#include <csignal>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

const std::string kLimit = "--upstream-max-connections";

// Releases the origin's held responses once opened; an origin that is being
// destroyed stops waiting too. Declare it before the Origin that uses it.
class Gate {
public:
    void open() { open_ = true; }
    // True once open; false when the origin stops or after `timeout`.
    bool wait(const Origin& o, Ms timeout = Ms(8000)) const
    {
        return wait_until([&] { return open_.load() || o.stopping(); }, timeout) && open_.load();
    }

private:
    std::atomic<bool> open_{false};
};

std::string answer(const std::string& target) { return "answer to " + target; }

// Keep-alive origin: records each request, holds /hold* until `gate` opens,
// waits `delay`, then answers 200 "answer to TARGET". With `close` every
// response says "Connection: close" and the origin shuts its side down, then
// keeps the socket until the proxy closes it (so peak_connections() counts
// the connection for exactly as long as the proxy holds it).
Origin::Handler limit_origin(const Gate& gate, Ms delay = Ms(0), bool close = false)
{
    return [&gate, delay, close](Origin& o, Conn& c) {
        for (int i = 0; i < 1000 && !o.stopping(); ++i) {
            auto req = c.read_request(kWait);
            if (!req)
                return;
            std::string target = req->target;
            o.record(std::move(*req));
            if (target.rfind("/hold", 0) == 0 && !gate.wait(o))
                return;
            if (delay.count() > 0)
                std::this_thread::sleep_for(delay);
            if (!c.send_all(http_response(200, answer(target), close ? "Connection: close\r\n" : "")))
                return;
            if (close) {
                c.shutdown_write();
                c.wait_closed(kWait);
                return;
            }
        }
    };
}

// Answers the first request on each connection (without saying it will
// close) and closes the connection, unanswered, when a second one arrives on
// it: a server whose keep-alive timeout fires as the proxy reuses the
// connection.
Origin::Handler one_answer_per_connection_origin()
{
    return [](Origin& o, Conn& c) {
        auto first = c.read_request(kWait);
        if (!first)
            return;
        std::string target = first->target;
        o.record(std::move(*first));
        if (!c.send_all(http_response(200, answer(target))))
            return;
        auto second = c.read_request(kWait);
        if (second)
            o.note("dropped " + second->target);
    };
}

std::string get(const Origin& o, const std::string& path, const std::string& extra = "")
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n" + extra + "\r\n";
}

std::string connect_request(const Origin& o)
{
    return "CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n";
}

// A new client connection that has sent `request`.
Conn client_sends(const Proxy& p, const std::string& request)
{
    Conn c = p.connect();
    REQUIRE(c.send_all(request));
    return c;
}

// Time left until `deadline` (for several reads sharing one bound).
Ms left(Clock::time_point deadline)
{
    return std::max(Ms(0), std::chrono::duration_cast<Ms>(deadline - Clock::now()));
}

std::vector<std::string> targets(const Origin& o)
{
    std::vector<std::string> out;
    for (const auto& r : o.requests())
        out.push_back(r.target);
    return out;
}

std::string joined(const std::vector<std::string>& v)
{
    std::string s;
    for (const auto& x : v)
        s += (s.empty() ? "" : " ") + x;
    return s;
}

std::vector<std::string> stats_args(std::vector<std::string> extra)
{
    extra.insert(extra.begin(), {"--stats-listen", "127.0.0.1:0"});
    return proxy_args(extra);
}

// The value of the one sample `name`{worker="0"} (REQUIREd to be there).
double value_of(const Exposition& e, const std::string& name)
{
    const Sample* found = nullptr;
    int matches = 0;
    for (const auto& sample : e.samples) {
        auto w = sample.labels.find("worker");
        if (sample.name == name && w != sample.labels.end() && w->second == "0") {
            found = &sample;
            ++matches;
        }
    }
    INFO("samples " << name << "{worker=\"0\"}");
    REQUIRE(matches == 1);
    return found->value;
}

double waiting(const Exposition& e) { return value_of(e, "cproxy_upstream_waiting"); }

// Scrapes /metrics until cproxy_upstream_waiting{worker="0"} is n (bounded).
bool waiting_is(StatsClient& s, double n, Ms timeout = kWait)
{
    Exposition e = s.metrics_when([&](const Exposition& x) { return waiting(x) == n; }, timeout);
    INFO("cproxy_upstream_waiting is " << waiting(e) << ", expected " << n);
    return waiting(e) == n;
}

// upstream_waiting of the one worker object of /stats, -1 if absent.
double json_waiting(StatsClient& s)
{
    Json j = s.stats();
    const Json* workers = j.get("workers");
    REQUIRE(workers);
    REQUIRE(workers->kind == Json::Kind::Array);
    REQUIRE(workers->items.size() == 1);
    return count_of(workers->items[0].get("upstream_waiting"));
}

// The access-log line whose TARGET contains `needle` (waited for); empty
// when none came.
std::vector<std::string> log_line(Proxy& p, const std::string& needle)
{
    std::vector<std::string> found;
    p.wait_err([&](const std::string& e) {
        for (const auto& f : access_log_lines(e))
            if (f[4].find(needle) != std::string::npos) {
                found = f;
                return true;
            }
        return false;
    });
    return found;
}

std::size_t occurrences(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

RunResult run_proxy(std::vector<std::string> args)
{
    args.insert(args.begin(), proxy_binary());
    if (args[0].find('/') == std::string::npos)
        args[0] = "./" + args[0];
    return run_command(args, kWait);
}

// Expects a 503 for `request` after roughly `timeout_ms` of waiting.
void expect_busy(Conn& c, const std::string& request, long long timeout_ms)
{
    auto start = Clock::now();
    auto r = c.roundtrip(request, Ms(5000));
    auto ms = elapsed_ms(start);
    INFO("answered after " << ms << " ms");
    REQUIRE(r);
    INFO("response head:\n" << r->raw_head << "body: " << r->body);
    CHECK(r->status == 503);
    CHECK(r->body.find("upstream_max_connections") != std::string::npos);
    CHECK(ms >= timeout_ms * 4 / 5);
    CHECK(ms <= timeout_ms + 2000);
}

} // namespace

TEST_CASE("integration: upstream limit: the test origin counts open connections exactly (no proxy)",
          "[integration][upstream-limit]")
{
    // The checks below rely on peak_connections(): a client that closes each
    // connection before opening the next is seen with one at a time, even
    // back to back; two open together are seen as two.
    Gate gate;
    Origin o(limit_origin(gate, Ms(0), true));
    for (int i = 0; i < 20; ++i) {
        Conn c = connect_to(o.port());
        auto r = c.roundtrip("GET /s" + std::to_string(i) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
        REQUIRE(r);
        CHECK(r->body == answer("/s" + std::to_string(i)));
    }
    CHECK(o.connections() == 20);
    CHECK(o.peak_connections() == 1);
    Conn a = connect_to(o.port());
    Conn b = connect_to(o.port());
    REQUIRE(o.wait_connections(22));
    CHECK(o.open_connections() == 2);
    CHECK(o.peak_connections() == 2);
    a.close();
    CHECK(wait_until([&] { return o.open_connections() == 1; }));
}

TEST_CASE("integration: upstream limit: with 1 allowed, concurrent requests take turns on one kept-alive connection",
          "[integration][upstream-limit]")
{
    const Ms delay(150);
    Gate gate;
    Origin o(limit_origin(gate, delay));
    Proxy p(proxy_args({kLimit, "1"}));
    auto start = Clock::now();
    std::vector<Conn> clients;
    for (int i = 0; i < 5; ++i)
        clients.push_back(client_sends(p, get(o, "/c" + std::to_string(i))));
    auto deadline = Clock::now() + Ms(8000);
    for (int i = 0; i < 5; ++i) {
        INFO("client " << i);
        auto r = clients[i].read_response(left(deadline));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == answer("/c" + std::to_string(i)));
    }
    auto ms = elapsed_ms(start);
    INFO("all answered after " << ms << " ms; origin saw " << joined(targets(o)));
    CHECK(o.requests().size() == 5);
    // One connection, handed from each finished request to the next waiter.
    CHECK(o.peak_connections() == 1);
    CHECK(o.connections() == 1);
    // The five responses were served one after another.
    CHECK(ms >= 5 * delay.count() - 50);
}

TEST_CASE("integration: upstream limit: waiting requests get the connection in the order they came",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    // Each waiter is queued (the gauge says so) before the next one comes.
    std::vector<Conn> waiters;
    std::vector<std::string> expected{"/hold"};
    for (int i = 1; i <= 4; ++i) {
        INFO("waiter " << i);
        expected.push_back("/w" + std::to_string(i));
        waiters.push_back(client_sends(p, get(o, expected.back())));
        REQUIRE(waiting_is(s, i));
    }
    CHECK(o.requests().size() == 1);
    gate.open();
    auto deadline = Clock::now() + Ms(6000);
    auto r = first.read_response(left(deadline));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == answer("/hold"));
    for (std::size_t i = 0; i < waiters.size(); ++i) {
        INFO("waiter " << i + 1);
        auto w = waiters[i].read_response(left(deadline));
        REQUIRE(w);
        CHECK(w->status == 200);
        CHECK(w->body == answer(expected[i + 1]));
    }
    CHECK(targets(o) == expected);
    CHECK(o.connections() == 1);
    CHECK(waiting_is(s, 0));
}

// While a request waits, bytes behind its head (a body still arriving, the
// next pipelined request) stay where they are and are read in their turn.
TEST_CASE("integration: upstream limit: a waiting POST's body and a pipelined request behind a waiting GET arrive intact",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    const std::string body = random_bytes(100000, 7);
    const std::string url = "http://" + o.authority() + "/post";
    Conn poster = client_sends(p, "POST " + url + " HTTP/1.1\r\nHost: " + o.authority() +
                                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                                      body.substr(0, 1000));
    REQUIRE(waiting_is(s, 1));
    REQUIRE(poster.send_all(body.substr(1000)));  // the rest arrives while it waits
    // Longer than a head buffer: part of /p2 stays in the socket while /p1 waits.
    Conn pipeliner = client_sends(p, get(o, "/p1") + get(o, "/p2", "X-Pad: " + std::string(1500, 'x') + "\r\n"));
    REQUIRE(waiting_is(s, 2));
    gate.open();
    auto deadline = Clock::now() + Ms(6000);
    auto r = first.read_response(left(deadline));
    REQUIRE(r);
    CHECK(r->status == 200);
    auto posted = poster.read_response(left(deadline));
    REQUIRE(posted);
    CHECK(posted->status == 200);
    CHECK(posted->body == answer("/post"));
    for (std::string target : {"/p1", "/p2"}) {
        INFO("pipelined " << target);
        auto piped = pipeliner.read_response(left(deadline));
        REQUIRE(piped);
        CHECK(piped->status == 200);
        CHECK(piped->body == answer(target));
    }
    auto requests = o.requests();
    REQUIRE(requests.size() == 4);
    CHECK(requests[1].target == "/post");
    CHECK(requests[1].body == body);
    CHECK(o.peak_connections() == 1);
}

TEST_CASE("integration: upstream limit: a request that waits longer than timeout_connect gets 503 upstream-busy",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(proxy_args({"-v", kLimit, "1", "--timeout-connect", "500ms"}));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));

    Conn second = p.connect();
    expect_busy(second, get(o, "/second"), 500);
    auto line = log_line(p, "/second");
    INFO("stderr:\n" << p.err());
    REQUIRE(line.size() == 11);
    CHECK(line[5] == "503");
    CHECK(line[10] == "upstream-busy");
    CHECK(targets(o) == std::vector<std::string>{"/hold"});

    // The held request was not disturbed.
    gate.open();
    auto r = first.read_response(Ms(5000));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == answer("/hold"));
    // And the connection it leaves serves the next request.
    Conn third = p.connect();
    auto r3 = third.roundtrip(get(o, "/third"));
    REQUIRE(r3);
    CHECK(r3->status == 200);
    CHECK(o.connections() == 1);
}

TEST_CASE("integration: upstream limit: a waiting client that leaves gives up its place, and nothing leaks",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1", "--upstream-idle-timeout", "300ms"}));
    StatsClient s(stats_port(p));
    {
        // A first request, so that whatever the proxy keeps once made is in
        // the baseline; then its parked connection expires.
        Conn warm = p.connect();
        auto r = warm.roundtrip(get(o, "/warm", "Connection: close\r\n"));
        REQUIRE(r);
        REQUIRE(r->status == 200);
        CHECK(warm.wait_closed(Ms(3000)));
        REQUIRE(wait_until([&] { return o.open_connections() == 0; }, Ms(3000)));
    }
    REQUIRE(waiting_is(s, 0));
    const int baseline = p.open_fds();
    {
        Conn first = client_sends(p, get(o, "/hold"));
        REQUIRE(o.wait_requests(1));
        Conn second = client_sends(p, get(o, "/second"));
        REQUIRE(waiting_is(s, 1));
        Conn third = client_sends(p, get(o, "/third"));
        REQUIRE(waiting_is(s, 2));
        second.close();
        CHECK(waiting_is(s, 1)); // the departed client left the queue

        gate.open();
        auto deadline = Clock::now() + Ms(6000);
        auto r1 = first.read_response(left(deadline));
        REQUIRE(r1);
        CHECK(r1->body == answer("/hold"));
        auto r3 = third.read_response(left(deadline));
        REQUIRE(r3);
        CHECK(r3->status == 200);
        CHECK(r3->body == answer("/third"));
    }
    CHECK(targets(o) == std::vector<std::string>{"/warm", "/hold", "/third"});
    CHECK(o.connections() == 2);
    CHECK(waiting_is(s, 0));
    // The clients are gone and the parked connection expires after 300 ms:
    // the proxy is back to its descriptors from before.
    bool settled = wait_until([&] { return p.open_fds() == baseline; }, Ms(4000));
    INFO("descriptors: " << baseline << " before, " << p.open_fds() << " now");
    CHECK(settled);
    CHECK(value_of(s.metrics(), "cproxy_connections_open") == 1); // the stats client
}

TEST_CASE("integration: upstream limit: a client that leaves while its request holds the connection frees it",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    Conn second = client_sends(p, get(o, "/second"));
    REQUIRE(waiting_is(s, 1));
    first.close();
    // The response has nowhere to go: the proxy learns the client is gone by
    // now at the latest, and the connection passes on (handed over, or
    // closed and opened anew by the waiter).
    gate.open();
    auto r = second.read_response(Ms(5000));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == answer("/second"));
    CHECK(o.peak_connections() == 1);
    CHECK(waiting_is(s, 0));
}

// A client that leaves while its request waits for the response lets go of
// the connection at once, so the next waiter need not wait for the origin.
TEST_CASE("integration: upstream limit: a client that leaves before its response frees the connection at once",
          "[integration][upstream-limit]")
{
    Gate gate; // never opened: /hold is never answered
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    Conn second = client_sends(p, get(o, "/second"));
    REQUIRE(waiting_is(s, 1));
    first.close();
    auto r = second.read_response(Ms(3000));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == answer("/second"));
    CHECK(o.connections() == 2);
    CHECK(o.peak_connections() == 1);
}

// The same once the request waited for its place with its body still
// arriving: bytes seen while waiting do not stop the watch afterwards.
TEST_CASE("integration: upstream limit: a POST that waited, then leaves before its response, frees the connection",
          "[integration][upstream-limit]")
{
    Gate gate; // never opened: /hold is never answered
    Origin o(limit_origin(gate, Ms(300)));
    Proxy p(stats_args({kLimit, "1", "--timeout-connect", "4s"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/first"));  // answered after 300 ms
    REQUIRE(o.wait_requests(1));
    const std::string body(5000, 'b');
    Conn poster = client_sends(p, "POST " + o.url("/hold-post") + " HTTP/1.1\r\nHost: " + o.authority() +
                                      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" +
                                      body.substr(0, 100));
    REQUIRE(waiting_is(s, 1));
    REQUIRE(poster.send_all(body.substr(100)));  // arrives while it waits
    auto r = first.read_response(Ms(3000));
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(o.wait_requests(2));  // the POST went out and is held
    Conn third = client_sends(p, get(o, "/third"));
    REQUIRE(waiting_is(s, 1));
    auto start = Clock::now();
    poster.close();
    auto t = third.read_response(Ms(3500));
    REQUIRE(t);
    CHECK(t->status == 200);
    CHECK(t->body == answer("/third"));
    CHECK(elapsed_ms(start) < 2000);
    CHECK(o.peak_connections() == 1);
}

TEST_CASE("integration: upstream limit: an origin that closes after each response gets one connection at a time",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate, Ms(100), true));
    Proxy p(proxy_args({kLimit, "1"}));
    std::vector<Conn> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(client_sends(p, get(o, "/c" + std::to_string(i))));
    auto deadline = Clock::now() + Ms(8000);
    for (int i = 0; i < 3; ++i) {
        INFO("client " << i);
        auto r = clients[i].read_response(left(deadline));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == answer("/c" + std::to_string(i)));
    }
    CHECK(o.connections() == 3);
    CHECK(o.peak_connections() == 1);
}

TEST_CASE("integration: upstream limit: a handed-over connection the origin closes unanswered is retried for a GET",
          "[integration][upstream-limit]")
{
    // Every hand-over meets a closed connection: each GET must still be
    // answered, on a new connection, within the limit.
    Origin o(one_answer_per_connection_origin());
    Proxy p(proxy_args({kLimit, "1"}));
    std::vector<Conn> clients;
    for (int i = 0; i < 3; ++i)
        clients.push_back(client_sends(p, get(o, "/c" + std::to_string(i))));
    auto deadline = Clock::now() + Ms(8000);
    for (int i = 0; i < 3; ++i) {
        INFO("client " << i);
        auto r = clients[i].read_response(left(deadline));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == answer("/c" + std::to_string(i)));
    }
    INFO("origin answered " << joined(targets(o)) << "; dropped " << joined(o.notes()));
    CHECK(o.requests().size() == 3);
    CHECK(o.connections() == 3);
}

TEST_CASE("integration: upstream limit: an open CONNECT tunnel holds its connection; its end frees it",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1", "--connect-ports", "any", "--timeout-connect", "1s"}));
    StatsClient s(stats_port(p));
    Conn tunnel = client_sends(p, connect_request(o));
    auto established = tunnel.read_response(kWait, true);
    REQUIRE(established);
    REQUIRE(established->status == 200);
    auto inner = tunnel.roundtrip("GET /inside HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
    REQUIRE(inner);
    CHECK(inner->body == answer("/inside"));

    // While the tunnel is open a GET to the same address waits, then gives up.
    {
        Conn c = p.connect();
        expect_busy(c, get(o, "/a"), 1000);
    }
    // A GET waiting when the tunnel ends gets a new connection.
    Conn b = client_sends(p, get(o, "/b"));
    REQUIRE(waiting_is(s, 1));
    tunnel.close();
    auto r = b.read_response(Ms(5000));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == answer("/b"));
    CHECK(targets(o) == std::vector<std::string>{"/inside", "/b"});
    CHECK(o.connections() == 2);
    CHECK(o.peak_connections() == 1);
}

TEST_CASE("integration: upstream limit: a CONNECT waits for a connection too, and gets one of its own",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1", "--connect-ports", "any"}));
    StatsClient s(stats_port(p));
    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    Conn tunnel = client_sends(p, connect_request(o));
    REQUIRE(waiting_is(s, 1));
    CHECK(o.connections() == 1);

    gate.open();
    auto start = Clock::now();
    auto r = first.read_response(Ms(5000));
    REQUIRE(r);
    CHECK(r->body == answer("/hold"));
    // The kept-alive connection the GET left is no use to a tunnel: it is
    // closed for the tunnel's own, at once (not after it idles out).
    auto established = tunnel.read_response(Ms(5000), true);
    auto ms = elapsed_ms(start);
    REQUIRE(established);
    CHECK(established->status == 200);
    INFO("tunnel established " << ms << " ms after the GET's response");
    CHECK(ms < 1000);
    auto inner = tunnel.roundtrip("GET /inside HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
    REQUIRE(inner);
    CHECK(inner->body == answer("/inside"));
    CHECK(o.connections() == 2);
    CHECK(o.peak_connections() == 1);
    CHECK(waiting_is(s, 0));
}

TEST_CASE("integration: upstream limit: the limit is per address and port",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin a(limit_origin(gate));
    Origin other_port(limit_origin(gate));
    Origin other_address(limit_origin(gate), "127.0.0.2", a.port());
    Proxy p(stats_args({kLimit, "1", "--timeout-connect", "3s"}));
    StatsClient s(stats_port(p));
    Conn held = client_sends(p, get(a, "/hold"));
    REQUIRE(a.wait_requests(1));
    for (const Origin* o : {&other_port, &other_address}) {
        INFO("origin " << o->authority());
        Conn c = p.connect();
        auto start = Clock::now();
        auto r = c.roundtrip(get(*o, "/free"), Ms(3000));
        auto ms = elapsed_ms(start);
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == answer("/free"));
        CHECK(ms < 1000);
    }
    CHECK(waiting_is(s, 0));
    gate.open();
    auto r = held.read_response(Ms(5000));
    REQUIRE(r);
    CHECK(r->body == answer("/hold"));
}

TEST_CASE("integration: upstream limit: cproxy_upstream_waiting and upstream_waiting count the waiting requests",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "1"}));
    StatsClient s(stats_port(p));
    Exposition fresh = s.metrics();
    CHECK(fresh.types["cproxy_upstream_waiting"] == "gauge");
    CHECK(fresh.help.count("cproxy_upstream_waiting") == 1);
    std::size_t samples = 0;
    for (const auto& sample : fresh.samples)
        if (sample.name == "cproxy_upstream_waiting") {
            ++samples;
            CHECK(sample.labels == Labels{{"worker", "0"}});
        }
    CHECK(samples == 1);
    CHECK(waiting(fresh) == 0);
    CHECK(json_waiting(s) == 0);

    Conn first = client_sends(p, get(o, "/hold"));
    REQUIRE(o.wait_requests(1));
    CHECK(waiting(s.metrics()) == 0); // the request that has the connection is not waiting
    Conn second = client_sends(p, get(o, "/second"));
    Conn third = client_sends(p, get(o, "/third"));
    REQUIRE(waiting_is(s, 2));
    CHECK(json_waiting(s) == 2);

    gate.open();
    auto deadline = Clock::now() + Ms(6000);
    for (Conn* c : {&first, &second, &third}) {
        auto r = c->read_response(left(deadline));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    CHECK(waiting_is(s, 0));
    CHECK(json_waiting(s) == 0);
}

TEST_CASE("integration: upstream limit: a reload that changes upstream_max_connections warns and keeps the old value",
          "[integration][upstream-limit]")
{
    const std::string warning = "upstream_max_connections changed but take effect only at a restart";
    ScratchDir dir("cproxy-limit");
    SECTION("1 stays 1")
    {
        Gate gate;
        Origin o(limit_origin(gate));
        const std::string base = "listen 127.0.0.1:0\ntimeout_connect 500ms\n";
        std::string conf = dir.write("cproxy.conf", base + "upstream_max_connections 1\n");
        Proxy p({"-c", conf});
        // Another setting changes, this one does not: no warning.
        dir.write("cproxy.conf", base + "upstream_max_connections 1\ntimeout_idle 30s\n");
        ::kill(p.pid(), SIGHUP);
        REQUIRE(p.wait_err([](const std::string& e) { return occurrences(e, "configuration reloaded") == 1; }));
        CHECK(p.err().find(warning) == std::string::npos);

        dir.write("cproxy.conf", base + "upstream_max_connections 5\n");
        ::kill(p.pid(), SIGHUP);
        REQUIRE(p.wait_err([](const std::string& e) { return occurrences(e, "configuration reloaded") == 2; }));
        INFO("stderr:\n" << p.err());
        CHECK(p.err().find(warning) != std::string::npos);
        // Still one connection: a second request waits and gives up.
        Conn first = client_sends(p, get(o, "/hold"));
        REQUIRE(o.wait_requests(1));
        Conn second = p.connect();
        expect_busy(second, get(o, "/second"), 500);
        gate.open();
        auto r = first.read_response(Ms(5000));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    SECTION("no limit stays no limit")
    {
        Gate gate;
        Origin o(limit_origin(gate));
        std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n");
        Proxy p({"-c", conf});
        dir.write("cproxy.conf", "listen 127.0.0.1:0\nupstream_max_connections 1\n");
        ::kill(p.pid(), SIGHUP);
        REQUIRE(p.wait_err([](const std::string& e) { return occurrences(e, "configuration reloaded") == 1; }));
        INFO("stderr:\n" << p.err());
        CHECK(p.err().find(warning) != std::string::npos);
        Conn first = client_sends(p, get(o, "/hold1"));
        Conn second = client_sends(p, get(o, "/hold2"));
        CHECK(o.wait_requests(2)); // both reach the origin at once
        gate.open();
        for (Conn* c : {&first, &second}) {
            auto r = c->read_response(Ms(5000));
            REQUIRE(r);
            CHECK(r->status == 200);
        }
    }
}

TEST_CASE("integration: upstream limit: bad values are start-up errors (exit 2) naming them",
          "[integration][upstream-limit]")
{
    for (const char* bad : {"-1", "lots", "1000001", "1.5", ""}) {
        INFO("--upstream-max-connections '" << bad << "'");
        RunResult r = run_proxy({"-c", "/dev/null", "-l", "127.0.0.1:0", kLimit, bad});
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(kLimit) != std::string::npos);
        CHECK(r.err.find("'" + std::string(bad) + "'") != std::string::npos);
        CHECK(r.out.find("listening on") == std::string::npos);
    }
    {
        RunResult r = run_proxy({"-c", "/dev/null", "-l", "127.0.0.1:0", kLimit});
        INFO("stderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find(kLimit) != std::string::npos);
    }
    ScratchDir dir("cproxy-limit");
    for (const char* bad : {"-1", "lots", "1000001"}) {
        std::string conf = dir.write("cproxy.conf", std::string("listen 127.0.0.1:0\nupstream_max_connections ") + bad + "\n");
        for (bool test_only : {false, true}) {
            std::vector<std::string> args{"-c", conf};
            if (test_only)
                args.insert(args.begin(), "-t");
            RunResult r = run_proxy(args);
            INFO((test_only ? "-t, " : "") << "upstream_max_connections " << bad << "\nstdout: " << r.out
                                           << "\nstderr: " << r.err);
            REQUIRE_FALSE(r.timed_out);
            CHECK(r.exit_code == 2);
            CHECK(r.err.find(conf + ":2: upstream_max_connections") != std::string::npos);
            CHECK(r.err.find("'" + std::string(bad) + "'") != std::string::npos);
            CHECK(r.out.find("listening on") == std::string::npos);
        }
    }
    // The ends of the range are fine.
    for (const char* good : {"0", "1", "1000000"}) {
        INFO("--upstream-max-connections " << good);
        RunResult r = run_proxy({"-t", "-c", "/dev/null", "-l", "127.0.0.1:0", kLimit, good});
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        CHECK(r.exit_code == 0);
    }
}

TEST_CASE("integration: upstream limit: 0, the default, limits nothing", "[integration][upstream-limit]")
{
    for (bool explicit_zero : {false, true}) {
        INFO((explicit_zero ? "--upstream-max-connections 0" : "no option"));
        Gate gate;
        Origin o(limit_origin(gate));
        Proxy p(explicit_zero ? proxy_args({kLimit, "0"}) : proxy_args());
        std::vector<Conn> clients;
        for (int i = 0; i < 5; ++i)
            clients.push_back(client_sends(p, get(o, "/hold" + std::to_string(i))));
        CHECK(o.wait_requests(5)); // all five held at the origin at once
        CHECK(o.connections() == 5);
        CHECK(o.peak_connections() == 5);
        gate.open();
        auto deadline = Clock::now() + Ms(6000);
        for (int i = 0; i < 5; ++i) {
            INFO("client " << i);
            auto r = clients[i].read_response(left(deadline));
            REQUIRE(r);
            CHECK(r->status == 200);
        }
    }
}

TEST_CASE("integration: upstream limit: with 2 allowed, two requests run at once and the rest wait",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(stats_args({kLimit, "2"}));
    StatsClient s(stats_port(p));
    std::vector<Conn> clients;
    for (int i = 0; i < 4; ++i)
        clients.push_back(client_sends(p, get(o, "/hold" + std::to_string(i))));
    REQUIRE(o.wait_requests(2));
    REQUIRE(waiting_is(s, 2));
    CHECK(o.requests().size() == 2);
    CHECK(o.connections() == 2);
    gate.open();
    auto deadline = Clock::now() + Ms(6000);
    for (int i = 0; i < 4; ++i) {
        INFO("client " << i);
        auto r = clients[i].read_response(left(deadline));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == answer("/hold" + std::to_string(i)));
    }
    CHECK(o.connections() == 2);
    CHECK(o.peak_connections() == 2);
    CHECK(waiting_is(s, 0));
}

TEST_CASE("integration: upstream limit: an idle parked connection is used without waiting",
          "[integration][upstream-limit]")
{
    Gate gate;
    Origin o(limit_origin(gate));
    Proxy p(proxy_args({"-v", kLimit, "1", "--timeout-connect", "300ms"}));
    for (int i = 0; i < 3; ++i) {
        INFO("request " << i);
        // Each client leaves after its response; the connection is parked
        // (it holds the one slot) and the next client's request takes it.
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/n" + std::to_string(i), "Connection: close\r\n"));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(c.wait_closed(Ms(3000)));
    }
    CHECK(o.connections() == 1);
    REQUIRE(p.wait_err([](const std::string& e) { return access_log_lines(e).size() >= 3; }));
    CHECK(p.err().find("upstream-busy") == std::string::npos);
}
