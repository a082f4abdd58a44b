// One validated configuration, built from the command line (the config file
// arrives later and feeds the same struct). Start-up code only: errors are
// thrown as ConfigError and turn into exit status 2.
#pragma once

#include <bitset>
#include <cstdint>
#include <cstdio>
#include <optional>

#include <stdexcept>
#include <string>
#include <vector>

#include "cproxy/address.hpp"

namespace cproxy {

struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct Backend {
    std::string host;  // as given, for the Host header of requests without one
    SocketAddress address;
};

struct Config {
    std::vector<SocketAddress> listen;
    std::vector<std::string> auth;  // "user:pass" pairs
    std::optional<Backend> backend;
    std::bitset<65536> connect_ports;
    std::uint32_t max_connections = 0;  // 0: derived from RLIMIT_NOFILE
    std::uint32_t timeout_header_ms = 10'000;
    std::uint32_t timeout_idle_ms = 60'000;
    std::uint32_t timeout_connect_ms = 10'000;
    std::uint32_t timeout_response_ms = 60'000;
    std::uint32_t timeout_tunnel_idle_ms = 300'000;
    bool verbose = false;
    bool splice = true;
};

enum class CommandAction { Run, Help, Version };

struct CommandLine {
    CommandAction action = CommandAction::Run;
    Config config;
};

// Parses argv; throws ConfigError naming the option and the problem.
CommandLine parse_command_line(int argc, char** argv);
void print_usage(std::FILE* out);

// "500ms", "10s", "5m", "2h" or bare seconds; nullopt if malformed or zero.
std::optional<std::uint32_t> parse_duration_ms(std::string_view text) noexcept;
// "443,8443" or "any"; nullopt if malformed.
std::optional<std::bitset<65536>> parse_port_list(std::string_view text) noexcept;

}  // namespace cproxy
