// cproxy: start-up (command line, descriptor limit, sockets, signals) and the
// worker loop. Exceptions are used here only; the loop itself never throws.
#include <netinet/in.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include "cproxy/config.hpp"
#include "cproxy/log.hpp"
#include "cproxy/worker.hpp"

using namespace cproxy;

namespace {

// Descriptors kept out of the session budget: listeners, epoll, signalfd,
// eventfd, the spare, stdio, the resolver's lookups.
constexpr std::uint64_t reserved_descriptors = 64;

std::uint64_t raise_descriptor_limit() {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

WorkerLimits size_worker(Config& config, std::uint64_t descriptor_limit) {
    WorkerLimits limits{};
    // A tunnel direction holds a pipe (two descriptors) only while bytes are in
    // flight, so a pool of a few percent of the sessions covers busy tunnels.
    std::uint64_t pipes = std::min<std::uint64_t>(1024, descriptor_limit / 16);
    // Idle upstream connections kept for other sessions to reuse.
    std::uint64_t idle_upstreams = std::min<std::uint64_t>(256, descriptor_limit / 64);
    std::uint64_t reserve = reserved_descriptors + 2 * pipes + idle_upstreams;
    std::uint64_t fitting = descriptor_limit > reserve + 2 ? (descriptor_limit - reserve) / 2 : 1;
    if (config.max_connections == 0) {
        config.max_connections = static_cast<std::uint32_t>(std::min<std::uint64_t>(fitting, 1'000'000));
    } else if (config.max_connections > fitting) {
        log_warning("--max-connections %u may need up to %llu descriptors (2 per connection plus %llu "
                    "reserved) but the open-file limit is %llu; clients beyond what the limit allows "
                    "get 503",
                    config.max_connections,
                    static_cast<unsigned long long>(2ull * config.max_connections + reserve),
                    static_cast<unsigned long long>(reserve),
                    static_cast<unsigned long long>(descriptor_limit));
    }
    limits.max_connections = config.max_connections;
    limits.max_pipes = static_cast<std::uint32_t>(pipes);
    limits.max_idle_upstreams = static_cast<std::uint32_t>(idle_upstreams);
    return limits;
}

Fd open_listener(const SocketAddress& address) {
    Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (address.family() == AF_INET6)
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd.get(), address.get(), address.length) != 0)
        throw std::system_error(errno, std::generic_category(), "bind " + to_string(address));
    if (::listen(fd.get(), SOMAXCONN) != 0)
        throw std::system_error(errno, std::generic_category(), "listen " + to_string(address));
    return fd;
}

Fd block_stop_signals() {
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "sigprocmask");
    Fd fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "signalfd");
    return fd;
}

}  // namespace

int main(int argc, char** argv) {
    CommandLine command;
    try {
        command = parse_command_line(argc, argv);
    } catch (const ConfigError& error) {
        std::fprintf(stderr, "cproxy: %s\nTry 'cproxy --help' for more information.\n", error.what());
        return 2;
    }
    if (command.action == CommandAction::Help) {
        print_usage(stdout);
        return 0;
    }
    if (command.action == CommandAction::Version) {
        std::printf("cproxy %s\n", CPROXY_VERSION);
        return 0;
    }
    Config& config = command.config;
    try {
        std::uint64_t descriptor_limit = raise_descriptor_limit();
        WorkerLimits limits = size_worker(config, descriptor_limit);
        std::vector<Fd> listeners;
        std::string where;
        for (const SocketAddress& address : config.listen) {
            listeners.push_back(open_listener(address));
            SocketAddress bound;
            bound.length = sizeof bound.storage;
            ::getsockname(listeners.back().get(), bound.get(), &bound.length);
            where += (where.empty() ? "" : ", ") + to_string(bound);
        }
        Fd stop = block_stop_signals();
        Worker worker(config, limits, std::move(listeners), std::move(stop));
        std::printf("cproxy %s listening on %s\n", CPROXY_VERSION, where.c_str());
        std::fflush(stdout);
        log_info("up to %u client connections and %u splice pipes (open-file limit %llu)",
                 limits.max_connections, limits.max_pipes, static_cast<unsigned long long>(descriptor_limit));
        worker.run();
        const Counters& c = worker.counters();
        log_info("stopped: %llu connections accepted, %llu refused, %llu requests, %llu tunnels, "
                 "%llu failed, %llu replayed, %llu bytes in, %llu bytes out (%llu spliced)",
                 static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.refused),
                 static_cast<unsigned long long>(c.requests), static_cast<unsigned long long>(c.tunnels),
                 static_cast<unsigned long long>(c.failures), static_cast<unsigned long long>(c.replays),
                 static_cast<unsigned long long>(c.bytes_in),
                 static_cast<unsigned long long>(c.bytes_out), static_cast<unsigned long long>(c.spliced));
    } catch (const std::system_error& error) {
        log_error("%s", error.what());
        return 1;
    } catch (const std::exception& error) {
        log_error("%s", error.what());
        return 1;
    }
    return 0;
}
