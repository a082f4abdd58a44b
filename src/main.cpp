// cproxy: start-up (configuration, descriptor limit, sockets, log files,
// privileges, worker threads), then the main thread's only job: the signals
// that steer the workers (stop, reload, reopen logs, report). Exceptions are
// used here only; the workers' loops never throw.
#include <fcntl.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <system_error>

#include "cproxy/config.hpp"
#include "cproxy/log.hpp"
#include "cproxy/service.hpp"
#include "cproxy/worker_group.hpp"

using namespace cproxy;

namespace {

// Descriptors kept out of the session budget: stdio, log files, the signalfd,
// and per worker its listeners, epoll, eventfd, the spare, and the resolver's
// query sockets.
std::uint64_t reserved_descriptors(std::uint32_t workers) noexcept {
    return 32 + std::uint64_t{workers} * (Resolver::max_descriptors + 16);
}

// The CPUs this process may run on (taskset, cgroups), in order.
std::vector<int> usable_cpus() {
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) != 0) return {0};
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) cpus.push_back(cpu);
    if (cpus.empty()) cpus.push_back(0);
    return cpus;
}

// Worker i's part of a process-wide total: the remainder goes to the first ones.
std::uint32_t share(std::uint64_t total, std::uint32_t i, std::uint32_t workers) noexcept {
    return static_cast<std::uint32_t>(total / workers + (i < total % workers ? 1 : 0));
}

std::uint64_t raise_descriptor_limit() {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

// Splits the process's connections, pipes and idle upstream connections
// between `workers` (fewer if there are fewer connections than workers).
std::vector<WorkerLimits> size_workers(Config& config, std::uint64_t descriptor_limit, std::uint32_t workers) {
    // A tunnel direction holds a pipe (two descriptors) only while bytes are in
    // flight, so a pool of a few percent of the sessions covers busy tunnels.
    std::uint64_t pipes = std::min<std::uint64_t>(1024, descriptor_limit / 16);
    // Idle upstream connections kept for other sessions to reuse.
    std::uint64_t idle_upstreams =
        config.upstream_max_idle.value_or(std::min<std::uint64_t>(256, descriptor_limit / 64));
    std::uint64_t reserve = reserved_descriptors(workers) + 2 * pipes + idle_upstreams;
    std::uint64_t fitting = descriptor_limit > reserve + 2 ? (descriptor_limit - reserve) / 2 : 1;
    // With upstream_max_connections a client needs one descriptor and its
    // upstream connections are counted once per address; that bound is
    // assumed to hold for one address (a backend) when warning.
    std::uint64_t upstream = config.upstream_max_connections;
    std::uint64_t needed = 2ull * config.max_connections + reserve;
    if (upstream != 0)
        needed = config.max_connections + std::min<std::uint64_t>(upstream, config.max_connections) + reserve;
    if (config.max_connections == 0) {
        config.max_connections = static_cast<std::uint32_t>(std::min<std::uint64_t>(fitting, 1'000'000));
    } else if (needed > descriptor_limit) {
        log_warning("--max-connections %u may need up to %llu descriptors (%s plus %llu reserved) but the "
                    "open-file limit is %llu; clients beyond what the limit allows get 503",
                    config.max_connections, static_cast<unsigned long long>(needed),
                    upstream != 0 ? "1 per connection, upstream_max_connections per upstream address"
                                  : "2 per connection",
                    static_cast<unsigned long long>(reserve), static_cast<unsigned long long>(descriptor_limit));
    }
    if (workers > config.max_connections) {
        log_warning("%u workers for %u connections: starting %u", workers, config.max_connections,
                    config.max_connections);
        workers = config.max_connections;
    }
    std::vector<WorkerLimits> plan(workers);
    for (std::uint32_t i = 0; i < workers; ++i) {
        WorkerLimits& limits = plan[i];
        limits.max_connections = share(config.max_connections, i, workers);
        limits.max_pipes = share(pipes, i, workers);
        // Worker 0 has the stats listener: /metrics is about 1.1 KiB per worker.
        if (i == 0 && config.stats_listen) limits.stats_buffer_bytes = 8192 + 4096 * workers;
        limits.max_idle_upstreams = share(idle_upstreams, i, workers);
        limits.upstream_max_connections =
            config.upstream_max_connections == 0
                ? 0
                : std::max<std::uint32_t>(1, share(config.upstream_max_connections, i, workers));
        // Heads past a regular buffer are rare (big cookies, long URLs in
        // fields): a small pool of large buffers, one per 64 sessions, serves them.
        if (config.max_header_size > buffer_size - head_headroom) {
            limits.large_buffer_bytes = config.max_header_size + head_headroom;
            limits.large_buffers = std::clamp<std::uint32_t>(limits.max_connections / 64, 4, 256);
        }
    }
    return plan;
}

Fd bound_socket(const SocketAddress& address, bool reuse_port) {
    Fd fd(::socket(address.family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) throw std::system_error(errno, std::generic_category(), "socket");
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (reuse_port) ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    if (address.family() == AF_INET6)
        ::setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    if (::bind(fd.get(), address.get(), address.length) != 0)
        throw std::system_error(errno, std::generic_category(), "bind " + to_string(address));
    return fd;
}

SocketAddress local_address(const Fd& fd) {
    SocketAddress bound;
    bound.length = sizeof bound.storage;
    ::getsockname(fd.get(), bound.get(), &bound.length);
    return bound;
}

// One listening socket per worker on `address`: a SO_REUSEPORT group when
// there are several, on the port the first one got if `address` asks for any.
std::vector<Fd> open_listeners(SocketAddress address, std::uint32_t workers) {
    // A group would join any other same-user SO_REUSEPORT socket on the port
    // (a second cproxy started by mistake) and share its clients: a plain bind
    // first makes that an "address in use" error instead.
    if (workers > 1 && address.port() != 0) bound_socket(address, false);
    std::vector<Fd> group;
    for (std::uint32_t i = 0; i < workers; ++i) {
        group.push_back(bound_socket(address, workers > 1));
        if (::listen(group.back().get(), SOMAXCONN) != 0)
            throw std::system_error(errno, std::generic_category(), "listen " + to_string(address));
        if (i == 0) address = local_address(group.back());
    }
    return group;
}

// The signals the main thread handles, read from a signalfd. Blocked before
// any worker thread starts, so every thread inherits the mask and only the
// signalfd sees them.
Fd block_handled_signals() {
    ::signal(SIGPIPE, SIG_IGN);
    sigset_t signals;
    sigemptyset(&signals);
    for (int signal : {SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2}) sigaddset(&signals, signal);
    if (::sigprocmask(SIG_BLOCK, &signals, nullptr) != 0)
        throw std::system_error(errno, std::generic_category(), "sigprocmask");
    Fd fd(::signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC));
    if (!fd) throw std::system_error(errno, std::generic_category(), "signalfd");
    return fd;
}

void report(const LoadedConfig& loaded) {
    for (const std::string& warning : loaded.warnings) log_warning("%s", warning.c_str());
    for (const std::string& error : loaded.errors) log_error("%s", error.c_str());
}

// The addresses of the host's interfaces: under a wildcard listener, a
// request to any of them on the listening port comes back to this proxy.
std::vector<SocketAddress> read_host_addresses() {
    std::vector<SocketAddress> addresses;
    ifaddrs* list = nullptr;
    if (::getifaddrs(&list) != 0) {
        log_warning("cannot list the host's addresses for the loop check: %s", std::strerror(errno));
        return addresses;
    }
    for (ifaddrs* entry = list; entry; entry = entry->ifa_next) {
        if (!entry->ifa_addr) continue;
        int family = entry->ifa_addr->sa_family;
        if (family != AF_INET && family != AF_INET6) continue;
        SocketAddress address;
        address.length = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
        std::memcpy(&address.storage, entry->ifa_addr, address.length);
        addresses.push_back(unmapped(address));
    }
    ::freeifaddrs(list);
    return addresses;
}

// The default Via name: unique to this instance (two on one host differ by
// their listen address, so a chain of them is no loop), and revealing
// neither the host name nor the address: a hash of both.
std::string instance_pseudonym(const SocketAddress& first_listen) {
    char host[256] = {};
    ::gethostname(host, sizeof host - 1);
    std::string identity = std::string(host) + " " + to_string(first_listen);
    std::uint32_t hash = 2166136261u;  // FNV-1a
    for (char c : identity) hash = (hash ^ static_cast<unsigned char>(c)) * 16777619u;
    char name[24];
    std::snprintf(name, sizeof name, "cproxy-%08x", hash);
    return name;
}

// Settings bound to what start-up created (sockets, slab, identity, pid file):
// a reload keeps the running values and says so.
void keep_start_up_settings(const Config& running, Config& next) {
    std::string kept;
    auto keep = [&](bool differs, const char* name) {
        if (differs) kept += (kept.empty() ? "" : ", ") + std::string(name);
    };
    bool same_listen = running.listen.size() == next.listen.size();
    for (std::size_t i = 0; same_listen && i < next.listen.size(); ++i)
        same_listen = running.listen[i] == next.listen[i];
    keep(!same_listen, "listen");
    keep(next.stats_listen.has_value() != running.stats_listen.has_value() ||
             (next.stats_listen && !(*next.stats_listen == *running.stats_listen)),
         "stats_listen");
    next.stats_listen = running.stats_listen;
    keep(next.max_connections != 0 && next.max_connections != running.max_connections, "max_connections");
    keep(next.user != running.user, "user");
    keep(next.group != running.group, "group");
    keep(next.pid_file != running.pid_file, "pid_file");
    keep(next.max_header_size != running.max_header_size, "max_header_size");
    keep(next.upstream_max_idle != running.upstream_max_idle, "upstream_max_idle");
    next.upstream_max_idle = running.upstream_max_idle;
    keep(next.upstream_max_connections != running.upstream_max_connections, "upstream_max_connections");
    next.upstream_max_connections = running.upstream_max_connections;
    keep(next.workers != running.workers, "workers");
    next.workers = running.workers;
    keep(next.cpu_affinity != running.cpu_affinity, "cpu_affinity");
    next.cpu_affinity = running.cpu_affinity;
    keep(next.system_resolver != running.system_resolver, "resolver system");
    keep(next.dns_cache_size != running.dns_cache_size, "dns_cache_size");
    keep(next.hosts_file != running.hosts_file, "hosts_file");
    next.listen = running.listen;
    next.max_connections = running.max_connections;
    next.user = running.user;
    next.group = running.group;
    next.pid_file = running.pid_file;
    next.max_header_size = running.max_header_size;
    if (next.system_resolver != running.system_resolver) {
        next.dns_servers = running.dns_servers;
        next.system_resolver = running.system_resolver;
    }
    next.dns_cache_size = running.dns_cache_size;
    next.hosts_file = running.hosts_file;
    next.instance_name = running.instance_name;
    if (next.via_generated) next.via = next.instance_name;
    if (!kept.empty()) log_warning("reload: %s changed but take effect only at a restart", kept.c_str());
}

// SIGHUP: a new configuration for new requests, or the old one if the new one
// has any error.
void reload(const CommandLine& command, std::shared_ptr<const Config>& running, LogFiles& logs,
            WorkerGroup& workers) {
    notify_reloading();
    log_info("reloading the configuration");
    LoadedConfig loaded = load_config(command, default_config_file);
    report(loaded);
    if (!loaded.errors.empty()) {
        log_error("reload failed: %zu error%s; the running configuration stays", loaded.errors.size(),
                  loaded.errors.size() == 1 ? "" : "s");
        notify_service_manager("READY=1");
        return;
    }
    auto next = std::make_shared<Config>(std::move(loaded.config));
    keep_start_up_settings(*running, *next);
    next->host_addresses = read_host_addresses();
    // Checked again on what will run: the running listen addresses with the
    // new rules (the file's own listen line may have been loopback).
    std::string open_proxy = open_proxy_problem(*next);
    if (!open_proxy.empty()) {
        log_error("reload failed: %s; the running configuration stays", open_proxy.c_str());
        notify_service_manager("READY=1");
        return;
    }
    workers.broadcast(ControlMessage{ControlCommand::FlushAccessLog, nullptr, -1}, true);
    try {
        logs.open(next->access_log, next->error_log, next->log_level);
    } catch (const std::system_error& error) {
        log_error("reload failed: %s; the running configuration stays", error.what());
        notify_service_manager("READY=1");
        return;
    }
    // Once every worker has switched, nothing writes to the old log files.
    workers.broadcast(ControlMessage{ControlCommand::Reconfigure, next, logs.access_fd()}, true);
    logs.close_replaced();
    running = std::move(next);
    log_info("configuration reloaded%s%s", loaded.file.empty() ? "" : " from ", loaded.file.c_str());
    notify_service_manager("READY=1");
}

void log_counters(const Counters& c) {
    log_info("stopped: %llu connections accepted, %llu refused, %llu requests, %llu tunnels, "
             "%llu failed, %llu replayed, %llu bytes in, %llu bytes out (%llu spliced)",
             static_cast<unsigned long long>(c.accepted), static_cast<unsigned long long>(c.refused),
             static_cast<unsigned long long>(c.requests), static_cast<unsigned long long>(c.tunnels),
             static_cast<unsigned long long>(c.failures), static_cast<unsigned long long>(c.replays),
             static_cast<unsigned long long>(c.bytes_in), static_cast<unsigned long long>(c.bytes_out),
             static_cast<unsigned long long>(c.spliced));
}

// What -t can check beyond the configuration itself without starting: that the
// log files and the pid file can be written.
std::vector<std::string> check_start_up_files(const Config& config) {
    std::vector<std::string> problems;
    // An existing file must open for writing; a new one needs a writable
    // directory. Nothing is created: a root-owned file left by `sudo cproxy
    // -t` would stop the service's own user from opening it.
    auto check = [&](const std::string& path, const char* what) {
        Fd file(::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC | O_NOCTTY));
        std::string where = std::string(what) + " " + path + ": ";
        if (file || errno != ENOENT) {
            if (!file) problems.push_back("cannot open " + where + std::strerror(errno));
            return;
        }
        auto slash = path.rfind('/');
        std::string directory =
            slash == std::string::npos ? "." : path.substr(0, std::max<std::size_t>(slash, 1));
        if (::access(directory.c_str(), W_OK) != 0)
            problems.push_back("cannot create " + where + std::strerror(errno));
    };
    for (const std::string* path : {&config.access_log, &config.error_log})
        if (!path->empty() && *path != "stderr" && *path != "syslog") check(*path, "log file");
    if (!config.pid_file.empty()) check(config.pid_file, "pid file");
    return problems;
}

std::string describe(const std::vector<std::vector<Fd>>& listeners) {
    std::string where;
    for (const std::vector<Fd>& group : listeners)
        where += (where.empty() ? "" : ", ") + to_string(local_address(group.front()));
    return where;
}

// The main thread from here on: signals in, control messages out, until
// every worker's loop has ended.
void steer(const CommandLine& command, std::shared_ptr<const Config>& running, LogFiles& logs,
           WorkerGroup& workers, const Fd& signals) {
    bool stopping = false;
    pollfd watched[] = {{signals.get(), POLLIN, 0}, {workers.finished_fd(), POLLIN, 0}};
    while (workers.running()) {
        if (::poll(watched, 2, -1) < 0 && errno != EINTR) {
            log_error("poll: %s; stopping", std::strerror(errno));
            workers.broadcast(ControlMessage{ControlCommand::StopNow, nullptr, -1}, false);
            return;
        }
        signalfd_siginfo info;
        while (::read(signals.get(), &info, sizeof info) == static_cast<ssize_t>(sizeof info)) {
            int signal = static_cast<int>(info.ssi_signo);
            if (signal == SIGHUP && stopping) {
                log_info("reload ignored: stopping");
            } else if (signal == SIGHUP) {
                reload(command, running, logs, workers);
            } else if (signal == SIGUSR2) {
                workers.broadcast(ControlMessage{ControlCommand::LogResources, nullptr, -1}, true);
            } else if (signal == SIGUSR1) {
                workers.broadcast(ControlMessage{ControlCommand::FlushAccessLog, nullptr, -1}, true);
                logs.reopen();
                log_info("log files reopened");
            } else if (stopping) {
                log_info("second stop signal: closing %llu open connections now",
                         static_cast<unsigned long long>(workers.open_connections()));
                workers.broadcast(ControlMessage{ControlCommand::StopNow, nullptr, -1}, false);
            } else {
                stopping = true;
                notify_service_manager("STOPPING=1");
                log_info("stopping: %llu connections open, waiting up to %u ms for them",
                         static_cast<unsigned long long>(workers.open_connections()), running->shutdown_timeout_ms);
                workers.broadcast(ControlMessage{ControlCommand::BeginShutdown, nullptr, -1}, false);
            }
        }
    }
}

int run_service(const CommandLine& command, std::shared_ptr<Config> config, LogFiles& logs, Fd signals) {
    std::uint64_t descriptor_limit = raise_descriptor_limit();
    std::vector<int> cpus = usable_cpus();
    std::uint32_t count = config->workers != 0 ? config->workers : static_cast<std::uint32_t>(cpus.size());
    std::vector<WorkerLimits> plan = size_workers(*config, descriptor_limit, count);
    count = static_cast<std::uint32_t>(plan.size());
    std::vector<std::vector<Fd>> listeners;
    for (const ListenAddress& listen : config->listen) listeners.push_back(open_listeners(listen.address, count));
    std::string where = describe(listeners);
    config->instance_name = instance_pseudonym(local_address(listeners.front().front()));
    if (config->via_generated) config->via = config->instance_name;
    config->host_addresses = read_host_addresses();
    Fd stats_listener;
    std::string stats_where;
    if (config->stats_listen) {
        stats_listener = std::move(open_listeners(*config->stats_listen, 1).front());
        stats_where = to_string(local_address(stats_listener));
    }
    PidFile pid_file;
    if (!config->pid_file.empty()) pid_file.write(config->pid_file);
    if (!config->user.empty()) {
        if (::geteuid() == 0) {
            Identity identity = look_up_identity(config->user, config->group);
            logs.change_owner(identity.uid, identity.gid);
            drop_privileges(identity);
        } else {
            log_warning("user %s: not started as root, so running as uid %u", config->user.c_str(),
                        static_cast<unsigned>(::geteuid()));
        }
    }
    std::vector<WorkerSetup> setups;
    for (std::uint32_t i = 0; i < count; ++i) {
        std::vector<Fd> own;
        for (std::vector<Fd>& group : listeners) own.push_back(std::move(group[i]));
        setups.push_back(WorkerSetup{i, plan[i], std::move(own), i == 0 ? std::move(stats_listener) : Fd(), {},
                                     logs.access_fd()});
    }
    std::shared_ptr<const Config> running = std::move(config);
    WorkerGroup workers(running, std::move(setups));
    workers.start(running->cpu_affinity ? cpus : std::vector<int>{});
    std::printf("cproxy %s listening on %s\n", CPROXY_VERSION, where.c_str());
    std::fflush(stdout);
    if (!stats_where.empty()) std::fprintf(stderr, "cproxy: stats on %s\n", stats_where.c_str());
    std::uint32_t pipes = 0;
    for (const WorkerLimits& limits : plan) pipes += limits.max_pipes;
    log_info("up to %u client connections and %u splice pipes in %u worker%s (open-file limit %llu)",
             running->max_connections, pipes, count, count == 1 ? "" : "s",
             static_cast<unsigned long long>(descriptor_limit));
    notify_service_manager("READY=1");

    steer(command, running, logs, workers, signals);
    workers.join();
    if (std::uint32_t open = workers.open_sessions()) log_info("closing %u connections still open", open);
    workers.close_all_sessions();  // their requests count in the totals below
    log_counters(workers.counters());
    return 0;
}

int serve(const CommandLine& command, std::shared_ptr<Config> config) {
    // Blocked first: a SIGHUP or logrotate's SIGUSR1 during start-up must not
    // kill the process with the default action.
    Fd signals = block_handled_signals();
    LogFiles logs;
    logs.open(config->access_log, config->error_log, config->log_level);
    try {
        return run_service(command, std::move(config), logs, std::move(signals));
    } catch (const std::exception& error) {
        log_error("%s", error.what());  // to the configured error log, still open here
        return 1;
    }
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
    LoadedConfig loaded = load_config(command, default_config_file);
    for (const std::string& warning : loaded.warnings)
        std::fprintf(stderr, "cproxy: warning: %s\n", warning.c_str());
    for (const std::string& error : loaded.errors) std::fprintf(stderr, "cproxy: %s\n", error.c_str());
    std::string what = loaded.file.empty() ? std::string("configuration") : "configuration " + loaded.file;
    if (!loaded.errors.empty()) {
        std::fprintf(stderr, "cproxy: %s: %zu error%s\n", what.c_str(), loaded.errors.size(),
                     loaded.errors.size() == 1 ? "" : "s");
        return 2;
    }
    if (command.action == CommandAction::TestConfig) {
        std::vector<std::string> problems = check_start_up_files(loaded.config);
        for (const std::string& problem : problems) std::fprintf(stderr, "cproxy: %s\n", problem.c_str());
        if (!problems.empty()) {
            std::fprintf(stderr, "cproxy: %s: %zu error%s\n", what.c_str(), problems.size(),
                         problems.size() == 1 ? "" : "s");
            return 2;
        }
        std::printf("cproxy: %s is ok\n", what.c_str());
        return 0;
    }
    try {
        return serve(command, std::make_shared<Config>(std::move(loaded.config)));
    } catch (const std::exception& error) {
        log_error("%s", error.what());
        return 1;
    }
}
