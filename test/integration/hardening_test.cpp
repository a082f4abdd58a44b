// Hostile and broken clients: after any mix of good, malformed and aborted
// sessions, every descriptor, buffer, pipe and slot is back where it was, and
// the proxy still serves. The resource figures come from the proxy itself
// (its SIGUSR2 "resources:" line) and from /proc/PID/fd.
#include "harness.hpp"

#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <random>

#include <sys/socket.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

struct Resources {
    unsigned sessions = 0, buffers = 0, large_buffers = 0, pipes_in_use = 0, pipes_made = 0, idle_upstreams = 0;
    int fds = 0;
};

// Asks the proxy for its resources line (SIGUSR2) and counts its descriptors.
Resources resources(Proxy& p)
{
    std::size_t seen = 0;
    for (std::size_t at = p.err().find("info: resources: "); at != std::string::npos;
         at = p.err().find("info: resources: ", at + 1))
        ++seen;
    ::kill(p.pid(), SIGUSR2);
    std::string line;
    REQUIRE(p.wait_err([&](const std::string& err) {
        std::size_t count = 0, at = err.find("info: resources: ");
        for (; at != std::string::npos; at = err.find("info: resources: ", at + 1)) {
            if (++count == seen + 1) {
                std::size_t end = err.find('\n', at);
                if (end == std::string::npos)
                    return false;
                line = err.substr(at, end - at);
                return true;
            }
        }
        return false;
    }));
    Resources r;
    unsigned session_slots = 0, buffer_slots = 0, large_slots = 0;
    int fields = std::sscanf(line.c_str(),
                             "info: resources: worker 0, %u/%u sessions, %u/%u buffers, %u/%u large buffers, "
                             "%u pipes in use of %u made, %u idle upstream",
                             &r.sessions, &session_slots, &r.buffers, &buffer_slots, &r.large_buffers,
                             &large_slots, &r.pipes_in_use, &r.pipes_made, &r.idle_upstreams);
    INFO(line);
    REQUIRE(fields == 9);
    r.fds = p.open_fds();
    return r;
}

// Descriptors beyond the baseline must be pooled ones: two per pipe made,
// one per idle upstream connection.
void check_nothing_leaked(const Resources& before, const Resources& after)
{
    CHECK(after.sessions == 0);
    CHECK(after.buffers == 0);
    CHECK(after.large_buffers == 0);
    CHECK(after.pipes_in_use == 0);
    int pooled = 2 * static_cast<int>(after.pipes_made - before.pipes_made) +
                 static_cast<int>(after.idle_upstreams) - static_cast<int>(before.idle_upstreams);
    CHECK(after.fds - before.fds == pooled);
}

// Waits until the proxy holds no session (the clients are gone).
bool sessions_drained(Proxy& p)
{
    return wait_until([&] { return resources(p).sessions == 0; }, Ms(5000));
}

std::string get(const Origin& o, const std::string& path = "/")
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n";
}

} // namespace

TEST_CASE("hardening: a mix of good, bad and aborted sessions leaves nothing behind", "[integration][hardening]")
{
    std::string big(512 * 1024, 'x');
    Origin web(http_origin([&](const HttpRequest& r) {
        return Reply{http_response(200, r.target == "/big" ? big : std::string("small"))};
    }));
    Origin echo(echo_origin());
    Proxy p(proxy_args({"--connect-ports", "any", "--timeout-header", "1s"}));
    // Warm the pools once so the baseline has its steady descriptors.
    {
        Conn c = p.connect();
        REQUIRE(c.roundtrip(get(web))->status == 200);
    }
    REQUIRE(sessions_drained(p));
    Resources before = resources(p);

    for (int round = 0; round < 5; ++round) {
        // Good requests, kept alive and then closed.
        {
            Conn c = p.connect();
            for (int i = 0; i < 3; ++i)
                REQUIRE(c.roundtrip(get(web))->status == 200);
        }
        // Heads that need a large buffer: served, refused, abandoned.
        {
            Conn c = p.connect();
            std::string big_field = "X-Big: " + std::string(40 * 1024, 'b') + "\r\n";
            auto served = c.roundtrip("GET " + web.url() + " HTTP/1.1\r\nHost: x\r\n" + big_field + "\r\n");
            REQUIRE(served);
            CHECK(served->status == 200);
            std::string huge_field = "X-Big: " + std::string(70 * 1024, 'b') + "\r\n";
            auto refused = c.roundtrip("GET " + web.url() + " HTTP/1.1\r\nHost: x\r\n" + huge_field + "\r\n");
            REQUIRE(refused);
            CHECK(refused->status == 431);
        }
        {
            Conn c = p.connect();
            c.send_all("GET " + web.url() + " HTTP/1.1\r\nX-Big: " + std::string(40 * 1024, 'c'));
        }
        // Malformed heads.
        for (const char* bad : {"GET http://x/ HTTP/1.1\r\nHost : x\r\n\r\n", "G@T / HTTP/1.1\r\n\r\n",
                                "GET / HTTP/1.1\nHost: x\n\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
            Conn c = p.connect();
            c.send_all(bad);
            c.wait_closed(Ms(2000));
        }
        // A client that leaves mid-response, one that leaves mid-head, one
        // that leaves mid-body.
        {
            Conn c = p.connect();
            c.send_all(get(web, "/big"));
            c.fill(Ms(500));
        }
        {
            Conn c = p.connect();
            c.send_all("GET " + web.url() + " HTTP/1.1\r\nHo");
        }
        {
            Conn c = p.connect();
            c.send_all("POST " + web.url() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\nabc");
        }
        // A tunnel with data both ways, closed by the client mid-stream.
        {
            Conn c = p.connect();
            c.send_all("CONNECT " + echo.authority() + " HTTP/1.1\r\nHost: " + echo.authority() + "\r\n\r\n");
            REQUIRE(c.read_until("\r\n\r\n"));
            c.send_all(std::string(200 * 1024, 'y'));
            c.fill(Ms(200));
        }
        // A CONNECT to a port nothing listens on.
        {
            Conn c = p.connect();
            std::string closed = "127.0.0.1:" + std::to_string(unused_port());
            auto r = c.roundtrip("CONNECT " + closed + " HTTP/1.1\r\nHost: " + closed + "\r\n\r\n");
            REQUIRE(r);
            CHECK(r->status == 502);
        }
    }
    REQUIRE(sessions_drained(p));
    check_nothing_leaked(before, resources(p));
    Conn c = p.connect();
    CHECK(c.roundtrip(get(web))->status == 200);
}

TEST_CASE("hardening: random and mutated requests neither crash nor leak, and good ones still work",
          "[integration][hardening]")
{
    // Mutated targets name any address: only inside test/run's network
    // namespace, where nothing but loopback exists, may they be tried.
    REQUIRE(std::getenv("CPROXY_TEST_NETNS"));
    Origin web(static_origin("ok"));
    Proxy p(proxy_args({"--timeout-header", "300ms", "--timeout-idle", "300ms", "--connect-ports", "any"}));
    {
        Conn warm = p.connect();
        REQUIRE(warm.roundtrip(get(web))->status == 200);
    }
    REQUIRE(sessions_drained(p));
    Resources before = resources(p);

    const std::vector<std::string> templates = {
        get(web),
        "POST " + web.url() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello",
        "POST " + web.url() + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
        "CONNECT " + web.authority() + " HTTP/1.1\r\nHost: " + web.authority() + "\r\n\r\n",
        "GET " + web.url() + " HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        "OPTIONS " + web.url() + " HTTP/1.1\r\nMax-Forwards: 0\r\n\r\n",
    };
    std::mt19937_64 random(20261124);
    auto deadline = Clock::now() + Ms(15000);
    int sent = 0;
    for (; sent < 1500 && Clock::now() < deadline; ++sent) {
        std::string input = templates[random() % templates.size()];
        int mutations = 1 + static_cast<int>(random() % 4);
        for (int m = 0; m < mutations && !input.empty(); ++m) {
            std::size_t at = random() % input.size();
            switch (random() % 5) {
            case 0: input[at] = static_cast<char>(random()); break;                      // replace a byte
            case 1: input.insert(at, 1, static_cast<char>(random())); break;             // insert one
            case 2: input.erase(at, 1 + random() % 8); break;                            // delete some
            case 3: input.insert(at, input.substr(at, random() % 64)); break;            // repeat some
            case 4: input.resize(at); break;                                             // truncate
            }
        }
        if (random() % 10 == 0) // now and then pure noise
            for (char& ch : input)
                ch = static_cast<char>(random());
        Conn c = p.connect();
        c.send_all(input, Ms(500));
        if (random() % 2 == 0)
            c.read_until_close(Ms(50)); // some read a little, others just vanish
    }
    INFO(sent << " mutated requests sent");
    CHECK(sent >= 200);
    REQUIRE(sessions_drained(p));
    check_nothing_leaked(before, resources(p));
    Conn c = p.connect();
    auto r = c.roundtrip(get(web));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "ok");
}
