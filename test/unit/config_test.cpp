// Command-line parsing: every bad value is an error naming the option.
#include <catch2/catch.hpp>

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

TEST_CASE("config: defaults") {
    auto command = parse({});
    CHECK(command.action == CommandAction::Run);
    REQUIRE(command.config.listen.size() == 1);
    CHECK(to_string(command.config.listen[0]) == "127.0.0.1:8888");
    CHECK(command.config.connect_ports.test(443));
    CHECK(command.config.connect_ports.count() == 1);
    CHECK(command.config.timeout_header_ms == 10'000);
    CHECK(command.config.timeout_idle_ms == 60'000);
    CHECK(command.config.timeout_connect_ms == 10'000);
    CHECK(command.config.timeout_response_ms == 60'000);
    CHECK_FALSE(command.config.backend);
}

TEST_CASE("config: options") {
    auto command = parse({"-l", "127.0.0.1:0", "--listen", "[::1]:9000", "--auth", "u:p", "--auth", "v:q",
                          "--backend", "127.0.0.1:8080", "--connect-ports", "any", "--max-connections", "10",
                          "--timeout-header", "300ms", "-v"});
    const Config& c = command.config;
    REQUIRE(c.listen.size() == 2);
    CHECK(to_string(c.listen[1]) == "[::1]:9000");
    CHECK(c.auth == std::vector<std::string>{"u:p", "v:q"});
    REQUIRE(c.backend);
    CHECK(to_string(c.backend->address) == "127.0.0.1:8080");
    CHECK(c.connect_ports.test(8443));
    CHECK(c.max_connections == 10);
    CHECK(c.timeout_header_ms == 300);
    CHECK(c.verbose);
    CHECK(parse({"-h"}).action == CommandAction::Help);
    CHECK(parse({"--version"}).action == CommandAction::Version);
}

TEST_CASE("config: errors name the option and the problem") {
    CHECK(error_of({"--bogus"}) == "unknown option '--bogus'");
    CHECK(error_of({"--listen"}).find("needs a value") != std::string::npos);
    CHECK(error_of({"-l", "localhost:80"}).find("--listen") != std::string::npos);
    CHECK(error_of({"-l", "127.0.0.1"}).find("--listen") != std::string::npos);
    CHECK(error_of({"-l", "127.0.0.1:70000"}).find("--listen") != std::string::npos);
    CHECK(error_of({"--auth", "nocolon"}).find("--auth") != std::string::npos);
    CHECK(error_of({"--max-connections", "0"}).find("--max-connections") != std::string::npos);
    CHECK(error_of({"--max-connections", "12x"}).find("--max-connections") != std::string::npos);
    CHECK(error_of({"--timeout-idle", "soon"}).find("--timeout-idle") != std::string::npos);
    CHECK(error_of({"--connect-ports", "https"}).find("--connect-ports") != std::string::npos);
    CHECK(error_of({"--backend", "127.0.0.1"}).find("--backend") != std::string::npos);
    CHECK(error_of({"--splice", "maybe"}).find("--splice") != std::string::npos);
    CHECK(error_of({"extra"}).find("unexpected argument") != std::string::npos);
}
