// Configuration: the file's syntax, the command line over it, and every error
// naming where it is (FILE:LINE or the option) and what is wrong.
#include <catch2/catch.hpp>

#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "cproxy/config.hpp"

using namespace cproxy;

static CommandLine parse(std::vector<std::string> args) {
    args.insert(args.begin(), "cproxy");
    std::vector<char*> argv;
    for (auto& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    return parse_command_line(static_cast<int>(args.size()), argv.data());
}

static std::string error_of(std::vector<std::string> args) {
    try {
        parse(std::move(args));
    } catch (const ConfigError& error) {
        return error.what();
    }
    return "<no error>";
}

// A scratch directory for config and auth files, removed afterwards.
class ScratchDirectory {
public:
    ScratchDirectory() {
        char pattern[] = "/tmp/cproxy-config-XXXXXX";
        REQUIRE(::mkdtemp(pattern));
        path_ = pattern;
    }
    ~ScratchDirectory() { std::system(("rm -rf '" + path_ + "'").c_str()); }
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const {
        std::string file = path_ + "/" + name;
        std::ofstream(file) << text;
        ::chmod(file.c_str(), mode);
        return file;
    }
    const std::string& path() const { return path_; }

private:
    std::string path_;
};

static LoadedConfig load(std::vector<std::string> args) {
    return load_config(parse(std::move(args)), "/nonexistent/cproxy.conf");
}

static LoadedConfig load_file(const ScratchDirectory& dir, const std::string& text,
                              std::vector<std::string> args = {}) {
    std::string file = dir.write("cproxy.conf", text);
    args.insert(args.begin(), {"-c", file});
    return load(std::move(args));
}

static std::string only_error(const LoadedConfig& loaded) {
    if (loaded.errors.size() != 1) {
        std::string all;
        for (const auto& error : loaded.errors) all += error + " | ";
        return "<" + std::to_string(loaded.errors.size()) + " errors: " + all + ">";
    }
    return loaded.errors[0];
}

TEST_CASE("config: durations") {
    CHECK(parse_duration_ms("500ms") == 500u);
    CHECK(parse_duration_ms("10s") == 10'000u);
    CHECK(parse_duration_ms("5m") == 300'000u);
    CHECK(parse_duration_ms("7") == 7'000u);
    CHECK(parse_duration_ms("1h") == 3'600'000u);
    CHECK_FALSE(parse_duration_ms(""));
    CHECK_FALSE(parse_duration_ms("0"));
    CHECK_FALSE(parse_duration_ms("-1s"));
    CHECK_FALSE(parse_duration_ms("10x"));
    CHECK_FALSE(parse_duration_ms("s"));
    CHECK_FALSE(parse_duration_ms("99999999999"));
}

TEST_CASE("config: sizes") {
    CHECK(parse_size("65536") == 65536u);
    CHECK(parse_size("64k") == 65536u);
    CHECK(parse_size("64K") == 65536u);
    CHECK(parse_size("1m") == 1048576u);
    CHECK_FALSE(parse_size(""));
    CHECK_FALSE(parse_size("0"));
    CHECK_FALSE(parse_size("k"));
    CHECK_FALSE(parse_size("64kb"));
    CHECK_FALSE(parse_size("-1"));
    CHECK_FALSE(parse_size("99999999999999"));
}

TEST_CASE("config: port lists") {
    auto ports = parse_port_list("443,8443");
    REQUIRE(ports);
    CHECK(ports->test(443));
    CHECK(ports->test(8443));
    CHECK(ports->count() == 2);
    CHECK(parse_port_list("any")->count() == 65535);
    CHECK_FALSE(parse_port_list(""));
    CHECK_FALSE(parse_port_list("443,"));
    CHECK_FALSE(parse_port_list("0"));
    CHECK_FALSE(parse_port_list("65536"));
    CHECK_FALSE(parse_port_list("44 3"));
}

TEST_CASE("config: defaults without a file") {
    auto loaded = load({});
    REQUIRE(loaded.errors.empty());
    CHECK(loaded.file.empty());
    const Config& c = loaded.config;
    REQUIRE(c.listen.size() == 1);
    CHECK(to_string(c.listen[0].address) == "127.0.0.1:8888");
    CHECK(c.connect_ports.test(443));
    CHECK(c.connect_ports.count() == 1);
    CHECK(c.timeout_header_ms == 10'000);
    CHECK(c.timeout_idle_ms == 60'000);
    CHECK(c.timeout_connect_ms == 10'000);
    CHECK(c.timeout_response_ms == 60'000);
    CHECK(c.timeout_tunnel_idle_ms == 300'000);
    CHECK(c.shutdown_timeout_ms == 10'000);
    CHECK(c.max_header_size == 65536);
    CHECK(c.max_headers == 100);
    CHECK(c.access_log.empty());
    CHECK(c.error_log == "stderr");
    CHECK(c.log_level == LogLevel::Info);
    CHECK(c.pid_file.empty());
    CHECK(c.via == "cproxy");
    CHECK(c.splice);
    CHECK_FALSE(c.backend);
    CHECK(c.access_rules.empty());
}

TEST_CASE("config: command-line options") {
    auto loaded = load({"-l", "127.0.0.1:0", "--listen", "[::1]:9000", "--auth", "u:p", "--auth", "v:q",
                        "--backend", "127.0.0.1:8080", "--connect-ports", "any", "--max-connections", "10",
                        "--timeout-header", "300ms", "-v", "--via", "off", "--log-level", "debug",
                        "--deny", "10.1.0.0/16", "--allow", "10.0.0.0/8,::1"});
    REQUIRE(loaded.errors.empty());
    const Config& c = loaded.config;
    REQUIRE(c.listen.size() == 2);
    CHECK(to_string(c.listen[1].address) == "[::1]:9000");
    CHECK(c.auth == std::vector<std::string>{"u:p", "v:q"});
    REQUIRE(c.backend);
    CHECK(to_string(c.backend->address) == "127.0.0.1:8080");
    CHECK(c.connect_ports.test(8443));
    CHECK(c.max_connections == 10);
    CHECK(c.timeout_header_ms == 300);
    CHECK(c.access_log == "stderr");
    CHECK(c.via.empty());
    CHECK(c.log_level == LogLevel::Debug);
    REQUIRE(c.access_rules.size() == 3);
    CHECK_FALSE(c.access_rules[0].allow);
    CHECK(c.access_rules[1].allow);
    CHECK(c.access_rules[2].range.family == AF_INET6);
    CHECK(parse({"-h"}).action == CommandAction::Help);
    CHECK(parse({"--version"}).action == CommandAction::Version);
    CHECK(parse({"-t"}).action == CommandAction::TestConfig);
    CHECK(parse({"--test-config", "-c", "x"}).config_file == "x");
}

TEST_CASE("config: option errors name the option and the problem") {
    CHECK(error_of({"--bogus"}) == "unknown option '--bogus'");
    CHECK(error_of({"--listen"}).find("needs a value") != std::string::npos);
    CHECK(error_of({"extra"}).find("unexpected argument") != std::string::npos);
    auto value_error = [](std::vector<std::string> args) { return only_error(load(std::move(args))); };
    CHECK(value_error({"-l", "localhost:80"}) == "--listen: 'localhost' is not an IPv4 or IPv6 address");
    CHECK(value_error({"-l", "127.0.0.1"}).rfind("--listen: '127.0.0.1' is not ADDR:PORT", 0) == 0);
    CHECK(value_error({"-l", "127.0.0.1:70000"}).rfind("--listen:", 0) == 0);
    CHECK(value_error({"--auth", "nocolon"}) == "--auth: expected USER:PASS");
    CHECK(value_error({"--auth", ":pass"}) == "--auth: expected USER:PASS");
    CHECK(value_error({"--max-connections", "0"}).rfind("--max-connections: '0'", 0) == 0);
    CHECK(value_error({"--max-connections", "12x"}).rfind("--max-connections:", 0) == 0);
    CHECK(value_error({"--timeout-idle", "soon"}).rfind("--timeout-idle: 'soon' is not a duration", 0) == 0);
    CHECK(value_error({"--shutdown-timeout", "0"}).rfind("--shutdown-timeout:", 0) == 0);
    CHECK(value_error({"--connect-ports", "https"}).rfind("--connect-ports:", 0) == 0);
    CHECK(value_error({"--backend", "127.0.0.1"}).rfind("--backend:", 0) == 0);
    CHECK(value_error({"--splice", "maybe"}).rfind("--splice:", 0) == 0);
    CHECK(value_error({"--via", "my proxy"}).rfind("--via:", 0) == 0);
    CHECK(value_error({"--log-level", "loud"}) == "--log-level: 'loud' is not one of error, warning, info, debug");
    CHECK(value_error({"--allow", "10.0.0.0/33"}).rfind("--allow: '10.0.0.0/33'", 0) == 0);
    CHECK(value_error({"--deny", "10.0.0.0/8,"}).rfind("--deny:", 0) == 0);
    CHECK(value_error({"--error-log", "off"}).rfind("--error-log:", 0) == 0);
    CHECK(value_error({"--access-log", "syslog"}) ==
          "--access-log: 'syslog' is for error_log only; expected a path, 'stderr' or 'off'");
    CHECK(value_error({"--max-header-size", "512"}) ==
          "--max-header-size: '512' is not a size between 1k and 1m (bytes, or with k or m)");
    CHECK(value_error({"--max-header-size", "2m"}).rfind("--max-header-size:", 0) == 0);
    CHECK(value_error({"--max-headers", "257"}) == "--max-headers: '257' is not a number between 1 and 256");
    CHECK(value_error({"--max-headers", "0"}).rfind("--max-headers:", 0) == 0);
    CHECK(value_error({"--user", "no-such-user-here"}) == "--user: no such user 'no-such-user-here'");
    CHECK(value_error({"--group", "no-such-group-here"}) == "--group: no such group 'no-such-group-here'");
    CHECK(value_error({"--resolver", "dns.example"}) ==
          "--resolver: 'dns.example' is not ADDR[:PORT] (an IP address; IPv6 as [ADDR]:PORT) or 'system'");
    CHECK(value_error({"--resolver", "127.0.0.1:0"}).rfind("--resolver: '127.0.0.1:0'", 0) == 0);
    CHECK(value_error({"--resolver", "127.0.0.1,"}).rfind("--resolver: ''", 0) == 0);
    CHECK(value_error({"--resolver", "system", "--resolver", "127.0.0.1"}) ==
          "--resolver: 'system' cannot be combined with server addresses");
    CHECK(value_error({"--resolver", "127.0.0.1,127.0.0.2,127.0.0.3,127.0.0.4,127.0.0.5,127.0.0.6,127.0.0.7,"
                                     "127.0.0.8,127.0.0.9"}) == "--resolver: more than 8 servers");
    CHECK(value_error({"--dns-timeout", "0"}).rfind("--dns-timeout:", 0) == 0);
    CHECK(value_error({"--dns-cache-size", "-1"}).rfind("--dns-cache-size:", 0) == 0);
    CHECK(value_error({"--dns-min-ttl", "1500ms"}).rfind("--dns-min-ttl: '1500ms' is not a whole number", 0) == 0);
    CHECK(value_error({"--dns-max-ttl", "8d"}).rfind("--dns-max-ttl:", 0) == 0);
    CHECK(value_error({"--dns-min-ttl", "2h", "--dns-max-ttl", "1h"}) ==
          "--dns-min-ttl: dns_min_ttl is longer than dns_max_ttl (3600s)");
    CHECK(value_error({"--prefer-ipv6", "yes"}).rfind("--prefer-ipv6:", 0) == 0);
    CHECK(value_error({"--hosts-file", ""}).rfind("--hosts-file:", 0) == 0);
}

TEST_CASE("config: upstream pool directives") {
    Config defaults = load({}).config;
    CHECK(defaults.upstream_idle_timeout_ms == 2000);
    CHECK_FALSE(defaults.upstream_max_idle);
    LoadedConfig loaded = load({"--upstream-idle-timeout", "500ms", "--upstream-max-idle", "0"});
    REQUIRE(loaded.errors.empty());
    CHECK(loaded.config.upstream_idle_timeout_ms == 500);
    CHECK(loaded.config.upstream_max_idle == 0u);
    CHECK(only_error(load({"--upstream-max-idle", "100001"})) ==
          "--upstream-max-idle: '100001' is not a number between 0 and 100000");
    CHECK(only_error(load({"--upstream-idle-timeout", "0"})).rfind("--upstream-idle-timeout:", 0) == 0);
}

TEST_CASE("config: stats_listen") {
    CHECK_FALSE(load({}).config.stats_listen);
    LoadedConfig loaded = load({"--stats-listen", "127.0.0.1:9100"});
    REQUIRE(loaded.errors.empty());
    REQUIRE(loaded.config.stats_listen);
    CHECK(to_string(*loaded.config.stats_listen) == "127.0.0.1:9100");
    CHECK(only_error(load({"--stats-listen", "localhost:9100"})) ==
          "--stats-listen: 'localhost' is not an IPv4 or IPv6 address");
    ScratchDirectory dir;
    LoadedConfig from_file = load_file(dir, "stats_listen [::1]:9100\n");
    REQUIRE(from_file.errors.empty());
    CHECK(to_string(*from_file.config.stats_listen) == "[::1]:9100");
}

TEST_CASE("config: resolver directives") {
    Config defaults = load({}).config;
    CHECK(defaults.dns_servers.empty());
    CHECK_FALSE(defaults.system_resolver);
    CHECK(defaults.dns_timeout_ms == 5000);
    CHECK(defaults.dns_cache_size == 1000);
    CHECK(defaults.dns_min_ttl_s == 0);
    CHECK(defaults.dns_max_ttl_s == 3600);
    CHECK(defaults.prefer_ipv6);
    CHECK(defaults.hosts_file == "/etc/hosts");

    ScratchDirectory dir;
    LoadedConfig loaded = load_file(dir,
                                    "resolver 127.0.0.1:5353,[::1]\n"
                                    "resolver 192.0.2.53\n"
                                    "dns_timeout 2500ms\n"
                                    "dns_cache_size 0\n"
                                    "dns_min_ttl 0\n"
                                    "dns_max_ttl 10m\n"
                                    "prefer_ipv6 off\n"
                                    "hosts_file off\n");
    REQUIRE(loaded.errors.empty());
    const Config& config = loaded.config;
    REQUIRE(config.dns_servers.size() == 3);
    CHECK(to_string(config.dns_servers[0]) == "127.0.0.1:5353");
    CHECK(to_string(config.dns_servers[1]) == "[::1]:53");
    CHECK(to_string(config.dns_servers[2]) == "192.0.2.53:53");
    CHECK(config.dns_timeout_ms == 2500);
    CHECK(config.dns_cache_size == 0);
    CHECK(config.dns_min_ttl_s == 0);
    CHECK(config.dns_max_ttl_s == 600);
    CHECK_FALSE(config.prefer_ipv6);
    CHECK(config.hosts_file.empty());

    // The command line's resolver replaces the file's list.
    LoadedConfig system = load_file(dir, "resolver 127.0.0.1\n", {"--resolver", "system"});
    REQUIRE(system.errors.empty());
    CHECK(system.config.system_resolver);
    CHECK(system.config.dns_servers.empty());
}

TEST_CASE("config: a file sets every directive") {
    ScratchDirectory dir;
    std::string auth_file = dir.write("users", "# users\ncarol:pw3\n\n  dave:pw:with:colons\r\n");
    auto loaded = load_file(dir,
                            "# cproxy test configuration\n"
                            "\n"
                            "listen 127.0.0.1:0   # trailing comment\n"
                            "listen [::1]:0\n"
                            "max_connections 100\n"
                            "backend 127.0.0.1:8080\n"
                            "auth alice:secret\n"
                            "auth \"bob:two words\"\n"
                            "auth_file " + auth_file + "\n"
                            "deny 127.0.0.2\n"
                            "allow 127.0.0.0/8,::1\n"
                            "connect_ports 443,8443\n"
                            "timeout_header 500ms\n"
                            "timeout_idle 2m\n"
                            "timeout_connect 3\n"
                            "timeout_response 1h\n"
                            "timeout_tunnel_idle 10s\n"
                            "shutdown_timeout 1s\n"
                            "max_header_size 32k\n"
                            "max_headers 200\n"
                            "\taccess_log \"" + dir.path() + "/access log\"\n"
                            "error_log syslog\n"
                            "log_level warning\n"
                            "pid_file " + dir.path() + "/cproxy.pid\n"
                            "user root\n"
                            "group root\n"
                            "via edge-1.example\n"
                            "splice off\n");
    INFO(only_error(loaded));
    REQUIRE(loaded.errors.empty());
    CHECK(loaded.warnings.empty());
    const Config& c = loaded.config;
    CHECK(c.listen.size() == 2);
    CHECK(c.max_connections == 100);
    CHECK(c.auth == std::vector<std::string>{"alice:secret", "bob:two words", "carol:pw3", "dave:pw:with:colons"});
    CHECK(c.access_rules.size() == 3);
    CHECK(c.connect_ports.count() == 2);
    CHECK(c.timeout_header_ms == 500);
    CHECK(c.timeout_idle_ms == 120'000);
    CHECK(c.timeout_connect_ms == 3000);
    CHECK(c.timeout_response_ms == 3'600'000);
    CHECK(c.timeout_tunnel_idle_ms == 10'000);
    CHECK(c.shutdown_timeout_ms == 1000);
    CHECK(c.max_header_size == 32 * 1024);
    CHECK(c.max_headers == 200);
    CHECK(c.access_log == dir.path() + "/access log");
    CHECK(c.error_log == "syslog");
    CHECK(c.log_level == LogLevel::Warning);
    CHECK(c.pid_file == dir.path() + "/cproxy.pid");
    CHECK(c.user == "root");
    CHECK(c.group == "root");
    CHECK(c.via == "edge-1.example");
    CHECK_FALSE(c.splice);
}

TEST_CASE("config: the command line wins over the file") {
    ScratchDirectory dir;
    auto loaded = load_file(dir,
                            "listen 127.0.0.1:1000\nlisten 127.0.0.1:1001\ntimeout_idle 5s\n"
                            "auth a:b\ndeny 10.0.0.0/8\naccess_log off\n",
                            {"--timeout-idle", "7s", "-l", "127.0.0.1:2000", "--allow", "127.0.0.1", "-v"});
    REQUIRE(loaded.errors.empty());
    const Config& c = loaded.config;
    CHECK(c.timeout_idle_ms == 7000);
    REQUIRE(c.listen.size() == 1);  // the command line's listen list replaces the file's
    CHECK(to_string(c.listen[0].address) == "127.0.0.1:2000");
    REQUIRE(c.access_rules.size() == 1);  // and so does its allow/deny list
    CHECK(c.access_rules[0].allow);
    CHECK(c.auth == std::vector<std::string>{"a:b"});  // untouched: not on the command line
    CHECK(c.access_log == "stderr");
}

TEST_CASE("config: every file error names FILE:LINE and is reported") {
    ScratchDirectory dir;
    auto loaded = load_file(dir,
                            "listen 127.0.0.1:0\n"             // 1
                            "bogus 1\n"                        // 2
                            "timeout_idle\n"                   // 3
                            "auth a:b c:d\n"                   // 4
                            "via \"unterminated\n"             // 5
                            "timeout_header 10x\n"             // 6
                            "timeout_header 10s\n"             // 7
                            "via \"bad\\n\"\n"                 // 8
                            "splice o\"n\n"                    // 9
                            "allow 300.0.0.1\n"                // 10
                            "max_connections -1\n"             // 11
                            "backend 127.0.0.1:80\n"           // 12
                            "backend 127.0.0.1:81\n"           // 13
                            "listen 127.0.0.1:1\n"             // 14: repeatable, fine
                            "auth alice:pa#ss\n");             // 15
    std::string file = dir.path() + "/cproxy.conf";
    std::vector<std::string> expected = {
        file + ":2: unknown directive 'bogus'",
        file + ":3: timeout_idle needs a value",
        file + ":4: auth takes one value (lists are comma-separated; quote a value with spaces)",
        file + ":5: unterminated quoted string",
        file + ":7: duplicate timeout_header (first set at " + file + ":6)",
        file + ":8: only \\\" and \\\\ are escapes in a quoted string",
        file + ":9: a quote inside a word; quote the whole value",
        file + ":13: duplicate backend (first set at " + file + ":12)",
        file + ":15: '#' inside a value; quote the value, or put a space before a comment",
        file + ":6: timeout_header: '10x' is not a duration (500ms, 10s, 5m, 2h, or seconds)",
        file + ":10: allow: '300.0.0.1' is not a comma-separated list of addresses or CIDR blocks "
               "(10.0.0.0/8, 2001:db8::/32) or 'all'",
        file + ":11: max_connections: '-1' is not a number between 1 and 10000000",
    };
    CHECK(loaded.errors == expected);
    CHECK(loaded.file == file);
}

TEST_CASE("config: a missing or unreadable file is an error; the default file is optional") {
    auto missing = load({"-c", "/nonexistent/x.conf"});
    CHECK(only_error(missing) == "cannot read config file '/nonexistent/x.conf': No such file or directory");
    ScratchDirectory dir;
    std::string file = dir.write("default.conf", "timeout_idle 9s\n");
    auto from_default = load_config(parse({}), file);
    REQUIRE(from_default.errors.empty());
    CHECK(from_default.file == file);
    CHECK(from_default.config.timeout_idle_ms == 9000);
    CHECK(load_config(parse({}), dir.path() + "/absent.conf").errors.empty());
}

TEST_CASE("config: auth_file lines, errors and permissions") {
    ScratchDirectory dir;
    std::string users = dir.write("users", "ok:pw\nnocolon\n:nouser\n", 0644);
    auto loaded = load({"--auth-file", users});
    std::vector<std::string> expected = {users + ":2: expected user:password", users + ":3: expected user:password"};
    CHECK(loaded.errors == expected);
    REQUIRE(loaded.warnings.size() == 1);
    CHECK(loaded.warnings[0] == "--auth-file: " + users + " is readable by every user of this machine (chmod o-r it)");
    std::string empty = dir.write("empty", "# no users yet\n\n");
    CHECK(only_error(load({"--auth-file", empty})) == "--auth-file: " + empty + " has no user:password line");
    CHECK(only_error(load({"--auth-file", dir.path() + "/absent"})) ==
          "--auth-file: cannot read '" + dir.path() + "/absent': No such file or directory");
}

TEST_CASE("config: an open proxy is refused unless auth or allow restricts clients") {
    std::string refusal = "refusing to run an open proxy: listen 0.0.0.0:3128 is not a loopback address "
                          "and no auth, auth_file or allow rule restricts who may use it";
    CHECK(only_error(load({"-l", "0.0.0.0:3128"})) == refusal);
    CHECK(only_error(load({"-l", "127.0.0.1:3128", "-l", "[::]:3128"})).find("listen [::]:3128") != std::string::npos);
    CHECK(only_error(load({"-l", "0.0.0.0:3128", "--deny", "10.0.0.0/8"})) == refusal);
    CHECK(load({"-l", "0.0.0.0:3128", "--auth", "u:p"}).errors.empty());
    CHECK(load({"-l", "0.0.0.0:3128", "--allow", "192.168.0.0/16"}).errors.empty());
    CHECK(load({"-l", "127.0.0.5:3128"}).errors.empty());
    CHECK(load({"-l", "[::1]:3128"}).errors.empty());
    // Behind a balancer a loopback address restricts nothing; proxy_trusted names balancers, not clients.
    CHECK(only_error(load({"-l", "127.0.0.1:3128 proxy_protocol", "--proxy-trusted", "127.0.0.1"}))
              .find("refusing to run an open proxy: listen 127.0.0.1:3128 proxy_protocol") == 0);
    CHECK(load({"-l", "127.0.0.1:3128 proxy_protocol", "--proxy-trusted", "127.0.0.1", "--allow", "10.0.0.0/8"})
              .errors.empty());
}

TEST_CASE("config: via on is this instance's own pseudonym, made at start-up; a name or off is kept") {
    CHECK(load({}).config.via_generated);
    CHECK(load({"--via", "on"}).config.via_generated);
    auto named = load({"--via", "edge-1"}).config;
    CHECK_FALSE(named.via_generated);
    CHECK(named.via == "edge-1");
    auto off = load({"--via", "off"}).config;
    CHECK_FALSE(off.via_generated);
    CHECK(off.via.empty());
}

TEST_CASE("config: a backend name is resolved, a bad one named") {
    auto loaded = load({"--backend", "origin.test:8080"});  // /etc/hosts in the test namespace
    REQUIRE(loaded.errors.empty());
    CHECK(to_string(loaded.config.backend->address) == "127.0.0.1:8080");
    CHECK(loaded.config.backend->host == "origin.test:8080");
}

TEST_CASE("config: parent proxies from the file: several words, credentials encoded once, weights") {
    ScratchDirectory dir;
    auto loaded = load_file(dir,
                            "parent 127.0.0.1:3128 auth user:pass weight 3\n"
                            "parent [::1]:3129\n"
                            "parent_for example.com, .corp.example 10.0.0.0/8\n"
                            "parent_for other.example\n"
                            "direct_for direct.example.com\n"
                            "never_direct on\n"
                            "parent_down_time 5s\n");
    INFO(only_error(loaded));
    REQUIRE(loaded.errors.empty());
    const Config& c = loaded.config;
    REQUIRE(c.parents.size() == 2);
    CHECK(c.parents[0].name == "127.0.0.1:3128");
    CHECK(to_string(c.parents[0].address) == "127.0.0.1:3128");
    CHECK(c.parents[0].authorization == "Basic dXNlcjpwYXNz");
    CHECK(c.parents[0].weight == 3);
    CHECK(to_string(c.parents[1].address) == "[::1]:3129");
    CHECK(c.parents[1].authorization.empty());
    CHECK(c.parents[1].weight == 1);
    CHECK(c.parent_for.domains == std::vector<std::string>{"example.com", "corp.example", "other.example"});
    CHECK(c.parent_for.ranges.size() == 1);
    CHECK(c.direct_for.domains == std::vector<std::string>{"direct.example.com"});
    CHECK(c.never_direct);
    CHECK(c.parent_down_time_ms == 5000);
}

TEST_CASE("config: --parent replaces the file's parents; names resolve when loaded") {
    ScratchDirectory dir;
    auto loaded = load_file(dir, "parent 127.0.0.1:3128\n", {"--parent", "localhost:8080 weight 2"});
    INFO(only_error(loaded));
    REQUIRE(loaded.errors.empty());
    REQUIRE(loaded.config.parents.size() == 1);
    CHECK(loaded.config.parents[0].name == "localhost:8080");
    CHECK(loaded.config.parents[0].address.is_loopback());
    CHECK(loaded.config.parents[0].address.port() == 8080);
}

TEST_CASE("config: bad parent settings name the line and the problem") {
    ScratchDirectory dir;
    const std::string form = " (expected HOST:PORT [auth USER:PASS] [weight N])";
    auto error_for = [&](const std::string& text) { return only_error(load_file(dir, text)); };
    std::string file = dir.path() + "/cproxy.conf";
    CHECK(error_for("parent 127.0.0.1\n") == file + ":1: parent: '127.0.0.1' is not HOST:PORT" + form);
    CHECK(error_for("parent 127.0.0.1:0\n") == file + ":1: parent: '127.0.0.1:0' is not HOST:PORT" + form);
    CHECK(error_for("\nparent 127.0.0.1:3128 weight 0\n") ==
          file + ":2: parent: weight '0' is not a number between 1 and 1000");
    CHECK(error_for("parent 127.0.0.1:3128 weight 1001\n") ==
          file + ":1: parent: weight '1001' is not a number between 1 and 1000");
    CHECK(error_for("parent 127.0.0.1:3128 colour blue\n") ==
          file + ":1: parent: 'colour' is not auth or weight" + form);
    CHECK(error_for("parent 127.0.0.1:3128 auth\n") == file + ":1: parent: auth needs a value" + form);
    CHECK(error_for("parent 127.0.0.1:3128 auth nocolon\n") == file + ":1: parent: auth needs USER:PASS");
    CHECK(error_for("parent 127.0.0.1:3128 weight 2 weight 3\n") == file + ":1: parent: weight given twice");
    CHECK(error_for("parent 127.0.0.1:3128\nparent_for bad/name\n") ==
          file + ":2: parent_for: 'bad/name' is not a domain name, IP address or CIDR block");
    CHECK(error_for("never_direct on\n") == file + ":1: never_direct: needs at least one parent");
    CHECK(error_for("direct_for example.com\n") == file + ":1: direct_for: needs at least one parent");
    CHECK(error_for("parent_down_time 0\n").rfind(file + ":1: parent_down_time: '0' is not a duration", 0) == 0);
    // never_direct off with no parent says nothing that could mislead.
    CHECK(load_file(dir, "never_direct off\n").errors.empty());
    CHECK(only_error(load({"--parent", "127.0.0.1:8888"})) ==
          "--parent: parent 127.0.0.1:8888 is this proxy's own listen address");
    CHECK(only_error(load({"--parent-for", "example.com"})) == "--parent-for: needs at least one parent");
    CHECK(only_error(load({"-l", "0.0.0.0:3128", "--allow", "10.0.0.0/8", "--parent", "127.0.0.1:3128"})) ==
          "--parent: parent 127.0.0.1:3128 is this proxy's own listen address");
    CHECK(load({"-l", "0.0.0.0:3128", "--allow", "10.0.0.0/8", "--parent", "127.0.0.1:3129"}).errors.empty());
    std::string many;
    for (int i = 1; i <= 33; ++i) many += "parent 127.0.0.1:" + std::to_string(3000 + i) + "\n";
    CHECK(error_for(many) == file + ":33: parent: more than 32 parents");
}
