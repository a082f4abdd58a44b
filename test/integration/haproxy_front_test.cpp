// etc/haproxy-front.cfg, as shipped (only its addresses changed to this
// test's loopback ports), with Debian's HAProxy in front of two cproxy
// instances listening with proxy_protocol: HTTP and CONNECT traffic from
// several client addresses goes through; one instance is killed mid-run and
// the traffic moves to the other; both access logs name the real clients,
// never HAProxy.
#include "harness.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <cstring>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

std::uint16_t free_port()
{
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0)
        throw std::runtime_error("cannot find a free port");
    return ntohs(a.sin_port);
}

// A client connection to 127.0.0.1:port from `source` (127.0.0.2, ...), as
// if from another machine.
std::optional<Conn> connect_from(const std::string& source, std::uint16_t port)
{
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    sockaddr_in from{};
    from.sin_family = AF_INET;
    ::inet_pton(AF_INET, source.c_str(), &from.sin_addr);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) != 0)
        return std::nullopt;
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0 && errno != EINPROGRESS)
        return std::nullopt;
    pollfd p{fd.get(), POLLOUT, 0};
    if (::poll(&p, 1, 3000) != 1)
        return std::nullopt;
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error != 0)
        return std::nullopt;
    return Conn(std::move(fd));
}

std::string replaced(std::string text, const std::string& from, const std::string& to)
{
    auto at = text.find(from);
    if (at == std::string::npos)
        throw std::runtime_error("etc/haproxy-front.cfg no longer has " + from);
    return text.replace(at, from.size(), to);
}

std::size_t count(const std::string& text, const std::string& needle)
{
    std::size_t n = 0;
    for (auto at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1))
        ++n;
    return n;
}

}  // namespace

TEST_CASE("integration: haproxy: the shipped front config balances two cproxy instances, survives one dying, "
          "and the real client addresses reach the access logs",
          "[integration][haproxy][proxy-protocol]")
{
    REQUIRE(::access("/usr/sbin/haproxy", X_OK) == 0);  // .ci/run installs Debian's haproxy
    Origin o(http_origin([](const HttpRequest& r) { return Reply{http_response(200, "page " + r.target)}; }));
    auto instance = [&] {
        return std::make_unique<Proxy>(proxy_args({"-l", "127.0.0.1:0 proxy_protocol", "--proxy-trusted",
                                                   "127.0.0.1", "--allow", "127.0.0.0/8", "--connect-ports", "any",
                                                   "-v"}));
    };
    // proxy_args adds a plain listen address first: the PROXY one is the second.
    auto first = instance();
    auto second = instance();
    const std::uint16_t front = free_port();
    ScratchDir dir("cproxy-haproxy");
    std::string config = read_file("etc/haproxy-front.cfg");
    config = replaced(config, "0.0.0.0:8888", "127.0.0.1:" + std::to_string(front));
    config = replaced(config, "server cproxy1 10.0.0.11:8888", "server cproxy1 127.0.0.1:" + std::to_string(first->port(1)));
    config = replaced(config, "server cproxy2 10.0.0.12:8888", "server cproxy2 127.0.0.1:" + std::to_string(second->port(1)));
    std::string path = dir.write("haproxy.cfg", config);
    Child haproxy({"/usr/sbin/haproxy", "-db", "-f", path}, false);
    bool up = wait_until([&] { return connect_from("127.0.0.9", front).has_value(); }, Ms(5000));
    INFO("haproxy stdout: " << haproxy.out() << "\nstderr: " << haproxy.err());
    REQUIRE(up);

    const std::string clients[] = {"127.0.0.2", "127.0.0.3", "127.0.0.4"};
    int served = 0, attempts = 0;
    auto one_request = [&](const std::string& client, int i) {
        ++attempts;
        auto c = connect_from(client, front);
        if (!c)
            return;
        std::string target = "/r" + std::to_string(i);
        auto r = c->roundtrip("GET " + o.url(target) + " HTTP/1.1\r\nHost: " + o.authority() +
                                  "\r\nConnection: close\r\n\r\n",
                              Ms(8000));
        if (r && r->status == 200 && r->body == "page " + target)
            ++served;
    };
    auto one_tunnel = [&](const std::string& client) {
        ++attempts;
        auto c = connect_from(client, front);
        if (!c)
            return;
        auto established = c->roundtrip("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: " + o.authority() +
                                            "\r\n\r\n",
                                        Ms(8000), true);
        if (!established || established->status != 200)
            return;
        auto inner = c->roundtrip("GET /inside HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n", Ms(8000));
        if (inner && inner->status == 200 && inner->body == "page /inside")
            ++served;
    };

    for (int i = 0; i < 12; ++i) {
        one_request(clients[i % 3], i);
        if (i % 4 == 0)
            one_tunnel(clients[(i + 1) % 3]);
    }
    CHECK(served == attempts);
    // leastconn over sequential connections still uses both instances (the
    // access logs are written about once a second).
    auto logged = [](Proxy& p) { return count(p.err(), " - GET ") + count(p.err(), " - CONNECT "); };
    CHECK(wait_until([&] { return logged(*first) + logged(*second) == static_cast<std::size_t>(attempts); },
                     Ms(3000)));
    INFO("requests logged: first " << logged(*first) << ", second " << logged(*second));
    CHECK(logged(*first) > 0);
    CHECK(logged(*second) > 0);

    // The first instance dies; every request after that is served by the second.
    first->stop(SIGKILL, Ms(3000));
    std::size_t second_before = count(second->err(), " - GET ");
    int served_before = served, attempts_before = attempts;
    for (int i = 100; i < 112; ++i)
        one_request(clients[i % 3], i);
    one_tunnel("127.0.0.2");
    CHECK(served - served_before == attempts - attempts_before);
    CHECK(second->wait_err([&](const std::string& err) { return count(err, " - GET ") >= second_before + 12; }));

    // Both logs name the clients, never HAProxy's own address.
    std::string logs = first->err() + second->err();
    for (const std::string& client : clients) {
        INFO("client " << client);
        CHECK(logs.find(" " + client + ":") != std::string::npos);
    }
    CHECK(logs.find("Z 127.0.0.1:") == std::string::npos);  // an access line's client field
    CHECK(logs.find("PROXY protocol header; closed") == std::string::npos);  // the health checks were fine
    haproxy.kill_now(SIGTERM);
    haproxy.wait_exit(Ms(3000));
}
