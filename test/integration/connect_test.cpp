// CONNECT tunnelling: establishment, early data, bulk transfer both ways,
// half-close, the port allow-list, curl's proxytunnel.
#include "harness.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

#include <dirent.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::string connect_req(const std::string& authority, const std::string& extra = "")
{
    return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n" + extra + "\r\n";
}

// Reads the proxy's reply head to a CONNECT; returns its status line.
std::string read_connect_reply(Conn& c, std::string* head_out = nullptr)
{
    auto head = c.read_until("\r\n\r\n");
    if (!head)
        return "<no reply>";
    if (head_out)
        *head_out = *head;
    return head->substr(0, head->find("\r\n"));
}

// TCP_NOTSENT_LOWAT of each of cproxy's sockets whose peer is at 127.0.0.1
// `port`, read from a copy of the descriptor (pidfd_getfd, which needs the
// root the test namespace runs as). 0 is the kernel's "not set".
std::vector<int> notsent_lowats_towards(pid_t pid, std::uint16_t port)
{
    std::vector<int> out;
    int process = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
    if (process < 0)
        return out;
    std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    if (DIR* d = ::opendir(dir.c_str())) {
        while (dirent* e = ::readdir(d)) {
            int target = std::atoi(e->d_name);
            if (e->d_name[0] == '.')
                continue;
            int copy = static_cast<int>(::syscall(SYS_pidfd_getfd, process, target, 0));
            if (copy < 0)
                continue;
            sockaddr_in peer{};
            socklen_t length = sizeof peer;
            int lowat = 0;
            socklen_t lowat_length = sizeof lowat;
            if (::getpeername(copy, reinterpret_cast<sockaddr*>(&peer), &length) == 0 &&
                peer.sin_family == AF_INET && ntohs(peer.sin_port) == port &&
                ::getsockopt(copy, IPPROTO_TCP, TCP_NOTSENT_LOWAT, &lowat, &lowat_length) == 0)
                out.push_back(lowat);
            ::close(copy);
        }
        ::closedir(d);
    }
    ::close(process);
    return out;
}

// The local port of a connected socket.
std::uint16_t local_port(int fd)
{
    sockaddr_in local{};
    socklen_t length = sizeof local;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &length);
    return ntohs(local.sin_port);
}

// Sends `out` while receiving until `expect` bytes sit in c.buffer(), both
// at once so neither side's socket buffers can deadlock. Bounded.
bool pump(Conn& c, std::string_view out, std::size_t expect, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    std::size_t sent = 0;
    while (sent < out.size() || c.buffer().size() < expect) {
        if (Clock::now() >= deadline)
            return false;
        pollfd p{c.fd(), static_cast<short>(POLLIN | (sent < out.size() ? POLLOUT : 0)), 0};
        ::poll(&p, 1, 50);
        if (sent < out.size()) {
            std::size_t chunk = std::min<std::size_t>(out.size() - sent, 256 * 1024);
            ssize_t n = ::send(c.fd(), out.data() + sent, chunk, MSG_NOSIGNAL);
            if (n > 0)
                sent += static_cast<std::size_t>(n);
            else if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                return false;
        }
        for (int i = 0; i < 64 && c.buffer().size() < expect; ++i) {
            long r = c.fill(Ms(0));
            if (r == 0 || r == -1)
                return c.buffer().size() >= expect && sent == out.size();
            if (r == -2)
                break;
        }
    }
    return true;
}

} // namespace

TEST_CASE("integration: CONNECT establishes a tunnel to an echo origin", "[integration][connect]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    std::string head;
    CHECK(read_connect_reply(c, &head) == "HTTP/1.1 200 Connection established");
    INFO("reply head: " << head);
    CHECK(c.buffer().empty()); // nothing after the reply head until we send
    for (int i = 0; i < 5; ++i) {
        std::string msg = "ping-" + std::to_string(i) + "\n";
        REQUIRE(c.send_all(msg));
        auto echoed = c.read_exact(msg.size());
        REQUIRE(echoed);
        CHECK(*echoed == msg);
    }
    // Raw bytes, not HTTP: something that would be a request is echoed as is.
    std::string fake = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
    REQUIRE(c.send_all(fake));
    auto back = c.read_exact(fake.size());
    REQUIRE(back);
    CHECK(*back == fake);
    CHECK(o.connections() == 1);
    CHECK(o.received() == "ping-0\nping-1\nping-2\nping-3\nping-4\n" + fake);
}

TEST_CASE("integration: bytes sent with the CONNECT head are delivered first",
          "[integration][connect]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    // One write: the head and the first tunnel bytes together.
    REQUIRE(c.send_all(connect_req(o.authority()) + "EARLY-BYTES|"));
    CHECK(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    auto early = c.read_exact(12);
    REQUIRE(early);
    CHECK(*early == "EARLY-BYTES|");
    REQUIRE(c.send_all("LATER"));
    auto later = c.read_exact(5);
    REQUIRE(later);
    CHECK(*later == "LATER");
    CHECK(o.received() == "EARLY-BYTES|LATER");
}

TEST_CASE("integration: a CONNECT tunnel carries several MiB both ways intact",
          "[integration][connect]")
{
    const std::string up = random_bytes(8 * 1024 * 1024, 11);   // client -> origin
    const std::string down = random_bytes(6 * 1024 * 1024, 12); // origin -> client
    Origin o([&](Origin& org, Conn& c) {
        // Send our stream while reading the client's, then report.
        bool ok = pump(c, down, up.size(), Ms(20000));
        org.note(ok ? "done" : "failed");
        c.wait_closed(Ms(5000));
    });
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    bool ok = pump(c, up, down.size(), Ms(20000));
    CHECK(ok);
    REQUIRE(o.wait_notes(1, Ms(20000)));
    CHECK(o.notes().at(0) == "done");
    const std::string got_up = o.received();
    CHECK(got_up.size() == up.size());
    CHECK(fnv1a(got_up) == fnv1a(up));
    CHECK(c.buffer().size() == down.size());
    CHECK(fnv1a(c.buffer()) == fnv1a(down));
    c.close();
}

TEST_CASE("integration: CONNECT half-close: client EOF reaches the origin, which can still reply",
          "[integration][connect]")
{
    Origin o([](Origin& org, Conn& c) {
        auto in = c.read_until_close(kWait);
        org.note(in.closed ? "eof:" + in.data : "no-eof:" + in.data);
        if (in.closed)
            c.send_all("reply-after-eof");
        // returning closes the connection
    });
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    REQUIRE(c.send_all("request-data"));
    c.shutdown_write();
    REQUIRE(o.wait_notes(1));
    CHECK(o.notes().at(0) == "eof:request-data");
    auto rest = c.read_until_close(kWait);
    CHECK(rest.closed);
    CHECK_FALSE(rest.reset);
    CHECK(rest.data == "reply-after-eof");
}

TEST_CASE("integration: CONNECT half-close: origin EOF reaches the client, which can still send",
          "[integration][connect]")
{
    Origin o([](Origin& org, Conn& c) {
        c.send_all("server-first");
        c.shutdown_write();
        auto in = c.read_until_close(kWait);
        org.note(in.closed ? "eof:" + in.data : "no-eof:" + in.data);
    });
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    auto first = c.read_until_close(kWait);
    CHECK(first.closed); // EOF of the read side only
    CHECK_FALSE(first.reset);
    CHECK(first.data == "server-first");
    REQUIRE(c.send_all("client-late"));
    c.shutdown_write();
    REQUIRE(o.wait_notes(1));
    CHECK(o.notes().at(0) == "eof:client-late");
}

TEST_CASE("integration: CONNECT: bytes sent with the FIN reach the other side, then its end (a short read "
          "stops reading only before the FIN)",
          "[integration][reads][connect]")
{
    Origin o([](Origin&, Conn& c) {
        c.send_all(std::string(20 * 1024 + 3, 'd'));
        c.shutdown_write();
        c.wait_closed(Ms(5000));
    });
    // The copy path reads with recv; the splice path moves what is there.
    auto splice = GENERATE("on", "off");
    INFO("--splice " << splice);
    Proxy p(proxy_args({"--connect-ports", "any", "--timeout-tunnel-idle", "30s", "--splice", splice}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    auto got = c.read_until_close(Ms(5000));
    CHECK(got.closed);
    CHECK_FALSE(got.reset);
    CHECK(got.data == std::string(20 * 1024 + 3, 'd'));
}

TEST_CASE("integration: CONNECT: a tunnel's sockets keep at most 16 KiB unsent (TCP_NOTSENT_LOWAT), "
          "a plain request's keep the kernel's default",
          "[integration][connect]")
{
    Origin o([](Origin&, Conn& c) {
        if (c.read_request())
            c.send_all("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        c.wait_closed(Ms(5000));
    });
    Proxy p(proxy_args({"--connect-ports", "any"}));

    Conn plain = p.connect();
    auto r = plain.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK(notsent_lowats_towards(p.pid(), local_port(plain.fd())) == std::vector<int>{0});
    CHECK(notsent_lowats_towards(p.pid(), o.port()) == std::vector<int>{0});
    plain.close();
    REQUIRE(o.wait_connections(1));

    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req(o.authority())));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    REQUIRE(o.wait_connections(2));
    CHECK(notsent_lowats_towards(p.pid(), local_port(c.fd())) == std::vector<int>{16 * 1024});
    // The plain request's upstream connection may still sit in the idle pool.
    auto towards_origin = notsent_lowats_towards(p.pid(), o.port());
    CHECK(std::count(towards_origin.begin(), towards_origin.end(), 16 * 1024) == 1);
}

TEST_CASE("integration: CONNECT is only allowed to port 443 by default", "[integration][connect]")
{
    Origin o(echo_origin());
    Proxy p(proxy_args());
    {
        Conn c = p.connect();
        REQUIRE(c.send_all(connect_req(o.authority()) + "leak?"));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 403);
    }
    CHECK_FALSE(o.wait_connections(1, Ms(200)));
    CHECK(o.received().empty());
    {
        // Port 443 passes the allow-list (the connect itself then fails or works).
        Conn c = p.connect();
        REQUIRE(c.send_all(connect_req("127.0.0.1:443")));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        INFO("status " << r->status);
        CHECK(r->status != 403);
        CHECK((r->status == 502 || r->status == 200));
    }
}

TEST_CASE("integration: --connect-ports with a list allows exactly the listed ports",
          "[integration][connect]")
{
    Origin allowed(echo_origin());
    Origin other(echo_origin());
    Proxy p(proxy_args({"--connect-ports", "443," + std::to_string(allowed.port())}));
    {
        Conn c = p.connect();
        REQUIRE(c.send_all(connect_req(allowed.authority())));
        REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
        REQUIRE(c.send_all("listed"));
        auto e = c.read_exact(6);
        REQUIRE(e);
        CHECK(*e == "listed");
    }
    {
        Conn c = p.connect();
        REQUIRE(c.send_all(connect_req(other.authority())));
        auto r = c.read_response(kWait, true);
        REQUIRE(r);
        CHECK(r->status == 403);
    }
    CHECK_FALSE(other.wait_connections(1, Ms(200)));
}

TEST_CASE("integration: CONNECT to a name from /etc/hosts", "[integration][connect][dns]")
{
    REQUIRE(std::getenv("CPROXY_TEST_NETNS"));
    Origin o(echo_origin());
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    REQUIRE(c.send_all(connect_req("origin.test:" + std::to_string(o.port()))));
    REQUIRE(read_connect_reply(c) == "HTTP/1.1 200 Connection established");
    REQUIRE(c.send_all("named"));
    auto e = c.read_exact(5);
    REQUIRE(e);
    CHECK(*e == "named");
}

TEST_CASE("integration: curl -p tunnels plain HTTP through CONNECT", "[integration][connect][curl]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, "tunnelled " + r.target)};
    }));
    Proxy p(proxy_args({"--connect-ports", "any"}));
    auto r = curl({"-p", "-x", p.url(), o.url("/through")});
    INFO("curl stderr: " << r.err);
    CHECK(r.exited);
    CHECK(r.exit_code == 0);
    CHECK(r.out == "tunnelled /through");
    REQUIRE(o.requests().size() == 1);
    auto q = o.requests().at(0);
    // Inside a tunnel the proxy does not touch HTTP: the origin gets curl's
    // origin-form request without the proxy's Via.
    CHECK(q.target == "/through");
    CHECK(q.count("Via") == 0);

    // Without --connect-ports any, the same curl run fails with the 403.
    Proxy strict(proxy_args());
    auto d = curl({"-p", "-x", strict.url(), o.url("/denied"), "-w", "%{http_connect}"});
    INFO("curl stderr: " << d.err);
    CHECK(d.exit_code != 0);
    CHECK(d.out.find("403") != std::string::npos);
    CHECK(o.requests().size() == 1);
}
