// One validated configuration, built from the config file and the command line.
// Every directive `foo_bar` of the file is also the option `--foo-bar`; the
// command line wins. Start-up and reload code only: it allocates, reads files
// and may resolve the backend's name.
#pragma once

#include <bitset>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include "cproxy/address.hpp"
#include "cproxy/forward.hpp"
#include "cproxy/http_parser.hpp"
#include "cproxy/log.hpp"
#include "cproxy/parents.hpp"
#include "cproxy/policy.hpp"

namespace cproxy {

// A command line that cannot be understood (unknown option, missing value).
struct ConfigError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

inline constexpr std::uint32_t max_workers = 256;

struct Backend {
    std::string host;  // as given, for the Host header of requests without one
    SocketAddress address;
};

struct ListenAddress {
    SocketAddress address;
    bool proxy_protocol = false;  // each connection starts with a PROXY protocol header
    bool operator==(const ListenAddress&) const noexcept = default;
};

struct Config {
    std::vector<ListenAddress> listen;
    std::vector<AddressRange> proxy_trusted;  // who may send a PROXY protocol header
    std::optional<SocketAddress> stats_listen;  // GET /metrics and /stats; none by default
    std::uint32_t max_connections = 0;  // 0: derived from RLIMIT_NOFILE; the total of all workers
    std::uint32_t workers = 0;          // 0 (auto): the CPUs in the inherited affinity mask
    bool cpu_affinity = false;          // pin worker i to the i-th CPU of that mask
    std::optional<Backend> backend;
    // Parent proxies: requests to hosts in parent_for (every host when it is
    // empty) and not in direct_for go through one of them.
    std::vector<Parent> parents;
    DestinationList parent_for;
    DestinationList direct_for;
    bool never_direct = false;  // every parent down: 502 rather than going direct
    std::uint32_t parent_down_time_ms = 30'000;
    std::vector<std::string> auth;  // "user:pass" pairs, from auth and auth_file
    std::string auth_file;
    std::vector<AccessRule> access_rules;
    std::bitset<65536> connect_ports;
    std::uint32_t timeout_header_ms = 10'000;
    std::uint32_t timeout_idle_ms = 60'000;
    std::uint32_t timeout_connect_ms = 10'000;
    std::uint32_t timeout_response_ms = 60'000;
    std::uint32_t timeout_tunnel_idle_ms = 300'000;
    std::uint32_t shutdown_timeout_ms = 10'000;
    std::uint32_t upstream_idle_timeout_ms = 2'000;  // a pooled upstream connection's idle life
    std::optional<std::uint32_t> upstream_max_idle;  // pooled connections; none: from the open-file limit
    std::uint32_t upstream_max_connections = 0;  // per upstream address, 0: no limit
    std::uint32_t max_header_size = 64 * 1024;  // bytes of a request head
    std::uint16_t max_headers = http::default_max_headers;  // field lines of a request head
    std::string access_log;  // "" (off), "stderr" or a path
    std::string error_log = "stderr";  // "stderr", "syslog" or a path
    LogLevel log_level = LogLevel::Info;
    std::string pid_file;  // "" (none)
    std::string user;
    std::string group;
    std::string via = "cproxy";  // "" (no Via field, no loop check by Via)
    // `via on` (the default): the Via name is the instance's own pseudonym,
    // made at start-up from the host name and the first listen address.
    bool via_generated = true;
    std::string instance_name;    // that pseudonym, kept across reloads
    // The host's interface addresses, read at start-up and on reload: under a
    // wildcard listener they are this proxy's own (the loop check).
    std::vector<SocketAddress> host_addresses;
    forward::ForwardedStyle forwarded = forward::ForwardedStyle::Off;
    bool splice = true;
    bool trace = false;  // forward TRACE and answer it at Max-Forwards: 0
    // Name resolution: the built-in stub resolver unless system_resolver.
    std::vector<SocketAddress> dns_servers;  // empty: /etc/resolv.conf's
    bool system_resolver = false;            // `resolver system`: getaddrinfo threads
    std::uint32_t dns_timeout_ms = 5'000;    // a whole lookup
    std::uint32_t dns_cache_size = 1000;     // names per worker; 0: no cache
    std::uint32_t dns_min_ttl_s = 0;
    std::uint32_t dns_max_ttl_s = 3600;
    bool prefer_ipv6 = true;                 // the family Happy Eyeballs tries first
    std::string hosts_file = "/etc/hosts";   // "" (off)

    Config() { connect_ports.set(443); }
};

// One `directive value` from the file or the command line.
struct Setting {
    std::string directive;  // "timeout_idle"
    std::string value;
    std::string origin;     // "FILE:LINE" or "--timeout-idle"
    bool from_file = false;
};

enum class CommandAction { Run, TestConfig, Help, Version };

struct CommandLine {
    CommandAction action = CommandAction::Run;
    std::optional<std::string> config_file;  // -c FILE
    std::vector<Setting> settings;
};

// Splits argv into the action, the config file and the settings; values are
// checked later, by load_config. Throws ConfigError for an unknown option or a
// missing value.
CommandLine parse_command_line(int argc, char** argv);
void print_usage(std::FILE* out);

// SYSCONFDIR/cproxy/cproxy.conf, read when there is no -c and it exists.
extern const char* const default_config_file;

struct LoadedConfig {
    Config config;
    std::string file;  // the file read; empty if none
    std::vector<std::string> errors;  // "ORIGIN: problem", each one a reason not to start
    std::vector<std::string> warnings;
};

// Reads `command.config_file`, or `default_file` if that exists, applies the
// command line over it and validates the result (auth_file read, backend
// resolved, user and group looked up, the open-proxy rule). Collects every
// error instead of stopping at the first.
LoadedConfig load_config(const CommandLine& command, const std::string& default_file);

// Why `config` would make an open proxy (a non-loopback listen address with no
// auth and no allow rule), or empty if it would not.
std::string open_proxy_problem(const Config& config);

// The settings in a config file's text; syntax errors are appended to `errors`.
std::vector<Setting> parse_config_text(std::string_view text, const std::string& file_name,
                                       std::vector<std::string>& errors);

// "500ms", "10s", "5m", "2h" or bare seconds; nullopt if malformed or zero.
std::optional<std::uint32_t> parse_duration_ms(std::string_view text) noexcept;
// "65536", "64k" or "1m" (binary units); nullopt if malformed or zero.
std::optional<std::uint64_t> parse_size(std::string_view text) noexcept;
// "443,8443" or "any"; nullopt if malformed.
std::optional<std::bitset<65536>> parse_port_list(std::string_view text) noexcept;

}  // namespace cproxy
