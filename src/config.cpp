#include "cproxy/config.hpp"

#include <getopt.h>
#include <netdb.h>

#include <cstring>
#include <string_view>

namespace cproxy {

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

static SocketAddress parse_listen(const char* option, std::string_view text) {
    auto host_port = split_host_port(text);
    if (!host_port)
        throw ConfigError(std::string(option) + ": '" + std::string(text) +
                          "' is not ADDR:PORT (IPv6 as [ADDR]:PORT)");
    auto address = parse_ip_literal(host_port->host, host_port->port);
    if (!address)
        throw ConfigError(std::string(option) + ": '" + std::string(host_port->host) +
                          "' is not an IPv4 or IPv6 address");
    return *address;
}

// Start-up only: the one place a blocking lookup is acceptable.
static Backend resolve_backend(std::string_view text) {
    auto host_port = split_host_port(text);
    if (!host_port || host_port->port == 0)
        throw ConfigError("--backend: '" + std::string(text) + "' is not HOST:PORT");
    Backend backend;
    backend.host = std::string(text);
    if (auto literal = parse_ip_literal(host_port->host, host_port->port)) {
        backend.address = *literal;
        return backend;
    }
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* result = nullptr;
    std::string host(host_port->host);
    int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &result);
    if (rc != 0 || !result)
        throw ConfigError("--backend: cannot resolve '" + host + "': " + gai_strerror(rc));
    std::memcpy(&backend.address.storage, result->ai_addr, result->ai_addrlen);
    backend.address.length = result->ai_addrlen;
    backend.address.set_port(host_port->port);
    ::freeaddrinfo(result);
    return backend;
}

static std::uint32_t parse_duration_option(const char* option, const char* text) {
    auto ms = parse_duration_ms(text);
    if (!ms)
        throw ConfigError(std::string(option) + ": '" + text +
                          "' is not a duration (e.g. 500ms, 10s, 5m, or seconds)");
    return *ms;
}

void print_usage(std::FILE* out) {
    std::fputs(
        "usage: cproxy [options]\n"
        "HTTP/1.1 forward proxy with CONNECT tunnelling.\n\n"
        "  -l, --listen ADDR:PORT       listen address, repeatable (default 127.0.0.1:8888;\n"
        "                               IPv6 as [::1]:8888; port 0 picks a free port)\n"
        "      --auth USER:PASS         require Basic proxy authentication, repeatable\n"
        "      --backend HOST:PORT      where origin-form requests (GET /path) are sent\n"
        "      --connect-ports LIST     ports CONNECT may reach: 443,8443 or any (default 443)\n"
        "      --max-connections N      client sessions (default: from the open-file limit)\n"
        "      --timeout-header D       time to receive a request head (default 10s)\n"
        "      --timeout-idle D         idle keep-alive connection (default 60s)\n"
        "      --timeout-connect D      upstream name lookup and connect (default 10s)\n"
        "      --timeout-response D     upstream response head (default 60s)\n"
        "      --timeout-tunnel-idle D  CONNECT tunnel with no traffic (default 5m)\n"
        "      --splice on|off          relay tunnels with splice(2) (default on)\n"
        "  -v, --verbose                one access-log line per request on stderr\n"
        "  -h, --help                   this text\n"
        "  -V, --version                print the version\n\n"
        "Durations: 500ms, 10s, 5m, or a bare number of seconds.\n",
        out);
}

CommandLine parse_command_line(int argc, char** argv) {
    enum : int {
        opt_auth = 256,
        opt_backend,
        opt_connect_ports,
        opt_max_connections,
        opt_timeout_header,
        opt_timeout_idle,
        opt_timeout_connect,
        opt_timeout_response,
        opt_timeout_tunnel_idle,
        opt_splice,
    };
    static const option long_options[] = {
        {"listen", required_argument, nullptr, 'l'},
        {"auth", required_argument, nullptr, opt_auth},
        {"backend", required_argument, nullptr, opt_backend},
        {"connect-ports", required_argument, nullptr, opt_connect_ports},
        {"max-connections", required_argument, nullptr, opt_max_connections},
        {"timeout-header", required_argument, nullptr, opt_timeout_header},
        {"timeout-idle", required_argument, nullptr, opt_timeout_idle},
        {"timeout-connect", required_argument, nullptr, opt_timeout_connect},
        {"timeout-response", required_argument, nullptr, opt_timeout_response},
        {"timeout-tunnel-idle", required_argument, nullptr, opt_timeout_tunnel_idle},
        {"splice", required_argument, nullptr, opt_splice},
        {"verbose", no_argument, nullptr, 'v'},
        {"help", no_argument, nullptr, 'h'},
        {"version", no_argument, nullptr, 'V'},
        {nullptr, 0, nullptr, 0},
    };

    CommandLine result;
    Config& config = result.config;
    config.connect_ports.set(443);
    ::opterr = 0;
    ::optind = 1;
    int opt;
    while ((opt = ::getopt_long(argc, argv, ":l:vhV", long_options, nullptr)) != -1) {
        switch (opt) {
        case 'l': config.listen.push_back(parse_listen("--listen", ::optarg)); break;
        case opt_auth: {
            std::string_view pair = ::optarg;
            auto colon = pair.find(':');
            if (colon == 0 || colon == std::string_view::npos)
                throw ConfigError("--auth: expected USER:PASS");
            config.auth.emplace_back(pair);
            break;
        }
        case opt_backend: config.backend = resolve_backend(::optarg); break;
        case opt_connect_ports: {
            auto ports = parse_port_list(::optarg);
            if (!ports)
                throw ConfigError(std::string("--connect-ports: '") + ::optarg +
                                  "' is not a comma-separated list of ports 1-65535 or 'any'");
            config.connect_ports = *ports;
            break;
        }
        case opt_max_connections: {
            std::string_view text = ::optarg;
            std::uint64_t value = 0;
            bool valid = !text.empty() && text.size() <= 9;
            for (char c : text) {
                if (c < '0' || c > '9') valid = false;
                else value = value * 10 + static_cast<std::uint64_t>(c - '0');
            }
            if (!valid || value == 0 || value > 10'000'000)
                throw ConfigError(std::string("--max-connections: '") + ::optarg +
                                  "' is not a number between 1 and 10000000");
            config.max_connections = static_cast<std::uint32_t>(value);
            break;
        }
        case opt_timeout_header: config.timeout_header_ms = parse_duration_option("--timeout-header", ::optarg); break;
        case opt_timeout_idle: config.timeout_idle_ms = parse_duration_option("--timeout-idle", ::optarg); break;
        case opt_timeout_connect: config.timeout_connect_ms = parse_duration_option("--timeout-connect", ::optarg); break;
        case opt_timeout_response: config.timeout_response_ms = parse_duration_option("--timeout-response", ::optarg); break;
        case opt_timeout_tunnel_idle: config.timeout_tunnel_idle_ms = parse_duration_option("--timeout-tunnel-idle", ::optarg); break;
        case opt_splice: {
            std::string_view value = ::optarg;
            if (value != "on" && value != "off")
                throw ConfigError(std::string("--splice: '") + ::optarg + "' is not on or off");
            config.splice = value == "on";
            break;
        }
        case 'v': config.verbose = true; break;
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
    if (config.listen.empty()) config.listen.push_back(*parse_ip_literal("127.0.0.1", 8888));
    return result;
}

}  // namespace cproxy
