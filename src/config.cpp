#include "cproxy/config.hpp"

#include <getopt.h>
#include <grp.h>
#include <netdb.h>
#include <pwd.h>
#include <sys/stat.h>

#include <algorithm>
#include <cctype>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

// The build sets this from $(SYSCONFDIR); the fallback matches its default.
#ifndef CPROXY_SYSCONFDIR
#define CPROXY_SYSCONFDIR "/usr/local/etc"
#endif

namespace cproxy {

const char* const default_config_file = CPROXY_SYSCONFDIR "/cproxy/cproxy.conf";

std::optional<std::uint32_t> parse_duration_ms(std::string_view text) noexcept {
    std::uint64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
        if (value > 1'000'000'000) return std::nullopt;
    }
    if (i == 0) return std::nullopt;
    std::string_view unit = text.substr(i);
    std::uint64_t scale;
    if (unit.empty() || unit == "s") scale = 1000;
    else if (unit == "ms") scale = 1;
    else if (unit == "m") scale = 60'000;
    else if (unit == "h") scale = 3'600'000;
    else return std::nullopt;
    std::uint64_t ms = value * scale;
    if (ms == 0 || ms > UINT32_MAX) return std::nullopt;
    return static_cast<std::uint32_t>(ms);
}

std::optional<std::uint64_t> parse_size(std::string_view text) noexcept {
    std::uint64_t value = 0;
    std::size_t i = 0;
    for (; i < text.size() && text[i] >= '0' && text[i] <= '9'; ++i) {
        value = value * 10 + static_cast<std::uint64_t>(text[i] - '0');
        if (value > 1'000'000'000'000) return std::nullopt;
    }
    if (i == 0 || value == 0) return std::nullopt;
    std::string_view unit = text.substr(i);
    if (unit == "k" || unit == "K") return value * 1024;
    if (unit == "m" || unit == "M") return value * 1024 * 1024;
    if (unit.empty()) return value;
    return std::nullopt;
}

std::optional<std::bitset<65536>> parse_port_list(std::string_view text) noexcept {
    std::bitset<65536> ports;
    if (text == "any") {
        ports.set();
        ports.reset(0);
        return ports;
    }
    if (text.empty()) return std::nullopt;
    while (true) {
        auto comma = text.find(',');
        std::string_view item = text.substr(0, comma);
        if (item.empty() || item.size() > 5) return std::nullopt;
        unsigned port = 0;
        for (char c : item) {
            if (c < '0' || c > '9') return std::nullopt;
            port = port * 10 + static_cast<unsigned>(c - '0');
        }
        if (port == 0 || port > 65535) return std::nullopt;
        ports.set(port);
        if (comma == std::string_view::npos) break;
        text.remove_prefix(comma + 1);
    }
    return ports;
}

namespace {

std::string quoted(std::string_view value) {
    std::string text;
    text.reserve(value.size() + 2);
    text.append(1, '\'').append(value).append(1, '\'');
    return text;
}

// What a directive does with its value: "" on success, else the problem.
using Apply = std::string (*)(Config&, std::string_view value);

struct Directive {
    std::string_view name;
    std::string_view argument;  // for --help
    std::string_view help;      // for --help, with the default
    Apply apply;
    // Repeatable directives accumulate; the command line's values replace the
    // file's, so `clear` runs before the first command-line one is applied.
    void (*clear)(Config&) = nullptr;
    // Takes several words in the file ("listen ADDR:PORT proxy_protocol"),
    // joined by spaces; one quoted value on the command line.
    bool several_words = false;
};

// Start-up and reload only: the one place a blocking lookup is acceptable.
std::string resolve_host_port(const HostPort& host_port, SocketAddress& address) {
    if (auto literal = parse_ip_literal(host_port.host, host_port.port)) {
        address = *literal;
        return {};
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    std::string host(host_port.host);
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
    if (rc != 0 || !result) return "cannot resolve " + quoted(host) + ": " + gai_strerror(rc);
    socklen_t length = std::min<socklen_t>(result->ai_addrlen, sizeof address.storage);
    std::memcpy(&address.storage, result->ai_addr, length);
    address.length = length;
    address.set_port(host_port.port);
    address = unmapped(address);
    ::freeaddrinfo(result);
    return {};
}

std::string resolve_backend(Backend& backend) {
    return resolve_host_port(*split_host_port(backend.host), backend.address);
}

std::optional<SocketAddress> parse_listen_address(std::string_view value, std::string& problem) {
    auto host_port = split_host_port(value);
    if (!host_port) {
        problem = quoted(value) + " is not ADDR:PORT (IPv6 as [ADDR]:PORT)";
        return std::nullopt;
    }
    auto address = parse_ip_literal(host_port->host, host_port->port);
    if (!address) problem = quoted(host_port->host) + " is not an IPv4 or IPv6 address";
    return address;
}

// "ADDR:PORT", or "ADDR:PORT proxy_protocol" for a load balancer in front.
std::string apply_listen(Config& config, std::string_view value) {
    std::string problem;
    std::size_t space = value.find(' ');
    std::string_view option = space == std::string_view::npos ? std::string_view{} : value.substr(space + 1);
    if (!option.empty() && option != "proxy_protocol")
        return quoted(option) + " after the address is not proxy_protocol";
    if (auto address = parse_listen_address(value.substr(0, space), problem))
        config.listen.push_back(ListenAddress{*address, !option.empty()});
    return problem;
}

std::string apply_proxy_trusted(Config& config, std::string_view value) {
    auto ranges = parse_address_ranges(value);
    if (!ranges)
        return quoted(value) + " is not a comma-separated list of addresses or CIDR blocks "
                               "(10.0.0.0/8, 2001:db8::/32) or 'all'";
    config.proxy_trusted.insert(config.proxy_trusted.end(), ranges->begin(), ranges->end());
    return {};
}

std::string apply_stats_listen(Config& config, std::string_view value) {
    std::string problem;
    config.stats_listen = parse_listen_address(value, problem);
    return problem;
}

// A whole number from 1 to `max`, digits only.
std::optional<std::uint32_t> parse_count(std::string_view value, std::uint32_t max) {
    if (value.empty() || value.size() > 9) return std::nullopt;
    std::uint32_t number = 0;
    for (char c : value) {
        if (c < '0' || c > '9') return std::nullopt;
        number = number * 10 + static_cast<std::uint32_t>(c - '0');
    }
    if (number == 0 || number > max) return std::nullopt;
    return number;
}

std::string apply_max_connections(Config& config, std::string_view value) {
    auto number = parse_count(value, 10'000'000);
    if (!number) return quoted(value) + " is not a number between 1 and 10000000";
    config.max_connections = *number;
    return {};
}

std::string apply_workers(Config& config, std::string_view value) {
    if (value == "auto") {
        config.workers = 0;
        return {};
    }
    auto number = parse_count(value, max_workers);
    if (!number) return quoted(value) + " is not auto or a number between 1 and " + std::to_string(max_workers);
    config.workers = *number;
    return {};
}


bool valid_user_pass(std::string_view pair) {
    auto colon = pair.find(':');
    return colon != 0 && colon != std::string_view::npos;
}

std::vector<std::string_view> split_blanks(std::string_view text) {
    std::vector<std::string_view> words;
    std::size_t i = 0;
    while (true) {
        while (i < text.size() && (text[i] == ' ' || text[i] == '\t')) ++i;
        if (i == text.size()) return words;
        std::size_t end = i;
        while (end < text.size() && text[end] != ' ' && text[end] != '\t') ++end;
        words.push_back(text.substr(i, end - i));
        i = end;
    }
}

// "HOST:PORT [auth USER:PASS] [weight N]"; a name is resolved now, as the
// backend's is.
std::string apply_parent(Config& config, std::string_view value) {
    const std::string form = " (expected HOST:PORT [auth USER:PASS] [weight N])";
    std::vector<std::string_view> words = split_blanks(value);
    if (words.empty()) return "expected a value" + form;
    auto host_port = split_host_port(words[0]);
    if (!host_port || host_port->port == 0 || host_port->host.empty())
        return quoted(words[0]) + " is not HOST:PORT" + form;
    Parent parent;
    parent.name = std::string(words[0]);
    bool auth_seen = false, weight_seen = false;
    for (std::size_t i = 1; i < words.size(); i += 2) {
        std::string_view keyword = words[i];
        bool auth = keyword == "auth", weight = keyword == "weight";
        if (!auth && !weight) return quoted(keyword) + " is not auth or weight" + form;
        if ((auth && auth_seen) || (weight && weight_seen)) return std::string(keyword) + " given twice";
        if (i + 1 == words.size()) return std::string(keyword) + " needs a value" + form;
        std::string_view argument = words[i + 1];
        if (auth) {
            if (!valid_user_pass(argument)) return "auth needs USER:PASS";
            parent.authorization = "Basic " + base64_encode(argument);
            auth_seen = true;
        } else {
            auto number = parse_count(argument, max_parent_weight);
            if (!number)
                return "weight " + quoted(argument) + " is not a number between 1 and " +
                       std::to_string(max_parent_weight);
            parent.weight = *number;
            weight_seen = true;
        }
    }
    if (config.parents.size() == max_parents) return "more than " + std::to_string(max_parents) + " parents";
    std::string problem = resolve_host_port(*host_port, parent.address);
    if (!problem.empty()) return problem;
    config.parents.push_back(std::move(parent));
    return {};
}

template <DestinationList Config::*Field>
std::string apply_destinations(Config& config, std::string_view value) {
    std::string problem;
    DestinationList list = parse_destination_list(value, problem);
    if (!problem.empty()) return problem;
    DestinationList& into = config.*Field;
    into.domains.insert(into.domains.end(), list.domains.begin(), list.domains.end());
    into.ranges.insert(into.ranges.end(), list.ranges.begin(), list.ranges.end());
    return {};
}

std::string apply_forwarded(Config& config, std::string_view value) {
    if (value == "off") config.forwarded = forward::ForwardedStyle::Off;
    else if (value == "xff") config.forwarded = forward::ForwardedStyle::Xff;
    else if (value == "rfc7239") config.forwarded = forward::ForwardedStyle::Rfc7239;
    else return quoted(value) + " is not off, xff or rfc7239";
    return {};
}

std::string apply_backend(Config& config, std::string_view value) {
    auto host_port = split_host_port(value);
    if (!host_port || host_port->port == 0 || host_port->host.empty())
        return quoted(value) + " is not HOST:PORT";
    // Resolved once the whole configuration is known (see resolve_backend).
    config.backend = Backend{std::string(value), SocketAddress{}};
    return {};
}

std::string apply_auth(Config& config, std::string_view value) {
    if (!valid_user_pass(value)) return "expected USER:PASS";
    config.auth.emplace_back(value);
    return {};
}

template <bool Allow>
std::string apply_access_rule(Config& config, std::string_view value) {
    auto ranges = parse_address_ranges(value);
    if (!ranges)
        return quoted(value) + " is not a comma-separated list of addresses or CIDR blocks "
                               "(10.0.0.0/8, 2001:db8::/32) or 'all'";
    for (const AddressRange& range : *ranges) config.access_rules.push_back(AccessRule{Allow, range});
    return {};
}

std::string apply_connect_ports(Config& config, std::string_view value) {
    auto ports = parse_port_list(value);
    if (!ports) return quoted(value) + " is not a comma-separated list of ports 1-65535 or 'any'";
    config.connect_ports = *ports;
    return {};
}

std::string apply_max_header_size(Config& config, std::string_view value) {
    auto bytes = parse_size(value);
    if (!bytes || *bytes < 1024 || *bytes > 1024 * 1024)
        return quoted(value) + " is not a size between 1k and 1m (bytes, or with k or m)";
    config.max_header_size = static_cast<std::uint32_t>(*bytes);
    return {};
}

std::string apply_max_headers(Config& config, std::string_view value) {
    auto count = parse_count(value, http::header_capacity);
    if (!count)
        return quoted(value) + " is not a number between 1 and " + std::to_string(http::header_capacity);
    config.max_headers = static_cast<std::uint16_t>(*count);
    return {};
}

template <std::uint32_t Config::*Field>
std::string apply_duration(Config& config, std::string_view value) {
    auto ms = parse_duration_ms(value);
    if (!ms) return quoted(value) + " is not a duration (500ms, 10s, 5m, 2h, or seconds)";
    config.*Field = *ms;
    return {};
}

// A file name, user or group name: anything but empty.
template <std::string Config::*Field>
std::string apply_name(Config& config, std::string_view value) {
    if (value.empty()) return "expected a value";
    config.*Field = std::string(value);
    return {};
}

// A path, or "off" for none.
template <std::string Config::*Field>
std::string apply_path_or_off(Config& config, std::string_view value) {
    if (value.empty()) return "expected a path or 'off'";
    if (value == "syslog") return "'syslog' is for error_log only; expected a path, 'stderr' or 'off'";
    config.*Field = value == "off" ? std::string() : std::string(value);
    return {};
}

std::string apply_error_log(Config& config, std::string_view value) {
    if (value.empty() || value == "off") return "expected a path, 'stderr' or 'syslog'";
    config.error_log = std::string(value);
    return {};
}

std::string apply_log_level(Config& config, std::string_view value) {
    auto level = parse_log_level(value);
    if (!level) return quoted(value) + " is not one of error, warning, info, debug";
    config.log_level = *level;
    return {};
}

bool is_token(std::string_view text) {
    if (text.empty() || text.size() > 64) return false;
    for (char c : text)
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_')) return false;
    return true;
}

std::string apply_via(Config& config, std::string_view value) {
    config.via_generated = value == "on";
    if (value == "on") config.via = "cproxy";
    else if (value == "off") config.via.clear();
    else if (is_token(value)) config.via = std::string(value);
    else return quoted(value) + " is not on, off or a name of letters, digits, '-', '.' and '_'";
    return {};
}

// `resolver ADDR[:PORT],...` or `resolver system`. A few servers are plenty:
// each one is waited for in turn when the ones before it are silent.
constexpr std::size_t max_dns_servers = 8;

std::string apply_resolver(Config& config, std::string_view value) {
    if (value == "system") {
        config.system_resolver = true;
        return {};
    }
    while (true) {
        std::size_t comma = value.find(',');
        std::string_view item = value.substr(0, comma);
        value = comma == std::string_view::npos ? std::string_view() : value.substr(comma + 1);
        auto host_port = split_host_port(item, 53);
        auto address = host_port && host_port->port != 0 ? parse_ip_literal(host_port->host, host_port->port)
                                                         : std::nullopt;
        if (!address)
            return quoted(item) + " is not ADDR[:PORT] (an IP address; IPv6 as [ADDR]:PORT) or 'system'";
        if (config.dns_servers.size() == max_dns_servers)
            return "more than " + std::to_string(max_dns_servers) + " servers";
        config.dns_servers.push_back(*address);
        if (comma == std::string_view::npos) return {};
    }
}

std::string apply_upstream_max_idle(Config& config, std::string_view value) {
    auto count = value == "0" ? std::optional<std::uint32_t>(0) : parse_count(value, 100'000);
    if (!count) return quoted(value) + " is not a number between 0 and 100000";
    config.upstream_max_idle = *count;
    return {};
}

// A count from 0 (none, or no limit) to a million.
template <std::uint32_t Config::*Field>
std::string apply_count_or_zero(Config& config, std::string_view value) {
    auto count = value == "0" ? std::optional<std::uint32_t>(0) : parse_count(value, 1'000'000);
    if (!count) return quoted(value) + " is not a number between 0 and 1000000";
    config.*Field = *count;
    return {};
}

// A TTL bound in whole seconds; "0" is allowed (no lower bound).
template <std::uint32_t Config::*Field>
std::string apply_ttl(Config& config, std::string_view value) {
    auto ms = value == "0" ? std::optional<std::uint32_t>(0) : parse_duration_ms(value);
    if (!ms || *ms % 1000 != 0 || *ms > 7 * 24 * 3600 * 1000u)
        return quoted(value) + " is not a whole number of seconds up to 7 days (30s, 5m, 1h, or 0)";
    config.*Field = *ms / 1000;
    return {};
}

template <bool Config::*Field>
std::string apply_switch(Config& config, std::string_view value) {
    if (value != "on" && value != "off") return quoted(value) + " is not on or off";
    config.*Field = value == "on";
    return {};
}

const Directive directives[] = {
    {"listen", "ADDR:PORT", "listen address, repeatable (default 127.0.0.1:8888;\n"
                            "IPv6 as [::1]:8888; port 0 picks a free port); 'ADDR:PORT\n"
                            "proxy_protocol' expects a PROXY protocol header first",
     apply_listen, [](Config& c) { c.listen.clear(); }, true},
    {"proxy_trusted", "CIDR,...", "who may send a PROXY protocol header, repeatable", apply_proxy_trusted,
     [](Config& c) { c.proxy_trusted.clear(); }},
    {"stats_listen", "ADDR:PORT", "serve GET /metrics (Prometheus) and /stats (JSON) here (default off)",
     apply_stats_listen},
    {"max_connections", "N", "client sessions (default: from the open-file limit)", apply_max_connections},
    {"workers", "N|auto", "event-loop threads, or auto: one per usable CPU (default auto)",
     apply_workers},
    {"cpu_affinity", "on|off", "pin worker i to the i-th usable CPU (default off)",
     apply_switch<&Config::cpu_affinity>},
    {"backend", "HOST:PORT", "where origin-form requests (GET /path) are sent", apply_backend},
    {"parent", "'HOST:PORT [auth U:P] [weight N]'", "a parent proxy to send requests through,\n"
                                                     "repeatable; weights share requests out (default 1)",
     apply_parent, [](Config& c) { c.parents.clear(); }, true},
    {"parent_for", "DOMAIN...", "only these domains (and subdomains, IPs, CIDRs) go through\n"
                                "parents (default: every request), repeatable",
     apply_destinations<&Config::parent_for>, [](Config& c) { c.parent_for = {}; }, true},
    {"direct_for", "DOMAIN...", "these never go through parents, repeatable",
     apply_destinations<&Config::direct_for>, [](Config& c) { c.direct_for = {}; }, true},
    {"never_direct", "on|off", "with every parent down, answer 502 instead of going direct\n(default off)",
     apply_switch<&Config::never_direct>},
    {"parent_down_time", "D", "how long a parent that failed is left alone (default 30s)",
     apply_duration<&Config::parent_down_time_ms>},
    {"auth", "USER:PASS", "require Basic proxy authentication, repeatable", apply_auth,
     [](Config& c) { c.auth.clear(); }},
    {"auth_file", "PATH", "file of user:password lines, one per user", apply_name<&Config::auth_file>},
    {"allow", "CIDR,...", "admit these clients; first allow/deny match wins", apply_access_rule<true>,
     [](Config& c) { c.access_rules.clear(); }},
    {"deny", "CIDR,...", "refuse these clients with 403", apply_access_rule<false>,
     [](Config& c) { c.access_rules.clear(); }},
    {"connect_ports", "LIST", "ports CONNECT may reach: 443,8443 or any (default 443)", apply_connect_ports},
    {"timeout_header", "D", "time to receive a request head (default 10s)",
     apply_duration<&Config::timeout_header_ms>},
    {"timeout_idle", "D", "idle keep-alive connection (default 60s)",
     apply_duration<&Config::timeout_idle_ms>},
    {"timeout_connect", "D", "upstream connection attempts (default 10s)",
     apply_duration<&Config::timeout_connect_ms>},
    {"timeout_response", "D", "upstream response head (default 60s)",
     apply_duration<&Config::timeout_response_ms>},
    {"timeout_tunnel_idle", "D", "CONNECT tunnel with no traffic (default 5m)",
     apply_duration<&Config::timeout_tunnel_idle_ms>},
    {"shutdown_timeout", "D", "how long a stop waits for open requests (default 10s)",
     apply_duration<&Config::shutdown_timeout_ms>},
    {"upstream_idle_timeout", "D", "how long an idle upstream connection is kept for reuse (default 2s)",
     apply_duration<&Config::upstream_idle_timeout_ms>},
    {"upstream_max_idle", "N", "idle upstream connections kept, 0 for none (default: from the open-file limit)",
     apply_upstream_max_idle},
    {"upstream_max_connections", "N", "connections to one upstream address; more requests wait,\n"
                                      "up to timeout_connect, for one to come free (default 0: no limit)",
     apply_count_or_zero<&Config::upstream_max_connections>},
    {"max_header_size", "SIZE", "largest request head, 1k to 1m (default 64k)", apply_max_header_size},
    {"max_headers", "N", "most field lines in a request head, up to 256 (default 100)", apply_max_headers},
    {"access_log", "PATH", "one line per request: a file, stderr or off (default off)",
     apply_path_or_off<&Config::access_log>},
    {"error_log", "PATH", "a file, stderr, syslog or syslog:SOCKET (default stderr)", apply_error_log},
    {"log_level", "LEVEL", "error, warning, info or debug (default info)", apply_log_level},
    {"pid_file", "PATH", "write the process id here (default off)", apply_path_or_off<&Config::pid_file>},
    {"user", "NAME", "switch to this user after binding, when started as root", apply_name<&Config::user>},
    {"group", "NAME", "switch to this group (default: the user's)", apply_name<&Config::group>},
    {"via", "on|off|NAME", "the Via field's name, or none (default on: cproxy-HASH, this instance's own)", apply_via},
    {"forwarded", "off|xff|rfc7239", "tell servers the client's address: X-Forwarded-For or\n"
                                      "Forwarded (RFC 7239); default off, for clients' privacy",
     apply_forwarded},
    {"splice", "on|off", "relay tunnels with splice(2) (default on)", apply_switch<&Config::splice>},
    {"trace", "on|off", "forward TRACE requests instead of 405 (default off)", apply_switch<&Config::trace>},
    {"resolver", "ADDR,...", "DNS servers (default: /etc/resolv.conf's), repeatable;\n"
                             "'system' uses getaddrinfo(3) threads instead",
     apply_resolver, [](Config& c) { c.dns_servers.clear(), c.system_resolver = false; }},
    {"dns_timeout", "D", "a whole name lookup; 504 after it (default 5s)", apply_duration<&Config::dns_timeout_ms>},
    {"dns_cache_size", "N", "names cached per worker, 0 for none (default 1000)",
     apply_count_or_zero<&Config::dns_cache_size>},
    {"dns_min_ttl", "D", "shortest time an answer is kept (default 0)", apply_ttl<&Config::dns_min_ttl_s>},
    {"dns_max_ttl", "D", "longest time an answer is kept (default 1h)", apply_ttl<&Config::dns_max_ttl_s>},
    {"prefer_ipv6", "on|off", "family tried first for names with both (default on)",
     apply_switch<&Config::prefer_ipv6>},
    {"hosts_file", "PATH", "names looked up before DNS, or off (default /etc/hosts)",
     apply_path_or_off<&Config::hosts_file>},
};

const Directive* find_directive(std::string_view name) {
    for (const Directive& directive : directives)
        if (directive.name == name) return &directive;
    return nullptr;
}

std::string option_name(std::string_view directive) {
    std::string option(directive);
    for (char& c : option)
        if (c == '_') c = '-';
    return option;
}

// Splits one line into words: bare words end at whitespace or '#', quoted ones
// may hold both. Returns false (with `problem` set) on a syntax error.
bool split_words(std::string_view line, std::vector<std::string>& words, std::string& problem) {
    std::size_t i = 0;
    while (true) {
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
        if (i == line.size() || line[i] == '#') return true;
        std::string word;
        if (line[i] == '"') {
            ++i;
            while (true) {
                if (i == line.size()) {
                    problem = "unterminated quoted string";
                    return false;
                }
                char c = line[i++];
                if (c == '"') break;
                if (c == '\\') {
                    if (i == line.size() || (line[i] != '"' && line[i] != '\\')) {
                        problem = "only \\\" and \\\\ are escapes in a quoted string";
                        return false;
                    }
                    c = line[i++];
                }
                word += c;
            }
            if (i < line.size() && line[i] != ' ' && line[i] != '\t' && line[i] != '#') {
                problem = "a quoted string must be followed by a space";
                return false;
            }
        } else {
            while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
                if (line[i] == '#') {
                    // "pa#ss" would silently become "pa": make the author choose.
                    problem = "'#' inside a value; quote the value, or put a space before a comment";
                    return false;
                }
                if (line[i] == '"') {
                    problem = "a quote inside a word; quote the whole value";
                    return false;
                }
                word += line[i++];
            }
        }
        for (char c : word) {
            if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
                problem = "control character in a value";
                return false;
            }
        }
        words.push_back(std::move(word));
    }
}

void read_auth_file(Config& config, const std::string& origin, LoadedConfig& loaded) {
    const std::string& path = config.auth_file;
    std::ifstream in(path);
    if (!in) {
        loaded.errors.push_back(origin + ": cannot read " + quoted(path) + ": " + std::strerror(errno));
        return;
    }
    struct stat status{};
    if (::stat(path.c_str(), &status) == 0 && (status.st_mode & S_IROTH))
        loaded.warnings.push_back(origin + ": " + path +
                                  " is readable by every user of this machine (chmod o-r it)");
    std::size_t users = 0;
    std::string line;
    for (int number = 1; std::getline(in, line); ++number) {
        if (!line.empty() && line.back() == '\r') line.pop_back();
        std::string_view text = line;
        while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
        if (text.empty() || text.front() == '#') continue;
        if (!valid_user_pass(text)) {
            loaded.errors.push_back(path + ":" + std::to_string(number) + ": expected user:password");
            continue;
        }
        config.auth.emplace_back(text);
        ++users;
    }
    // An empty file would silently leave the proxy without authentication.
    if (users == 0 && in.eof())
        loaded.errors.push_back(origin + ": " + path + " has no user:password line");
}

void validate(LoadedConfig& loaded, const std::map<std::string, std::string>& origins) {
    Config& config = loaded.config;
    auto origin_of = [&](const char* directive) {
        auto found = origins.find(directive);
        return found == origins.end() ? std::string(directive) : found->second;
    };
    if (config.listen.empty()) config.listen.push_back(ListenAddress{*parse_ip_literal("127.0.0.1", 8888)});
    if (!config.auth_file.empty()) read_auth_file(config, origin_of("auth_file"), loaded);
    if (config.backend) {
        std::string problem = resolve_backend(*config.backend);
        if (!problem.empty()) loaded.errors.push_back(origin_of("backend") + ": " + problem);
    }
    if (!config.user.empty() && !::getpwnam(config.user.c_str()))
        loaded.errors.push_back(origin_of("user") + ": no such user " + quoted(config.user));
    if (!config.group.empty() && !::getgrnam(config.group.c_str()))
        loaded.errors.push_back(origin_of("group") + ": no such group " + quoted(config.group));
    if (config.system_resolver && !config.dns_servers.empty())
        loaded.errors.push_back(origin_of("resolver") + ": 'system' cannot be combined with server addresses");
    if (config.dns_min_ttl_s > config.dns_max_ttl_s)
        loaded.errors.push_back(origin_of("dns_min_ttl") + ": dns_min_ttl is longer than dns_max_ttl (" +
                                std::to_string(config.dns_max_ttl_s) + "s)");
    bool expects_header = std::any_of(config.listen.begin(), config.listen.end(),
                                      [](const ListenAddress& listen) { return listen.proxy_protocol; });
    if (expects_header && config.proxy_trusted.empty())
        loaded.errors.push_back(origin_of("listen") +
                                ": proxy_protocol needs proxy_trusted: the balancers allowed to send the header");
    if (config.parents.empty()) {
        for (const char* directive : {"parent_for", "direct_for", "never_direct"})
            if (origins.count(directive) && (std::string_view(directive) != "never_direct" || config.never_direct))
                loaded.errors.push_back(origin_of(directive) + ": needs at least one parent");
    }
    for (const Parent& parent : config.parents)
        for (const ListenAddress& listen : config.listen)
            if (parent.address == listen.address ||
                (listen.address.is_unspecified() && listen.address.port() == parent.address.port() &&
                 (parent.address.is_loopback() || parent.address.is_unspecified())))
                loaded.errors.push_back(origin_of("parent") + ": parent " + parent.name +
                                        " is this proxy's own listen address");
    std::string open_proxy = open_proxy_problem(config);
    if (!open_proxy.empty()) loaded.errors.push_back(open_proxy);
}

std::string format_error(const Setting& setting, std::string_view problem) {
    if (setting.from_file) return setting.origin + ": " + setting.directive + ": " + std::string(problem);
    return setting.origin + ": " + std::string(problem);
}

}  // namespace

std::string open_proxy_problem(const Config& config) {
    // auth_file counts through the users it gave: an empty one restricts nobody.
    bool clients_restricted = !config.auth.empty();
    for (const AccessRule& rule : config.access_rules) clients_restricted |= rule.allow;
    for (const ListenAddress& listen : config.listen) {
        if (clients_restricted) continue;
        // A balancer in front forwards whoever reaches it, so a loopback
        // address restricts nothing there; proxy_trusted names the balancers,
        // not the clients.
        if (listen.proxy_protocol)
            return "refusing to run an open proxy: listen " + to_string(listen.address) +
                   " proxy_protocol takes clients from a load balancer, and no auth, auth_file or allow rule "
                   "restricts who may use it";
        if (listen.address.is_loopback()) continue;
        return "refusing to run an open proxy: listen " + to_string(listen.address) +
               " is not a loopback address and no auth, auth_file or allow rule restricts who may use it";
    }
    return {};
}

std::vector<Setting> parse_config_text(std::string_view text, const std::string& file_name,
                                       std::vector<std::string>& errors) {
    std::vector<Setting> settings;
    std::map<std::string_view, std::string> first_seen;
    int number = 0;
    while (!text.empty()) {
        ++number;
        auto newline = text.find('\n');
        std::string_view line = text.substr(0, newline);
        text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        std::string where = file_name + ":" + std::to_string(number);
        std::vector<std::string> words;
        std::string problem;
        if (!split_words(line, words, problem)) {
            errors.push_back(where + ": " + problem);
            continue;
        }
        if (words.empty()) continue;
        const Directive* directive = find_directive(words[0]);
        if (!directive) {
            errors.push_back(where + ": unknown directive " + quoted(words[0]));
            continue;
        }
        if (words.size() == 1) {
            errors.push_back(where + ": " + words[0] + " needs a value");
            continue;
        }
        if (directive->several_words) {
            for (std::size_t i = 2; i < words.size(); ++i) words[1] += " " + words[i];
            words.resize(2);
        }
        if (words.size() > 2) {
            errors.push_back(where + ": " + words[0] +
                             " takes one value (lists are comma-separated; quote a value with spaces)");
            continue;
        }
        if (!directive->clear) {
            auto [first, inserted] = first_seen.emplace(directive->name, where);
            if (!inserted) {
                errors.push_back(where + ": duplicate " + words[0] + " (first set at " + first->second + ")");
                continue;
            }
        }
        settings.push_back(Setting{std::move(words[0]), std::move(words[1]), where, true});
    }
    return settings;
}

void print_usage(std::FILE* out) {
    std::fputs("usage: cproxy [-c FILE] [-t] [options]\n"
               "HTTP/1.1 forward proxy with CONNECT tunnelling.\n\n"
               "  -c, --config FILE            read FILE (default " CPROXY_SYSCONFDIR
               "/cproxy/cproxy.conf,\n"
               "                               if it exists)\n"
               "  -t, --test-config            check the configuration and exit 0, or 2\n",
               out);
    for (const Directive& directive : directives) {
        const char* prefix = directive.name == "listen"    ? "  -l, --"
                             : directive.name == "workers" ? "  -w, --"
                                                           : "      --";
        std::string left = prefix +
                           option_name(directive.name) + " " + std::string(directive.argument);
        std::string_view help = directive.help;
        bool first = true;
        while (!help.empty()) {
            auto newline = help.find('\n');
            std::string_view part = help.substr(0, newline);
            std::fprintf(out, "%-31s%s%.*s\n", first ? left.c_str() : "",
                         first && left.size() >= 31 ? "\n                               " : "",
                         static_cast<int>(part.size()), part.data());
            first = false;
            help.remove_prefix(newline == std::string_view::npos ? help.size() : newline + 1);
        }
    }
    std::fputs("  -v, --verbose                the same as --access-log stderr\n"
               "  -h, --help                   this text\n"
               "  -V, --version                print the version\n\n"
               "Every option --foo-bar is the directive foo_bar in the config file; options win.\n"
               "Durations: 500ms, 10s, 5m, 2h, or a bare number of seconds. See cproxy.conf(5).\n",
               out);
}

CommandLine parse_command_line(int argc, char** argv) {
    constexpr int directive_base = 256;
    static std::vector<std::string> names;
    static std::vector<option> long_options;
    if (long_options.empty()) {
        for (const Directive& directive : directives) names.push_back(option_name(directive.name));
        for (std::size_t i = 0; i < names.size(); ++i)
            long_options.push_back({names[i].c_str(), required_argument, nullptr,
                                    directive_base + static_cast<int>(i)});
        long_options.push_back({"config", required_argument, nullptr, 'c'});
        long_options.push_back({"test-config", no_argument, nullptr, 't'});
        long_options.push_back({"verbose", no_argument, nullptr, 'v'});
        long_options.push_back({"help", no_argument, nullptr, 'h'});
        long_options.push_back({"version", no_argument, nullptr, 'V'});
        long_options.push_back({nullptr, 0, nullptr, 0});
    }

    CommandLine result;
    ::opterr = 0;
    ::optind = 1;
    int opt;
    while ((opt = ::getopt_long(argc, argv, ":c:l:w:tvhV", long_options.data(), nullptr)) != -1) {
        if (opt >= directive_base) {
            std::size_t i = static_cast<std::size_t>(opt - directive_base);
            result.settings.push_back(
                Setting{std::string(directives[i].name), ::optarg, "--" + names[i], false});
            continue;
        }
        switch (opt) {
        case 'l': result.settings.push_back(Setting{"listen", ::optarg, "--listen", false}); break;
        case 'w': result.settings.push_back(Setting{"workers", ::optarg, "--workers", false}); break;
        case 'c': result.config_file = ::optarg; break;
        case 't': result.action = CommandAction::TestConfig; break;
        case 'v': result.settings.push_back(Setting{"access_log", "stderr", "--verbose", false}); break;
        case 'h': result.action = CommandAction::Help; break;
        case 'V': result.action = CommandAction::Version; break;
        case ':':
            throw ConfigError(std::string("option '") + argv[::optind - 1] + "' needs a value");
        default:
            throw ConfigError(std::string("unknown option '") + argv[::optind - 1] + "'");
        }
    }
    if (::optind < argc)
        throw ConfigError(std::string("unexpected argument '") + argv[::optind] + "'");
    return result;
}

LoadedConfig load_config(const CommandLine& command, const std::string& default_file) {
    LoadedConfig loaded;
    std::vector<Setting> settings;
    std::string file = command.config_file.value_or(default_file);
    struct stat status{};
    if (command.config_file || ::stat(file.c_str(), &status) == 0) {
        loaded.file = file;
        std::ifstream in(file);
        if (!in) {
            loaded.errors.push_back("cannot read config file " + quoted(file) + ": " + std::strerror(errno));
        } else {
            std::stringstream text;
            text << in.rdbuf();
            settings = parse_config_text(text.str(), file, loaded.errors);
        }
    }

    std::map<std::string, std::string> origins;
    auto apply = [&](const Setting& setting) {
        const Directive* directive = find_directive(setting.directive);
        std::string problem = directive->apply(loaded.config, setting.value);
        if (!problem.empty()) loaded.errors.push_back(format_error(setting, problem));
        origins[setting.directive] =
            setting.from_file ? setting.origin + ": " + setting.directive : setting.origin;
    };
    for (const Setting& setting : settings) apply(setting);
    for (const Setting& setting : command.settings) {
        const Directive* directive = find_directive(setting.directive);
        if (directive->clear) directive->clear(loaded.config);
    }
    for (const Setting& setting : command.settings) apply(setting);
    validate(loaded, origins);
    return loaded;
}

}  // namespace cproxy
