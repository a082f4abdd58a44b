// Loops: a request that would come back into this proxy gets 508, however the
// address is written (IPv4-mapped IPv6 included) and whichever of the host's
// addresses a wildcard listener is reached on; a request whose Via already
// names this instance gets 508 too. The default Via name is the instance's
// own, so two cproxy instances on one host chain without a false loop.
#include "harness.hpp"

#include <cctype>
#include <csignal>
#include <cstdlib>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

// An address of the test's own network namespace that is not loopback, for
// as long as the object lives (TEST-NET-2, never routed anywhere).
class ExtraAddress {
public:
    ExtraAddress()
    {
        REQUIRE(std::getenv("CPROXY_TEST_NETNS"));  // only in test/run's private namespace
        RunResult r = run_command({"ip", "addr", "add", std::string(address) + "/32", "dev", "lo"});
        INFO(r.err);
        REQUIRE((r.exited && (r.exit_code == 0 || r.err.find("exists") != std::string::npos)));
    }
    ~ExtraAddress() { run_command({"ip", "addr", "del", std::string(address) + "/32", "dev", "lo"}); }
    static constexpr const char* address = "198.51.100.7";
};

// "cproxy-" and 8 lower-case hex digits: the default Via name.
bool is_pseudonym(const std::string& name)
{
    if (name.size() != 15 || name.rfind("cproxy-", 0) != 0) return false;
    for (std::size_t i = 7; i < name.size(); ++i)
        if (!std::isxdigit(static_cast<unsigned char>(name[i])) || std::isupper(static_cast<unsigned char>(name[i])))
            return false;
    return true;
}

std::string via_name_of(const HttpResponse& r)
{
    auto via = r.header("Via");
    REQUIRE(via);
    auto space = via->find(' ');
    REQUIRE(space != std::string::npos);
    return via->substr(space + 1);
}

} // namespace

TEST_CASE("integration: loops: CONNECT and absolute-form requests to cproxy's own port written as an "
          "IPv4-mapped IPv6 address get 508",
          "[integration][loops]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--connect-ports", "any"}));
    std::string mapped = "[::ffff:127.0.0.1]:" + std::to_string(p.port());
    {
        Conn c = p.connect();
        auto r = c.roundtrip("CONNECT " + mapped + " HTTP/1.1\r\nHost: " + mapped + "\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 508);
    }
    {
        Conn c = p.connect();
        auto r = c.roundtrip("GET http://" + mapped + "/ HTTP/1.1\r\nHost: h\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 508);
    }
    // The same spelling of another address is an ordinary destination.
    Conn c = p.connect();
    auto r = c.roundtrip("GET http://[::ffff:127.0.0.1]:" + std::to_string(o.port()) + "/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("integration: loops: under a wildcard listener the host's other addresses are its own, as read at "
          "start-up and on reload",
          "[integration][loops]")
{
    const std::vector<std::string> wildcard = {"-c", "/dev/null", "-l", "0.0.0.0:0", "--allow", "127.0.0.0/8",
                                               "--connect-ports", "any"};
    auto connect_status = [](Proxy& p) {
        std::string self = std::string(ExtraAddress::address) + ":" + std::to_string(p.port());
        Conn c = p.connect();
        auto r = c.roundtrip("CONNECT " + self + " HTTP/1.1\r\nHost: " + self + "\r\n\r\n");
        REQUIRE(r);
        return r->status;
    };
    Proxy late(wildcard);  // started before the address exists
    ExtraAddress extra;
    Proxy early(wildcard);
    CHECK(connect_status(early) == 508);
    std::string self = std::string(ExtraAddress::address) + ":" + std::to_string(early.port());
    Conn d = early.connect();
    auto get = d.roundtrip("GET http://" + self + "/ HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(get);
    CHECK(get->status == 508);

    // Unknown to `late` until a reload reads the addresses again: until then
    // the CONNECT is a tunnel into itself.
    CHECK(connect_status(late) == 200);
    ::kill(late.pid(), SIGHUP);
    REQUIRE(late.wait_err([](const std::string& err) { return err.find("configuration reloaded") != std::string::npos; }));
    CHECK(connect_status(late) == 508);
}

TEST_CASE("integration: loops: a request whose Via already names this instance gets 508",
          "[integration][loops]")
{
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--connect-ports", "any"}));
    Conn c = p.connect();
    auto first = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(first);
    std::string name = via_name_of(*first);
    CHECK(is_pseudonym(name));
    auto looped = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\nVia: 1.1 other, 1.1 " + name +
                              "\r\n\r\n");
    REQUIRE(looped);
    CHECK(looped->status == 508);
    Conn d = p.connect();
    auto tunnel = d.roundtrip("CONNECT " + o.authority() + " HTTP/1.1\r\nHost: h\r\nVia: 1.1 " + name + "\r\n\r\n");
    REQUIRE(tunnel);
    CHECK(tunnel->status == 508);
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests().size() == 1);
}

TEST_CASE("integration: loops: two instances on one host have their own Via names and chain without a false "
          "loop; the same --via name on both is a loop, and --via off turns the check off",
          "[integration][loops]")
{
    Origin o(static_origin("ok"));
    auto through = [&](std::vector<std::string> parent_extra, std::vector<std::string> child_extra) {
        Proxy parent(proxy_args(parent_extra));
        child_extra.insert(child_extra.end(), {"--parent", "127.0.0.1:" + std::to_string(parent.port())});
        Proxy child(proxy_args(child_extra));
        Conn c = child.connect();
        auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
        REQUIRE(r);
        return *r;
    };
    HttpResponse chained = through({}, {});
    CHECK(chained.status == 200);
    std::vector<std::string> names;
    for (const auto& [name, value] : chained.headers)
        if (iequals(name, "Via")) names.push_back(value);
    INFO("response:\n" << chained.raw_head);
    REQUIRE(names.size() == 2);
    for (const std::string& element : names) CHECK((element.rfind("1.1 ", 0) == 0 && is_pseudonym(element.substr(4))));
    CHECK(names[0] != names[1]);

    CHECK(through({"--via", "edge"}, {"--via", "edge"}).status == 508);
    CHECK(through({"--via", "off"}, {"--via", "off"}).status == 200);
}

TEST_CASE("integration: loops: rules compare IPv4-mapped addresses as IPv4 addresses",
          "[integration][loops]")
{
    Origin o(static_origin("ok"));
    // A client rule written in mapped form admits the IPv4 client it stands for.
    Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:0", "--allow", "::ffff:127.0.0.0/104", "--deny", "all"});
    Conn c = p.connect();
    auto r = c.roundtrip("GET " + o.url("/") + " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
}

TEST_CASE("integration: loops: a client a PROXY header names as IPv4-mapped IPv6 is its IPv4 address for rules "
          "and logs",
          "[integration][loops][proxy-protocol]")
{
    Origin o(static_origin("ok"));
    Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:0 proxy_protocol", "--proxy-trusted", "127.0.0.1", "--allow",
             "198.51.100.0/24", "-v"});
    Conn c = p.connect();
    auto r = c.roundtrip("PROXY TCP6 ::ffff:198.51.100.7 ::1 1000 80\r\nGET " + o.url("/") +
                         " HTTP/1.1\r\nHost: h\r\n\r\n");
    REQUIRE(r);
    CHECK(r->status == 200);
    REQUIRE(p.wait_err([](const std::string& e) { return !access_log_lines(e).empty(); }));
    auto lines = access_log_lines(p.err());
    INFO("stderr: " << p.err());
    CHECK(lines[0][1] == "198.51.100.7:1000");
}
