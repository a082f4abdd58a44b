// resolv.conf and hosts, read as the C library reads them.
#include <catch2/catch.hpp>

#include "cproxy/system_resolver_files.hpp"

using namespace cproxy;

TEST_CASE("resolver files: resolv.conf") {
    auto conf = parse_resolv_conf(
        "# generated\n"
        "nameserver 192.0.2.53\n"
        "nameserver ::1   # local\n"
        "nameserver not-an-address\n"
        "domain old.example\n"
        "search Corp.Example. lab.example\n"
        "options ndots:2 timeout:3 attempts:9 rotate\n"
        "; another comment\n"
        "nameserver 192.0.2.54\n"
        "nameserver 192.0.2.55\n");  // a fourth one: glibc keeps three
    REQUIRE(conf.nameservers.size() == 3);
    CHECK(to_string(conf.nameservers[0]) == "192.0.2.53:53");
    CHECK(to_string(conf.nameservers[1]) == "[::1]:53");
    CHECK(to_string(conf.nameservers[2]) == "192.0.2.54:53");
    CHECK(conf.search == std::vector<std::string>{"corp.example", "lab.example"});
    CHECK(conf.ndots == 2);
    CHECK(conf.timeout_s == 3);
    CHECK(conf.attempts == 5);  // clamped

    auto empty = parse_resolv_conf("");
    REQUIRE(empty.nameservers.size() == 1);
    CHECK(to_string(empty.nameservers[0]) == "127.0.0.1:53");
    CHECK(empty.search.empty());
    CHECK(empty.ndots == 1);
    CHECK(empty.timeout_s == 5);
    CHECK(empty.attempts == 2);
    CHECK(parse_resolv_conf("options ndots:x timeout:0\n").timeout_s == 1);
    CHECK(parse_resolv_conf("options ndots:x\n").ndots == 1);
    CHECK(parse_resolv_conf("search a.example\ndomain b.example\n").search == std::vector<std::string>{"b.example"});
    // glibc keeps six search domains.
    CHECK(parse_resolv_conf("search a b c d e f g h\n").search ==
          std::vector<std::string>{"a", "b", "c", "d", "e", "f"});
}

TEST_CASE("resolver files: hosts") {
    auto hosts = parse_hosts(
        "127.0.0.1\tlocalhost Origin.Test.\n"
        "# 10.0.0.1 commented.out\n"
        "::1 localhost ip6-localhost # trailing comment\n"
        "bogus line here\n"
        "\n"
        "192.0.2.7 db\r\n");
    REQUIRE(hosts.size() == 5);
    CHECK(hosts[0].name == "localhost");
    CHECK(to_string(hosts[0].address) == "127.0.0.1:0");
    CHECK(hosts[1].name == "origin.test");
    CHECK(hosts[2].name == "localhost");
    CHECK(hosts[2].address.family() == AF_INET6);
    CHECK(hosts[3].name == "ip6-localhost");
    CHECK(hosts[4].name == "db");
}

TEST_CASE("resolver files: the hosts table finds every address of a name, in file order") {
    HostsTable table;
    table.assign(parse_hosts(
        "10.0.0.9 zeta\n"
        "127.0.0.1 localhost origin.test\n"
        "::1 localhost\n"
        "192.0.2.1 alpha\n"
        "127.0.0.2 localhost\n"));
    CHECK(table.size() == 6);
    auto localhost = table.find("localhost");
    REQUIRE(localhost.size() == 3);
    CHECK(to_string(localhost[0].address) == "127.0.0.1:0");
    CHECK(to_string(localhost[1].address) == "[::1]:0");
    CHECK(to_string(localhost[2].address) == "127.0.0.2:0");
    REQUIRE(table.find("origin.test").size() == 1);
    REQUIRE(table.find("zeta").size() == 1);
    CHECK(table.find("local").empty());
    CHECK(table.find("localhost2").empty());
    CHECK(table.find("").empty());
    table.assign({});
    CHECK(table.find("localhost").empty());
}
