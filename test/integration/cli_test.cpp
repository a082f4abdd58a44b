// Command line, start-up, listen line, signals, access log.
#include "harness.hpp"

#include <cctype>
#include <csignal>

#include <netinet/in.h>
#include <sys/socket.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

RunResult run_proxy(std::vector<std::string> args)
{
    args.insert(args.begin(), proxy_binary());
    if (args[0].find('/') == std::string::npos)
        args[0] = "./" + args[0];
    return run_command(args, kWait);
}

bool all_digits(std::string_view s)
{
    if (s.empty())
        return false;
    for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c)))
            return false;
    return true;
}

// "cproxy 0.1.0 listening on H1:P1, H2:P2" with exactly these hosts (IPv6
// hosts bracketed as given) and numeric ports.
bool listen_line_matches(const std::string& line, const std::vector<std::string>& hosts)
{
    const std::string prefix = "cproxy 0.1.0 listening on ";
    if (line.rfind(prefix, 0) != 0)
        return false;
    std::string_view rest = std::string_view(line).substr(prefix.size());
    for (std::size_t i = 0; i < hosts.size(); ++i) {
        if (i > 0) {
            if (rest.substr(0, 2) != ", ")
                return false;
            rest.remove_prefix(2);
        }
        if (rest.substr(0, hosts[i].size() + 1) != hosts[i] + ":")
            return false;
        rest.remove_prefix(hosts[i].size() + 1);
        std::size_t n = 0;
        while (n < rest.size() && std::isdigit(static_cast<unsigned char>(rest[n])))
            ++n;
        if (n == 0)
            return false;
        rest.remove_prefix(n);
    }
    return rest.empty();
}

// YYYY-MM-DDTHH:MM:SS.mmmZ
bool is_iso8601_ms_utc(std::string_view s)
{
    const std::string_view shape = "dddd-dd-ddTdd:dd:dd.dddZ";
    if (s.size() != shape.size())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (shape[i] == 'd' ? !std::isdigit(static_cast<unsigned char>(s[i])) : s[i] != shape[i])
            return false;
    }
    return true;
}

} // namespace

TEST_CASE("integration: -V and --version print the version and exit 0", "[integration][cli]")
{
    for (const char* opt : {"-V", "--version"}) {
        INFO("option " << opt);
        RunResult r = run_proxy({opt});
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 0);
        CHECK(r.out.find("cproxy 0.1.0") != std::string::npos);
    }
}

TEST_CASE("integration: -h and --help print usage on stdout and exit 0", "[integration][cli]")
{
    for (const char* opt : {"-h", "--help"}) {
        INFO("option " << opt);
        RunResult r = run_proxy({opt});
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 0);
        CHECK(icontains(r.out, "usage"));
        CHECK(r.out.find("--listen") != std::string::npos);
        CHECK(r.out.find("--connect-ports") != std::string::npos);
    }
}

TEST_CASE("integration: bad usage exits 2 and names the problem on stderr", "[integration][cli]")
{
    struct Case {
        std::vector<std::string> args;
        std::vector<std::string> any_of; // stderr must name at least one
    };
    const std::vector<Case> cases{
        {{"-l", "127.0.0.1:0", "--bogus-option"}, {"bogus-option"}},
        {{"-l", "127.0.0.1:0", "--timeout-idle", "5parsecs"}, {"5parsecs", "timeout-idle"}},
        {{"-l", "127.0.0.1:0", "--timeout-header", "-3s"}, {"-3s", "timeout-header"}},
        {{"-l", "127.0.0.1:99999"}, {"99999", "listen", "127.0.0.1:99999"}},
        {{"-l", "not-an-address"}, {"not-an-address", "listen"}},
        {{"-l", "[::1:0"}, {"[::1:0", "listen"}},
        {{"-l", "127.0.0.1:0", "--max-connections", "0"}, {"max-connections"}},
        {{"-l", "127.0.0.1:0", "--max-connections", "many"}, {"max-connections", "many"}},
        {{"-l", "127.0.0.1:0", "--connect-ports", "abc"}, {"connect-ports", "abc"}},
        {{"-l", "127.0.0.1:0", "--connect-ports", "443,70000"}, {"connect-ports", "70000"}},
        {{"-l", "127.0.0.1:0", "--auth", "nocolon"}, {"auth", "nocolon"}},
        {{"-l", "127.0.0.1:0", "--backend", "127.0.0.1"}, {"backend", "127.0.0.1"}},
        {{"-l", "127.0.0.1:0", "--timeout-idle"}, {"timeout-idle"}},
    };
    for (const auto& c : cases) {
        std::string joined;
        for (const auto& a : c.args)
            joined += a + " ";
        INFO("args: " << joined);
        RunResult r = run_proxy(c.args);
        INFO("stdout: " << r.out);
        INFO("stderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 2);
        bool named = false;
        for (const auto& s : c.any_of)
            named = named || r.err.find(s) != std::string::npos;
        CHECK(named);
        CHECK(r.out.find("listening on") == std::string::npos);
    }
}

TEST_CASE("integration: an address already in use exits 1 with a message", "[integration][cli]")
{
    // Hold a listener on a port, then ask cproxy for the same port.
    std::uint16_t held = 0;
    Fd holder = listen_loopback(4, held);
    std::string port = std::to_string(held);

    RunResult r = run_proxy({"-l", "127.0.0.1:" + port});
    INFO("stderr: " << r.err);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.exited);
    CHECK(r.exit_code == 1);
    CHECK_FALSE(r.err.empty());
    CHECK((r.err.find(port) != std::string::npos || icontains(r.err, "in use")));
}

TEST_CASE("integration: the listen line reports the kernel-chosen port", "[integration][cli]")
{
    Proxy p(proxy_args());
    INFO("line: " << p.listen_line());
    CHECK(listen_line_matches(p.listen_line(), {"127.0.0.1"}));
    REQUIRE(p.listeners().size() == 1);
    CHECK(p.listeners()[0].first == "127.0.0.1");
    CHECK(p.port() != 0);
    // Exactly one line on stdout, flushed.
    CHECK(p.out() == p.listen_line() + "\n");
    // The reported port really is the proxy.
    Origin o(static_origin("hi"));
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "hi");
}

TEST_CASE("integration: several -l listeners are all reported and all serve", "[integration][cli]")
{
    Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:0", "-l", "127.0.0.2:0"});
    INFO("line: " << p.listen_line());
    CHECK(listen_line_matches(p.listen_line(), {"127.0.0.1", "127.0.0.2"}));
    REQUIRE(p.listeners().size() == 2);
    Origin o(static_origin("multi"));
    for (std::size_t i = 0; i < 2; ++i) {
        INFO("listener " << p.listeners()[i].first << ":" << p.listeners()[i].second);
        Conn c = connect_to(p.port(i), p.listeners()[i].first);
        auto r = c.roundtrip("GET " + o.url("/m") + " HTTP/1.1\r\nHost: x\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "multi");
    }
    CHECK(o.requests().size() == 2);
}

TEST_CASE("integration: SIGTERM and SIGINT make the proxy exit 0 promptly", "[integration][cli]")
{
    for (int sig : {SIGTERM, SIGINT}) {
        INFO("signal " << sig);
        Proxy p(proxy_args());
        // With a client connected and idle, shutdown must still be prompt.
        Conn idle = p.connect();
        auto start = Clock::now();
        auto code = p.stop(sig, Ms(3000));
        INFO("stderr: " << p.err());
        REQUIRE(code.has_value());
        CHECK(*code == 0);
        CHECK(elapsed_ms(start) < 3000);
    }
}

TEST_CASE("integration: the start-up log names the connection and pipe capacity", "[integration][cli]")
{
    Proxy p(proxy_args({"--max-connections", "100"}));
    CHECK(p.wait_err([](const std::string& err) {
        return err.find("info: up to 100 client connections and ") != std::string::npos &&
               err.find(" splice pipes in 1 worker (open-file limit ") != std::string::npos;
    }));
}

TEST_CASE("integration: -v writes one access-log line per request", "[integration][cli]")
{
    Origin o(http_origin([](const HttpRequest& r) {
        return Reply{http_response(r.target == "/missing" ? 404 : 200, "0123456789")};
    }));
    Proxy p(proxy_args({"-v"}));
    Conn c = p.connect();
    std::string req1 = "GET " + o.url("/a") + " HTTP/1.1\r\nHost: x\r\n\r\n";
    std::string req2 = "POST " + o.url("/missing") +
                       " HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello";
    auto r1 = c.roundtrip(req1);
    REQUIRE(r1);
    REQUIRE(r1->status == 200);
    auto r2 = c.roundtrip(req2);
    REQUIRE(r2);
    REQUIRE(r2->status == 404);
    c.close();

    REQUIRE(p.wait_err([](const std::string& e) { return access_log_lines(e).size() >= 2; }));
    auto lines = access_log_lines(p.err());
    INFO("stderr: " << p.err());
    REQUIRE(lines.size() == 2);
    for (const auto& f : lines) {
        // TIME CLIENT USER METHOD TARGET STATUS BYTES_IN BYTES_OUT DURATION_MS UPSTREAM END
        CHECK(is_iso8601_ms_utc(f[0]));
        CHECK(f[1].rfind("127.0.0.1", 0) == 0);
        CHECK(f[2] == "-");
        CHECK(all_digits(f[6]));
        CHECK(all_digits(f[7]));
        CHECK(all_digits(f[8]));
        CHECK(f[9].find(std::to_string(o.port())) != std::string::npos);
    }
    CHECK(lines[0][3] == "GET");
    CHECK(lines[0][4].find("/a") != std::string::npos);
    CHECK(lines[0][5] == "200");
    CHECK(lines[1][3] == "POST");
    CHECK(lines[1][4].find("/missing") != std::string::npos);
    CHECK(lines[1][5] == "404");
    // The POST sent a body; at least the body counts as bytes in for it, and
    // each response is at least its 10-byte body.
    CHECK(std::stoll(lines[1][6]) >= 5);
    CHECK(std::stoll(lines[0][7]) >= 10);
    CHECK(std::stoll(lines[1][7]) >= 10);
}

TEST_CASE("integration: -v logs the authenticated user", "[integration][cli]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"-v", "--auth", "alice:secret"}));
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/u") + " HTTP/1.1\r\nHost: x\r\nProxy-Authorization: Basic " +
                         base64("alice:secret") + "\r\n\r\n");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    REQUIRE(p.wait_err([](const std::string& e) { return !access_log_lines(e).empty(); }));
    auto lines = access_log_lines(p.err());
    INFO("stderr: " << p.err());
    REQUIRE(lines.size() == 1);
    CHECK(lines[0][2] == "alice");
    CHECK(lines[0][5] == "200");
}
