// Several workers (--workers N, -w N, workers N|auto): one event loop per
// thread, each with its own SO_REUSEPORT listener on every listen address
// (all on the one port the listen line names), its own sessions and
// counters; the kernel spreads clients across them. max_connections is the
// process total, split between the workers; the stats endpoint reports every
// worker; signals (SIGHUP, SIGUSR1, SIGUSR2, SIGTERM) apply to all of them;
// cpu_affinity pins worker i to the i-th CPU of the inherited mask.
//
// Which worker a client lands on is up to the kernel's hash of the 4-tuple,
// so the tests ask the proxy: a connection is opened between two /metrics
// scrapes and the worker whose accepted (or refused) counter moved took it.
#include "stats_client.hpp"

#include <algorithm>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sched.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

const std::string kAccepted = "cproxy_connections_accepted_total";
const std::string kRefused = "cproxy_connections_refused_total";
const std::string kOpen = "cproxy_connections_open";

// The value of the one sample `name` of worker `worker` with the `extra`
// labels (REQUIREd to exist exactly once).
double sample_of(const Exposition& e, const std::string& name, int worker, const Labels& extra = {})
{
    const Sample* found = nullptr;
    int matches = 0;
    for (const auto& s : e.samples) {
        if (s.name != name)
            continue;
        auto w = s.labels.find("worker");
        if (w == s.labels.end() || w->second != std::to_string(worker))
            continue;
        bool all = true;
        for (const auto& [k, v] : extra) {
            auto l = s.labels.find(k);
            all = all && l != s.labels.end() && l->second == v;
        }
        if (all) {
            found = &s;
            ++matches;
        }
    }
    INFO("sample " << name << " of worker " << worker << " with " << extra.size() << " extra label(s)");
    REQUIRE(matches == 1);
    return found->value;
}

// Worker 0's, 1's, ... value of `name`.
std::vector<double> per_worker(const Exposition& e, const std::string& name, int workers,
                               const Labels& extra = {})
{
    std::vector<double> v;
    for (int w = 0; w < workers; ++w)
        v.push_back(sample_of(e, name, w, extra));
    return v;
}

// Requests ended by each worker, all status classes.
std::vector<double> requests_per_worker(const Exposition& e, int workers)
{
    std::vector<double> v(static_cast<std::size_t>(workers), 0.0);
    for (const auto& code : kStatusClasses) {
        auto c = per_worker(e, "cproxy_requests_total", workers, {{"code", code}});
        for (int w = 0; w < workers; ++w)
            v[static_cast<std::size_t>(w)] += c[static_cast<std::size_t>(w)];
    }
    return v;
}

double sum(const std::vector<double>& v)
{
    double s = 0;
    for (double x : v)
        s += x;
    return s;
}

std::vector<double> minus(const std::vector<double>& a, const std::vector<double>& b)
{
    std::vector<double> d;
    for (std::size_t i = 0; i < a.size(); ++i)
        d.push_back(a[i] - b.at(i));
    return d;
}

std::string show(const std::vector<double>& v)
{
    std::ostringstream out;
    out << "[";
    for (std::size_t i = 0; i < v.size(); ++i)
        out << (i ? ", " : "") << "worker " << i << ": " << v[i];
    out << "]";
    return out.str();
}

std::string get(const Origin& o, const std::string& path, const std::string& extra = "")
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n" + extra + "\r\n";
}

std::string basic(const std::string& user_pass)
{
    return "Proxy-Authorization: Basic " + base64(user_pass) + "\r\n";
}

RunResult run_proxy(std::vector<std::string> args)
{
    args.insert(args.begin(), proxy_binary());
    if (args[0].find('/') == std::string::npos)
        args[0] = "./" + args[0];
    return run_command(args, kWait);
}

// A connection to 127.0.0.1:`port` from the loopback address `source`.
Conn connect_from(const std::string& source, std::uint16_t port)
{
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    REQUIRE(fd.valid());
    sockaddr_in from{};
    from.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, source.c_str(), &from.sin_addr) == 1);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) != 0) {
        REQUIRE(errno == EINPROGRESS);
        pollfd p{fd.get(), POLLOUT, 0};
        REQUIRE(::poll(&p, 1, static_cast<int>(kWait.count())) == 1);
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
        INFO("connect from " << source << ": " << std::strerror(err));
        REQUIRE(err == 0);
    }
    return Conn(std::move(fd));
}

// Finds out which worker takes each new client connection. Every connect is
// bracketed by two /metrics scrapes over one kept-alive stats connection
// (stats connections are not counted as accepted): the one worker whose
// accepted or refused counter moved, by one, took it. Nothing else may
// connect to the proxy while a connect() is under way.
class Landing {
public:
    struct Landed {
        Conn conn;
        int worker = -1;
        bool refused = false; // turned away (503) rather than accepted
    };

    Landing(Proxy& p, int workers) : p_(p), workers_(workers), stats_(stats_port(p)) {}

    Landed connect(const std::string& source = "127.0.0.1")
    {
        Exposition before = stats_.metrics();
        auto accepted0 = per_worker(before, kAccepted, workers_);
        auto refused0 = per_worker(before, kRefused, workers_);
        double total0 = sum(accepted0) + sum(refused0);
        Landed l{source == "127.0.0.1" ? p_.connect() : connect_from(source, p_.port())};
        ++opened_;
        last_ = stats_.metrics_when([&](const Exposition& e) {
            return sum(per_worker(e, kAccepted, workers_)) + sum(per_worker(e, kRefused, workers_)) > total0;
        });
        auto accepted = minus(per_worker(last_, kAccepted, workers_), accepted0);
        auto refused = minus(per_worker(last_, kRefused, workers_), refused0);
        INFO("connection " << opened_ << ": accepted by " << show(accepted) << ", refused by " << show(refused)
                           << "; stats reconnects " << stats_.reconnects);
        REQUIRE(sum(accepted) + sum(refused) == 1);
        for (int w = 0; w < workers_; ++w) {
            if (accepted[static_cast<std::size_t>(w)] == 1 || refused[static_cast<std::size_t>(w)] == 1) {
                l.worker = w;
                l.refused = refused[static_cast<std::size_t>(w)] == 1;
            }
        }
        REQUIRE(l.worker >= 0);
        return l;
    }

    // Connections accepted by each worker: need[w] for worker w, bounded by
    // `attempts` connects. Extra ones are closed, and the proxy is let see
    // that before the next connect, so that they do not fill a small worker.
    // REQUIREs that every connection was accepted.
    std::vector<std::vector<Conn>> gather(const std::vector<std::size_t>& need, int attempts = 60)
    {
        std::vector<std::vector<Conn>> got(static_cast<std::size_t>(workers_));
        auto done = [&] {
            for (std::size_t w = 0; w < need.size(); ++w)
                if (got[w].size() < need[w])
                    return false;
            return true;
        };
        for (int i = 0; i < attempts && !done(); ++i) {
            Landed l = connect();
            REQUIRE_FALSE(l.refused);
            auto w = static_cast<std::size_t>(l.worker);
            if (w < need.size() && got[w].size() < need[w]) {
                got[w].push_back(std::move(l.conn));
                continue;
            }
            double open = sample_of(last_, kOpen, l.worker);
            l.conn.close();
            last_ = stats_.metrics_when(
                [&](const Exposition& e) { return sample_of(e, kOpen, l.worker) < open; });
            INFO("an extra connection on worker " << w << " was closed");
            REQUIRE(sample_of(last_, kOpen, l.worker) < open);
        }
        std::ostringstream have;
        for (std::size_t w = 0; w < got.size(); ++w)
            have << " worker " << w << ": " << got[w].size();
        INFO("connections gathered in " << attempts << " attempts:" << have.str());
        REQUIRE(done());
        return got;
    }

    StatsClient& stats() { return stats_; }
    // The scrape taken after the last connect.
    const Exposition& last() const { return last_; }
    // Client connections opened through connect().
    int opened() const { return opened_; }

private:
    Proxy& p_;
    int workers_;
    StatsClient stats_;
    Exposition last_;
    int opened_ = 0;
};

// The "info: up to T client connections and P splice pipes in N worker(s)
// (open-file limit L)" line: its numbers, or nullopt when there is no such
// complete line.
struct UpTo {
    long connections = -1, pipes = -1, workers = -1, limit = -1;
    std::string line;
};

std::optional<UpTo> up_to_line(const std::string& err)
{
    std::size_t at = err.find("info: up to ");
    if (at == std::string::npos || err.find('\n', at) == std::string::npos)
        return std::nullopt;
    UpTo u;
    u.line = err.substr(at, err.find('\n', at) - at);
    char noun[16] = {};
    int end = 0;
    if (std::sscanf(u.line.c_str(),
                    "info: up to %ld client connections and %ld splice pipes in %ld %15[a-z] (open-file limit "
                    "%ld)%n",
                    &u.connections, &u.pipes, &u.workers, noun, &u.limit, &end) != 5 ||
        static_cast<std::size_t>(end) != u.line.size())
        return std::nullopt;
    // "1 worker", "2 workers".
    if (std::string(noun) != (u.workers == 1 ? "worker" : "workers"))
        return std::nullopt;
    return u;
}

UpTo wait_up_to(Proxy& p)
{
    p.wait_err([](const std::string& err) { return up_to_line(err).has_value(); });
    auto u = up_to_line(p.err());
    INFO("proxy stderr:\n" << p.err());
    REQUIRE(u);
    return *u;
}

// Threads of `pid` named cproxy-wI, by I: thread id and Cpus_allowed_list.
struct WorkerThread {
    std::string tid, cpus;
};

std::string proc_field(const std::string& status_path, const std::string& key)
{
    std::ifstream in(status_path);
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + ":", 0) == 0) {
            std::string v = line.substr(key.size() + 1);
            v.erase(0, v.find_first_not_of(" \t"));
            return v;
        }
    return "";
}

std::map<int, WorkerThread> worker_threads(pid_t pid)
{
    std::map<int, WorkerThread> out;
    std::error_code ec;
    const std::string dir = "/proc/" + std::to_string(pid) + "/task";
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::string comm = read_file(it->path().string() + "/comm");
        while (!comm.empty() && (comm.back() == '\n' || comm.back() == ' '))
            comm.pop_back();
        const std::string prefix = "cproxy-w";
        if (comm.rfind(prefix, 0) != 0 || comm.size() == prefix.size() ||
            comm.find_first_not_of("0123456789", prefix.size()) != std::string::npos)
            continue;
        int i = std::stoi(comm.substr(prefix.size()));
        WorkerThread t{it->path().filename().string(), proc_field(it->path().string() + "/status",
                                                                  "Cpus_allowed_list")};
        if (out.count(i))
            t.tid += " (and thread " + out[i].tid + " of the same name)";
        out[i] = t;
    }
    return out;
}

std::string describe(const std::map<int, WorkerThread>& threads)
{
    std::ostringstream out;
    for (const auto& [i, t] : threads)
        out << " cproxy-w" << i << " tid " << t.tid << " cpus " << t.cpus << ";";
    return out.str();
}

// The calling thread's CPU mask, set for the lifetime of the guard (a child
// spawned meanwhile inherits it), then restored.
class AffinityGuard {
public:
    explicit AffinityGuard(const std::vector<int>& cpus)
    {
        ok_ = ::sched_getaffinity(0, sizeof saved_, &saved_) == 0;
        cpu_set_t set;
        CPU_ZERO(&set);
        for (int c : cpus)
            CPU_SET(c, &set);
        ok_ = ok_ && ::sched_setaffinity(0, sizeof set, &set) == 0;
    }
    ~AffinityGuard() { ::sched_setaffinity(0, sizeof saved_, &saved_); }
    bool ok() const { return ok_; }

private:
    cpu_set_t saved_{};
    bool ok_ = false;
};

// The CPUs this thread may run on.
std::vector<int> usable_cpus()
{
    cpu_set_t set;
    CPU_ZERO(&set);
    std::vector<int> cpus;
    if (::sched_getaffinity(0, sizeof set, &set) != 0)
        return cpus;
    for (int c = 0; c < CPU_SETSIZE; ++c)
        if (CPU_ISSET(c, &set))
            cpus.push_back(c);
    return cpus;
}

// Listening TCP sockets of `pid` bound to host:port ("127.0.0.1:8080").
int listening_sockets(pid_t pid, const std::string& address)
{
    constexpr int kTcpListen = 10;
    auto mine = socket_inodes(pid);
    std::set<unsigned long> inodes(mine.begin(), mine.end());
    int n = 0;
    for (const auto& s : tcp_sockets())
        if (s.state == kTcpListen && s.local == address && inodes.count(s.inode))
            ++n;
    return n;
}

// The stopped line's numbers: accepted, refused, requests, tunnels, failed,
// replayed, bytes in, bytes out, spliced.
std::optional<std::vector<unsigned long long>> stopped_counts(const std::string& err, std::string& line)
{
    std::size_t at = err.find("info: stopped: ");
    if (at == std::string::npos)
        return std::nullopt;
    line = err.substr(at, err.find('\n', at) - at);
    std::vector<unsigned long long> v(9);
    int n = std::sscanf(line.c_str(),
                        "info: stopped: %llu connections accepted, %llu refused, %llu requests, %llu tunnels, "
                        "%llu failed, %llu replayed, %llu bytes in, %llu bytes out (%llu spliced)",
                        &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8]);
    if (n != 9)
        return std::nullopt;
    return v;
}

// True when nothing accepts connections on `port` any more (refused).
bool connect_refused(std::uint16_t port, int& connected)
{
    try {
        Conn c = connect_to(port, "127.0.0.1", Ms(500));
        ++connected;
        return false;
    } catch (const std::runtime_error&) {
        return true;
    }
}

} // namespace

TEST_CASE("integration: workers: clients are spread over both workers; /metrics and /stats report each",
          "[integration][workers]")
{
    constexpr int kWorkers = 2;
    constexpr int kClients = 40;
    Origin o(static_origin("spread"));
    Proxy p(proxy_args({"--workers", "2", "--stats-listen", "127.0.0.1:0"}));
    StatsClient s(stats_port(p));
    Exposition before = s.metrics();

    // One sample per worker (and label value) for every family, and no
    // worker besides 0 and 1.
    std::set<std::string> workers_seen;
    for (const auto& sample : before.samples) {
        auto w = sample.labels.find("worker");
        INFO("sample " << sample.name);
        REQUIRE(w != sample.labels.end());
        workers_seen.insert(w->second);
    }
    CHECK(workers_seen == std::set<std::string>{"0", "1"});
    for (const auto& f : kMetricFamilies) {
        INFO("family " << f.name);
        CHECK(before.types[f.name] == f.type);
        for (int w = 0; w < kWorkers; ++w) {
            INFO("worker " << w);
            if (f.label.empty()) {
                sample_of(before, f.name, w);
            } else {
                for (const auto& v : f.values)
                    sample_of(before, f.name, w, {{f.label, v}});
            }
        }
    }
    // Only the stats connection is open.
    CHECK(sum(per_worker(before, kOpen, kWorkers)) == 1);

    for (int i = 0; i < kClients; ++i) {
        INFO("client " << i);
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/c" + std::to_string(i), "Connection: close\r\n"));
        REQUIRE(r);
        REQUIRE(r->status == 200);
        CHECK(r->body == "spread");
        CHECK(c.wait_closed(Ms(3000)));
    }
    auto requests0 = requests_per_worker(before, kWorkers);
    Exposition after = s.metrics_when([&](const Exposition& e) {
        return sum(requests_per_worker(e, kWorkers)) - sum(requests0) >= kClients &&
               sum(per_worker(e, kOpen, kWorkers)) == 1;
    });
    auto accepted = minus(per_worker(after, kAccepted, kWorkers), per_worker(before, kAccepted, kWorkers));
    auto served = minus(requests_per_worker(after, kWorkers), requests0);
    INFO("accepted " << show(accepted) << "; requests " << show(served) << "; stats reconnects "
                     << s.reconnects);
    REQUIRE(s.reconnects == 0);
    CHECK(sum(accepted) == kClients);
    CHECK(accepted[0] > 0);
    CHECK(accepted[1] > 0);
    // Each client made one request on the worker that accepted it.
    CHECK(served == accepted);
    CHECK(sum(per_worker(after, kRefused, kWorkers)) == sum(per_worker(before, kRefused, kWorkers)));
    CHECK(sum(per_worker(after, kOpen, kWorkers)) == 1);

    // /stats: the totals are the sums over the workers array, whose entries
    // match /metrics (the proxy is quiet now).
    Json j = s.stats();
    Exposition m = s.metrics();
    INFO("/stats reported at about the same time as /metrics");
    REQUIRE(j.kind == Json::Kind::Object);
    const Json* workers = j.get("workers");
    REQUIRE(workers);
    REQUIRE(workers->kind == Json::Kind::Array);
    REQUIRE(workers->items.size() == kWorkers);
    double successful = 0, failed = 0, bandwidth = 0;
    for (int w = 0; w < kWorkers; ++w) {
        INFO("workers[" << w << "]");
        const Json& item = workers->items[static_cast<std::size_t>(w)];
        REQUIRE(item.kind == Json::Kind::Object);
        CHECK(count_of(item.get("worker")) == w);
        const Json* req = item.get("requests");
        REQUIRE(req);
        REQUIRE(req->kind == Json::Kind::Object);
        for (const auto& code : kStatusClasses) {
            INFO("requests " << code);
            CHECK(count_of(req->get(code)) == sample_of(m, "cproxy_requests_total", w, {{"code", code}}));
        }
        double unanswered = count_of(item.get("requests_unanswered"));
        CHECK(unanswered >= 0);
        successful += count_of(req->get("1xx")) + count_of(req->get("2xx")) + count_of(req->get("3xx"));
        failed += count_of(req->get("4xx")) + count_of(req->get("5xx")) + unanswered;
        double in = count_of(item.get("bytes_in")), out = count_of(item.get("bytes_out"));
        CHECK(in == sample_of(m, "cproxy_bytes_total", w, {{"direction", "in"}}));
        CHECK(out == sample_of(m, "cproxy_bytes_total", w, {{"direction", "out"}}));
        bandwidth += in + out;
        CHECK(count_of(item.get("relayed_bytes_splice")) ==
              sample_of(m, "cproxy_relayed_bytes_total", w, {{"method", "splice"}}));
        CHECK(count_of(item.get("relayed_bytes_copy")) ==
              sample_of(m, "cproxy_relayed_bytes_total", w, {{"method", "copy"}}));
        for (const auto& f : kMetricFamilies) {
            if (!f.label.empty() || f.name == "cproxy_upstream_idle_connections")
                continue; // the labelled ones are above; parked upstreams expire on their own
            std::string key = f.name.substr(std::string("cproxy_").size());
            INFO("key " << key);
            CHECK(count_of(item.get(key)) == sample_of(m, f.name, w));
        }
    }
    CHECK(count_of(j.get("successful_visits")) == successful);
    CHECK(count_of(j.get("failed_visits")) == failed);
    CHECK(count_of(j.get("total_requests")) == successful + failed);
    CHECK(count_of(j.get("bandwidth_usage")) == bandwidth);
    CHECK(count_of(j.get("total_requests")) >= kClients);
    CHECK(successful == sum(served) + sum(requests0));
}

TEST_CASE("integration: workers: right from the start, /metrics and /stats name every worker once",
          "[integration][workers]")
{
    // Scraped as soon as the stats line is out, when some worker may not
    // have run its loop yet: it is reported (with zeros) under its own number.
    constexpr int kWorkers = 4;
    for (int round = 0; round < 5; ++round) {
        INFO("round " << round << ", -w " << kWorkers);
        Proxy p(proxy_args({"-w", std::to_string(kWorkers), "--stats-listen", "127.0.0.1:0"}));
        StatsClient s(stats_port(p));
        auto r = s.request("GET", "/metrics");
        REQUIRE(r);
        INFO("/metrics:\n" << r->body);
        REQUIRE(r->status == 200);
        std::string error;
        auto e = parse_exposition(r->body, error);
        INFO("parse error: " << error);
        REQUIRE(e);
        std::set<std::string> seen;
        for (const auto& sample : e->samples)
            if (sample.labels.count("worker"))
                seen.insert(sample.labels.at("worker"));
        CHECK(seen == std::set<std::string>{"0", "1", "2", "3"});
        for (int w = 0; w < kWorkers; ++w)
            sample_of(*e, kAccepted, w);

        Json j = s.stats();
        const Json* workers = j.get("workers");
        REQUIRE(workers);
        REQUIRE(workers->kind == Json::Kind::Array);
        REQUIRE(workers->items.size() == kWorkers);
        for (int w = 0; w < kWorkers; ++w)
            CHECK(count_of(workers->items[static_cast<std::size_t>(w)].get("worker")) == w);
    }
}

// Each worker adds about 1.1 KiB to /metrics: with 16 the text is larger than
// a relay buffer, and still answered whole.
TEST_CASE("integration: workers: with 16 workers /metrics and /stats carry every worker's series",
          "[integration][workers]")
{
    constexpr int kWorkers = 16;
    Proxy p(proxy_args({"-w", std::to_string(kWorkers), "--stats-listen", "127.0.0.1:0"}));
    StatsClient s(stats_port(p));
    auto r = s.request("GET", "/metrics");
    REQUIRE(r);
    REQUIRE(r->status == 200);
    CHECK(r->body.size() > 16384);
    std::string error;
    auto e = parse_exposition(r->body, error);
    INFO("parse error: " << error);
    REQUIRE(e);
    std::set<std::string> seen;
    for (const auto& sample : e->samples)
        if (sample.labels.count("worker"))
            seen.insert(sample.labels.at("worker"));
    CHECK(seen.size() == kWorkers);
    for (int w = 0; w < kWorkers; ++w)
        sample_of(*e, kAccepted, w);
    Json j = s.stats();
    const Json* workers = j.get("workers");
    REQUIRE(workers);
    CHECK(workers->items.size() == kWorkers);
}

TEST_CASE("integration: workers: all workers listen on the one port the listen line names",
          "[integration][workers]")
{
    Origin o(static_origin("same port"));
    {
        Proxy p(proxy_args({"-w", "2"}));
        INFO("listen line: " << p.listen_line());
        REQUIRE(p.listeners().size() == 1);
        std::string address = "127.0.0.1:" + std::to_string(p.port());
        // One SO_REUSEPORT listener per worker, both on the printed port.
        CHECK(listening_sockets(p.pid(), address) == 2);
        for (int i = 0; i < 40; ++i) {
            INFO("client " << i);
            Conn c = p.connect();
            auto r = c.roundtrip(get(o, "/" + std::to_string(i), "Connection: close\r\n"));
            REQUIRE(r);
            CHECK(r->status == 200);
            CHECK(r->body == "same port");
        }
    }
    {
        // Two listen addresses, each with port 0: each gets one port, shared
        // by both workers' listeners.
        Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:0", "-l", "127.0.0.2:0", "-w", "2"});
        INFO("listen line: " << p.listen_line());
        REQUIRE(p.listeners().size() == 2);
        for (const auto& [host, port] : p.listeners()) {
            std::string address = host + ":" + std::to_string(port);
            INFO("listener " << address);
            CHECK(listening_sockets(p.pid(), address) == 2);
            for (int i = 0; i < 10; ++i) {
                Conn c = connect_to(port, host);
                auto r = c.roundtrip(get(o, "/" + std::to_string(i), "Connection: close\r\n"));
                REQUIRE(r);
                CHECK(r->status == 200);
            }
        }
    }
}

TEST_CASE("integration: workers: a slow upstream on one worker does not hold up the other",
          "[integration][workers]")
{
    constexpr Ms kSlow{3000};
    Origin o(http_origin([&](const HttpRequest& r) {
        bool slow = r.target.find("/slow") != std::string::npos;
        return Reply{http_response(200, (slow ? "slow " : "fast ") + r.target), false, slow ? kSlow : Ms(0)};
    }));
    Proxy p(proxy_args({"-w", "2", "--stats-listen", "127.0.0.1:0"}));
    Landing land(p, 2);
    // Worker 0 gets the slow requests, worker 1 the quick ones.
    auto conns = land.gather({3, 3});
    auto& on_a = conns[0];
    auto& on_b = conns[1];
    Exposition quiet = land.stats().metrics();

    auto slow_sent = Clock::now();
    for (std::size_t i = 0; i < on_a.size(); ++i)
        REQUIRE(on_a[i].send_all(get(o, "/slow/" + std::to_string(i))));
    REQUIRE(o.wait_requests(on_a.size()));

    for (std::size_t i = 0; i < on_b.size(); ++i) {
        INFO("quick request " << i << " on worker 1");
        auto start = Clock::now();
        auto r = on_b[i].roundtrip(get(o, "/fast/" + std::to_string(i)), Ms(2000));
        long long took = elapsed_ms(start);
        INFO("took " << took << " ms");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "fast /fast/" + std::to_string(i));
        CHECK(took < 500);
    }
    // Well inside the slow window: the slow answers have not come yet.
    long long window = elapsed_ms(slow_sent);
    INFO("quick requests done " << window << " ms after the slow ones were sent");
    CHECK(window < kSlow.count() - 500);
    for (auto& c : on_a) {
        CHECK(c.fill(Ms(0)) == -2);
        CHECK(c.buffer().empty());
    }
    // The quick ones were counted on worker 1; worker 0 has ended none yet.
    Exposition mid = land.stats().metrics_when([&](const Exposition& e) {
        return requests_per_worker(e, 2)[1] - requests_per_worker(quiet, 2)[1] >= 3;
    });
    auto moved = minus(requests_per_worker(mid, 2), requests_per_worker(quiet, 2));
    INFO("requests ended while the slow ones wait: " << show(moved));
    CHECK(moved[0] == 0);
    CHECK(moved[1] == 3);
    CHECK(sample_of(mid, kOpen, 0) >= 3);

    // And the slow ones complete, intact.
    for (std::size_t i = 0; i < on_a.size(); ++i) {
        INFO("slow request " << i << " on worker 0");
        auto r = on_a[i].read_response(Ms(kSlow.count() + 3000));
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "slow /slow/" + std::to_string(i));
    }
    CHECK(elapsed_ms(slow_sent) >= kSlow.count() - 100);
}

TEST_CASE("integration: workers: max_connections is split between the workers; a full worker answers 503",
          "[integration][workers][capacity]")
{
    Origin o(static_origin("ok"));
    for (int total : {4, 3}) {
        INFO("--max-connections " << total << " -w 2");
        Proxy p(proxy_args({"--max-connections", std::to_string(total), "-w", "2", "--stats-listen",
                            "127.0.0.1:0"}));
        UpTo up = wait_up_to(p);
        INFO(up.line);
        CHECK(up.connections == total);
        CHECK(up.workers == 2);
        // Worker i: total/2, plus one for the first total%2 workers.
        const std::vector<std::size_t> cap{static_cast<std::size_t>(total / 2 + (total % 2 > 0 ? 1 : 0)),
                                           static_cast<std::size_t>(total / 2)};
        Landing land(p, 2);
        // The stats connection is open on one worker, in a slot of its own:
        // it counts as open but takes none of the clients' share.
        Exposition e0 = land.stats().metrics();
        auto open0 = per_worker(e0, kOpen, 2);
        REQUIRE(sum(open0) == 1);
        const std::size_t stats_on = open0[0] == 1 ? 0 : 1;
        std::vector<std::vector<Conn>> held(2);
        auto used = [&](std::size_t w) { return held[w].size() + (w == stats_on ? 1 : 0); };
        auto full = [&](std::size_t w) { return held[w].size() >= cap[w]; };
        bool refused_with_room = false; // a 503 from a full worker while the other had room
        int refusals = 0;
        for (int attempt = 0; attempt < 60; ++attempt) {
            if (refused_with_room && full(0) && full(1) && refusals >= 2)
                break;
            if (full(0) && full(1) && !refused_with_room) {
                // Free a slot on one worker, so that a client landing on the
                // other (full) one shows it does not borrow it.
                std::size_t w = held[1].empty() ? 0 : 1;
                REQUIRE_FALSE(held[w].empty());
                held[w].pop_back();
                double expect = static_cast<double>(used(w));
                land.stats().metrics_when(
                    [&](const Exposition& e) { return sample_of(e, kOpen, static_cast<int>(w)) == expect; });
            }
            auto w_room = std::vector<bool>{!full(0), !full(1)};
            Landing::Landed l = land.connect();
            auto w = static_cast<std::size_t>(l.worker);
            INFO("attempt " << attempt << ": worker " << w << (l.refused ? " refused" : " accepted")
                            << " it; before it worker 0 held " << used(0) << "/" << cap[0] << ", worker 1 "
                            << used(1) << "/" << cap[1] << " (stats connection on worker " << stats_on << ")");
            if (l.refused) {
                CHECK_FALSE(w_room[w]);
                ++refusals;
                if (w_room[1 - w])
                    refused_with_room = true;
                auto r = l.conn.read_response(kWait, true);
                REQUIRE(r);
                CHECK(r->status == 503);
                CHECK(r->header("Retry-After"));
                CHECK(l.conn.wait_closed(Ms(3000)));
            } else {
                CHECK(w_room[w]);
                held[w].push_back(std::move(l.conn));
            }
            auto open = per_worker(land.last(), kOpen, 2);
            INFO("connections open " << show(open));
            CHECK(open[0] == static_cast<double>(used(0)));
            CHECK(open[1] == static_cast<double>(used(1)));
            CHECK(open[0] <= static_cast<double>(cap[0] + (stats_on == 0 ? 1 : 0)));
            CHECK(open[1] <= static_cast<double>(cap[1] + (stats_on == 1 ? 1 : 0)));
            CHECK(sum(open) <= total + 1);
        }
        CHECK(refused_with_room);
        CHECK(full(0));
        CHECK(full(1));
        CHECK(held[0].size() + held[1].size() == static_cast<std::size_t>(total));
        // The admitted clients are served.
        for (auto& list : held)
            for (auto& c : list) {
                auto r = c.roundtrip(get(o, "/held"));
                REQUIRE(r);
                CHECK(r->status == 200);
            }
    }
}

TEST_CASE("integration: workers: SIGHUP applies new auth and allow/deny rules on every worker",
          "[integration][workers][ops]")
{
    ScratchDir dir("cproxy-workers");
    Origin web(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\nstats_listen 127.0.0.1:0\nauth alice:one\n");
    Proxy p({"-c", conf, "-w", "2"});
    Landing land(p, 2);
    auto kept = land.gather({1, 1});
    for (int w = 0; w < 2; ++w) {
        INFO("kept connection on worker " << w);
        auto r = kept[static_cast<std::size_t>(w)][0].roundtrip(get(web, "/before", basic("alice:one")));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    // 127.0.0.2 may use the proxy before the reload.
    {
        Conn c = connect_from("127.0.0.2", p.port());
        auto r = c.roundtrip(get(web, "/from-2", basic("alice:one")));
        REQUIRE(r);
        CHECK(r->status == 200);
    }

    dir.write("cproxy.conf", "listen 127.0.0.1:0\nstats_listen 127.0.0.1:0\nauth bob:two\ndeny 127.0.0.2\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([&](const std::string& err) {
        return err.find("info: configuration reloaded from " + conf) != std::string::npos;
    }));

    for (int w = 0; w < 2; ++w) {
        INFO("worker " << w);
        // A kept connection's next request meets the new rules.
        auto r = kept[static_cast<std::size_t>(w)][0].roundtrip(get(web, "/kept", basic("alice:one")));
        REQUIRE(r);
        CHECK(r->status == 407);
    }
    // New clients on each worker: the old user is refused, the new one served.
    std::set<int> old_refused, new_served, denied;
    for (int attempt = 0; attempt < 40 && (old_refused.size() < 2 || new_served.size() < 2); ++attempt) {
        auto l = land.connect();
        REQUIRE_FALSE(l.refused);
        bool try_old = !old_refused.count(l.worker);
        auto r = l.conn.roundtrip(get(web, "/new", basic(try_old ? "alice:one" : "bob:two")));
        INFO("attempt " << attempt << " on worker " << l.worker << " as " << (try_old ? "alice" : "bob"));
        REQUIRE(r);
        CHECK(r->status == (try_old ? 407 : 200));
        (try_old ? old_refused : new_served).insert(l.worker);
    }
    CHECK(old_refused == std::set<int>{0, 1});
    CHECK(new_served == std::set<int>{0, 1});
    // 127.0.0.2 is now denied by whichever worker takes it: 403 at once.
    for (int attempt = 0; attempt < 40 && denied.size() < 2; ++attempt) {
        auto l = land.connect("127.0.0.2");
        REQUIRE_FALSE(l.refused);
        INFO("attempt " << attempt << " from 127.0.0.2 on worker " << l.worker);
        auto r = l.conn.read_response();
        REQUIRE(r);
        CHECK(r->status == 403);
        CHECK(l.conn.wait_closed());
        denied.insert(l.worker);
    }
    CHECK(denied == std::set<int>{0, 1});
}

TEST_CASE("integration: workers: SIGUSR1 reopens the logs for every worker", "[integration][workers][ops]")
{
    ScratchDir dir("cproxy-workers");
    Origin o(static_origin("ok"));
    std::string access = dir.file("access.log");
    std::string errors = dir.file("error.log");
    Proxy p(proxy_args({"-w", "2", "--stats-listen", "127.0.0.1:0", "--access-log", access, "--error-log",
                        errors}));
    Landing land(p, 2);
    auto conns = land.gather({1, 1});
    // The proxied requests' URLs in an access log (the stats requests are
    // logged too, and left out here).
    auto proxied = [&](const std::string& path) {
        std::multiset<std::string> urls;
        for (const auto& fields : access_log_lines(read_file(path)))
            if (fields[4].rfind(o.url("/"), 0) == 0)
                urls.insert(fields[4]);
        return urls;
    };
    auto urls = [&](const std::string& stem) {
        return std::multiset<std::string>{o.url(stem + "-w0"), o.url(stem + "-w1")};
    };
    for (int w = 0; w < 2; ++w) {
        auto r = conns[static_cast<std::size_t>(w)][0].roundtrip(get(o, "/first-w" + std::to_string(w)));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    REQUIRE(wait_until([&] { return proxied(access).size() == 2; }, Ms(3000)));
    CHECK(proxied(access) == urls("/first"));

    REQUIRE(::rename(access.c_str(), (access + ".1").c_str()) == 0);
    REQUIRE(::rename(errors.c_str(), (errors + ".1").c_str()) == 0);
    ::kill(p.pid(), SIGUSR1);
    REQUIRE(wait_until([&] { return read_file(errors).find("info: log files reopened") != std::string::npos; }));
    for (int w = 0; w < 2; ++w) {
        auto r = conns[static_cast<std::size_t>(w)][0].roundtrip(get(o, "/second-w" + std::to_string(w)));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    CHECK(wait_until([&] { return proxied(access).size() >= 2; }, Ms(3000)));
    INFO("new access log:\n" << read_file(access) << "old access log:\n" << read_file(access + ".1"));
    CHECK(proxied(access) == urls("/second"));
    CHECK(proxied(access + ".1") == urls("/first"));
    CHECK(read_file(errors + ".1").find("info: up to ") != std::string::npos);
}

TEST_CASE("integration: workers: SIGUSR2 logs one resources line per worker", "[integration][workers][ops]")
{
    // 5 slots: 3 for worker 0, 2 for worker 1.
    Proxy p(proxy_args({"-w", "2", "--max-connections", "5", "--stats-listen", "127.0.0.1:0"}));
    UpTo up = wait_up_to(p);
    CHECK(up.connections == 5);
    CHECK(up.workers == 2);
    Landing land(p, 2);
    // One client on each (and the stats connection on worker 0, which has 4
    // slots for stats clients beyond its share).
    auto conns = land.gather({1, 1});
    Exposition e =
        land.stats().metrics_when([&](const Exposition& x) { return sum(per_worker(x, kOpen, 2)) == 3; });
    auto open = per_worker(e, kOpen, 2);
    INFO("connections open " << show(open));
    REQUIRE(sum(open) == 3);

    ::kill(p.pid(), SIGUSR2);
    auto count_lines = [](const std::string& err) {
        std::size_t n = 0;
        for (std::size_t at = err.find("info: resources: "); at != std::string::npos;
             at = err.find("info: resources: ", at + 1))
            if (err.find('\n', at) != std::string::npos)
                ++n;
        return n;
    };
    CHECK(p.wait_err([&](const std::string& err) { return count_lines(err) >= 2; }));
    std::this_thread::sleep_for(Ms(200)); // a third line, if any, would come now
    std::string err = p.err();
    INFO("proxy stderr:\n" << err);
    CHECK(count_lines(err) == 2);
    std::map<unsigned, std::pair<unsigned, unsigned>> sessions; // worker -> used/capacity
    for (std::size_t at = err.find("info: resources: "); at != std::string::npos;
         at = err.find("info: resources: ", at + 1)) {
        std::string line = err.substr(at, err.find('\n', at) - at);
        unsigned worker = 0, used = 0, capacity = 0, buffers = 0, buffer_slots = 0, large = 0, large_slots = 0,
                 pipes = 0, made = 0, idle = 0;
        int fields = std::sscanf(line.c_str(),
                                 "info: resources: worker %u, %u/%u sessions, %u/%u buffers, %u/%u large buffers, "
                                 "%u pipes in use of %u made, %u idle upstream",
                                 &worker, &used, &capacity, &buffers, &buffer_slots, &large, &large_slots, &pipes,
                                 &made, &idle);
        INFO("line: " << line);
        CHECK(fields == 10);
        CHECK(line.find("; counters: ") != std::string::npos);
        CHECK_FALSE(sessions.count(worker));
        sessions[worker] = {used, capacity};
    }
    REQUIRE(sessions.size() == 2);
    REQUIRE(sessions.count(0));
    REQUIRE(sessions.count(1));
    CHECK(sessions[0].second == 3 + 4);
    CHECK(sessions[1].second == 2);
    CHECK(sessions[0].first == open[0]);
    CHECK(sessions[1].first == open[1]);
}

TEST_CASE("integration: workers: SIGTERM finishes in-flight requests on every worker, then exits 0 with totals",
          "[integration][workers][ops]")
{
    Origin slow(http_origin([](const HttpRequest& r) {
        return Reply{http_response(200, "slow answer " + r.target), false, Ms(1500)};
    }));
    Proxy p(proxy_args({"-w", "2", "--stats-listen", "127.0.0.1:0", "--shutdown-timeout", "5s"}));
    Landing land(p, 2);
    // Per worker: [0] busy with a slow request, [1] idle.
    auto conns = land.gather({2, 2});
    Exposition pre = land.stats().metrics();
    auto accepted = per_worker(pre, kAccepted, 2);
    CHECK(sum(accepted) == land.opened());
    std::size_t sent = 0;
    for (int w = 0; w < 2; ++w) {
        std::string req = get(slow, "/w" + std::to_string(w));
        sent += req.size();
        REQUIRE(conns[static_cast<std::size_t>(w)][0].send_all(req));
    }
    REQUIRE(slow.wait_requests(2));

    auto start = Clock::now();
    ::kill(p.pid(), SIGTERM);
    for (int w = 0; w < 2; ++w) {
        INFO("idle connection on worker " << w);
        CHECK(conns[static_cast<std::size_t>(w)][1].wait_closed(Ms(1000))); // closed at once
    }
    // No worker accepts any more (a worker still listening would take every
    // connection to the port).
    int connected = 0;
    CHECK(wait_until([&] { return connect_refused(p.port(), connected); }, Ms(1000)));
    std::size_t received = 0;
    for (int w = 0; w < 2; ++w) {
        INFO("busy connection on worker " << w);
        auto r = conns[static_cast<std::size_t>(w)][0].read_response();
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK(r->body == "slow answer /w" + std::to_string(w));
        CHECK(r->header("Connection") == "close");
        received += r->raw_head.size() + r->body.size();
        CHECK(conns[static_cast<std::size_t>(w)][0].wait_closed(Ms(1000)));
        // Closed here too, so that the proxy's lingering close ends at once.
        conns[static_cast<std::size_t>(w)][0].close();
    }
    long long answered = elapsed_ms(start);
    auto code = p.stop(0, Ms(3000)); // signal 0: only wait for the exit
    std::string err = p.err();
    INFO("proxy stderr:\n" << err << "\nconnections made after SIGTERM: " << connected);
    INFO("answered " << answered << " ms after SIGTERM, exited after " << elapsed_ms(start) << " ms");
    REQUIRE(code);
    CHECK(*code == 0);
    CHECK(elapsed_ms(start) < 2500); // the slow answers take 1.5 s
    CHECK(err.find("info: stopping:") != std::string::npos);
    std::string line;
    auto counts = stopped_counts(err, line);
    REQUIRE(counts);
    INFO(line);
    CHECK((*counts)[0] >= static_cast<unsigned long long>(sum(accepted)));
    CHECK((*counts)[0] <= static_cast<unsigned long long>(sum(accepted)) + static_cast<unsigned long long>(connected));
    CHECK((*counts)[1] == 0);  // refused
    CHECK((*counts)[2] == 2);  // requests, one per worker
    CHECK((*counts)[3] == 0);  // tunnels
    CHECK((*counts)[6] == sent);
    CHECK((*counts)[7] == received);
}

TEST_CASE("integration: workers: a second SIGTERM closes the requests of every worker at once",
          "[integration][workers][ops]")
{
    Origin silent(silent_origin());
    Proxy p(proxy_args({"-w", "2", "--stats-listen", "127.0.0.1:0", "--shutdown-timeout", "30s"}));
    Landing land(p, 2);
    auto conns = land.gather({1, 1});
    for (int w = 0; w < 2; ++w)
        REQUIRE(conns[static_cast<std::size_t>(w)][0].send_all(get(silent, "/stuck" + std::to_string(w))));
    REQUIRE(wait_until([&] {
        std::string got = silent.received();
        return got.find("/stuck0 ") != std::string::npos && got.find("/stuck1 ") != std::string::npos;
    }));
    ::kill(p.pid(), SIGTERM);
    REQUIRE(p.wait_err([](const std::string& err) { return err.find("info: stopping:") != std::string::npos; }));
    // Still waiting for the stuck requests.
    CHECK_FALSE(p.stop(0, Ms(300)));
    auto start = Clock::now();
    auto code = p.stop(SIGTERM, Ms(3000));
    REQUIRE(code);
    CHECK(*code == 0);
    CHECK(elapsed_ms(start) < 1500);
    for (int w = 0; w < 2; ++w) {
        INFO("stuck connection on worker " << w);
        CHECK(conns[static_cast<std::size_t>(w)][0].wait_closed(Ms(1000)));
    }
    CHECK(p.err().find("second stop signal") != std::string::npos);
    std::string line;
    auto counts = stopped_counts(p.err(), line);
    INFO("proxy stderr:\n" << p.err());
    REQUIRE(counts);
    CHECK((*counts)[0] == static_cast<unsigned long long>(land.opened()));
    // The two requests closed by the second signal are in the totals.
    INFO(line);
    CHECK((*counts)[4] == 2);  // failed
}

TEST_CASE("integration: workers: a bad worker count is a start-up error (exit 2); auto and N start",
          "[integration][workers][cli]")
{
    for (std::vector<std::string> bad : {std::vector<std::string>{"-w", "0"}, {"-w", "300"}, {"--workers", "257"},
                                         {"--workers", "lots"}, {"-w", "-1"}, {"-w", ""}}) {
        std::vector<std::string> args{"-c", "/dev/null", "-l", "127.0.0.1:0"};
        args.insert(args.end(), bad.begin(), bad.end());
        INFO("args: " << bad[0] << " '" << bad[1] << "'");
        RunResult r = run_proxy(args);
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--workers") != std::string::npos);
        CHECK(r.err.find("'" + bad[1] + "'") != std::string::npos);
        CHECK(r.out.find("listening on") == std::string::npos);
    }
    {
        ScratchDir dir("cproxy-workers");
        std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n# many\nworkers lots\n");
        for (bool test_only : {false, true}) {
            std::vector<std::string> args{"-c", conf};
            if (test_only)
                args.insert(args.begin(), "-t");
            RunResult r = run_proxy(args);
            INFO((test_only ? "-t " : "") << "stdout: " << r.out << "\nstderr: " << r.err);
            REQUIRE_FALSE(r.timed_out);
            CHECK(r.exit_code == 2);
            CHECK(r.err.find(conf + ":3: workers: 'lots'") != std::string::npos);
            CHECK(r.out.find("listening on") == std::string::npos);
        }
        std::string good = dir.write("good.conf", "listen 127.0.0.1:0\nworkers 2\ncpu_affinity off\n");
        RunResult checked = run_proxy({"-t", "-c", good});
        INFO("-t stdout: " << checked.out << "\n-t stderr: " << checked.err);
        CHECK(checked.exit_code == 0);
        // workers in the file is used when no option overrides it (the
        // harness's Proxy would add --workers 1, so the process is run here).
        std::string bin = proxy_binary();
        if (bin.find('/') == std::string::npos)
            bin = "./" + bin;
        Child c({bin, "-c", good}, false);
        bool up = c.wait_output([](const std::string&, const std::string& err) { return up_to_line(err).has_value(); },
                                kWait);
        INFO("stderr: " << c.err());
        REQUIRE(up);
        CHECK(up_to_line(c.err())->workers == 2);
        CHECK(wait_until([&] { return worker_threads(c.pid()).size() == 2; }, Ms(2000)));
        c.kill_now(SIGTERM);
        CHECK(c.wait_exit(Ms(3000)));
    }

    Origin o(static_origin("ok"));
    const auto cpus = usable_cpus();
    for (std::string n : {"auto", "1", "2", "3"}) {
        INFO("-w " << n << " with " << cpus.size() << " usable CPUs");
        Proxy p(proxy_args({"-w", n}));
        UpTo up = wait_up_to(p);
        INFO(up.line);
        long expected = n == "auto" ? static_cast<long>(cpus.size()) : std::stol(n);
        CHECK(up.workers == expected);
        CHECK(up.connections > 0);
        std::map<int, WorkerThread> threads;
        CHECK(wait_until([&] { return (threads = worker_threads(p.pid())).size() == static_cast<std::size_t>(expected); },
                         Ms(2000)));
        INFO("threads:" << describe(threads));
        for (int i = 0; i < expected; ++i)
            CHECK(threads.count(i));
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/"));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
}

TEST_CASE("integration: workers: cpu_affinity pins worker i to the i-th CPU of the inherited mask",
          "[integration][workers]")
{
    const auto cpus = usable_cpus();
    const bool two = std::count(cpus.begin(), cpus.end(), 0) && std::count(cpus.begin(), cpus.end(), 1);
    if (!two) {
        WARN("CPUs 0 and 1 are not both usable here (" << cpus.size()
                                                       << " usable): the pinning checks are skipped");
        return;
    }
    {
        // Under taskset -c 0,1 (the mask the proxy inherits): worker 0 on
        // CPU 0, worker 1 on CPU 1.
        AffinityGuard mask({0, 1});
        REQUIRE(mask.ok());
        Proxy p(proxy_args({"-w", "2", "--cpu-affinity", "on"}));
        std::map<int, WorkerThread> threads;
        CHECK(wait_until([&] { return (threads = worker_threads(p.pid())).size() == 2; }, Ms(2000)));
        INFO("threads:" << describe(threads));
        REQUIRE(threads.size() == 2);
        CHECK(threads[0].cpus == "0");
        CHECK(threads[1].cpus == "1");
        CHECK(threads[0].tid != threads[1].tid);
    }
    {
        // The i-th CPU of the mask, not CPU i: with only CPU 1, worker 0 is
        // pinned there; and auto means one worker.
        AffinityGuard mask({1});
        REQUIRE(mask.ok());
        for (const char* n : {"1", "auto"}) {
            INFO("-w " << n << " under mask {1}");
            Proxy p(proxy_args({"-w", n, "--cpu-affinity", "on"}));
            UpTo up = wait_up_to(p);
            CHECK(up.workers == 1);
            std::map<int, WorkerThread> threads;
            CHECK(wait_until([&] { return (threads = worker_threads(p.pid())).size() == 1; }, Ms(2000)));
            INFO("threads:" << describe(threads));
            REQUIRE(threads.count(0));
            CHECK(threads[0].cpus == "1");
        }
    }
    {
        // Off (the default): every worker keeps the inherited mask.
        AffinityGuard mask({0, 1});
        REQUIRE(mask.ok());
        Proxy p(proxy_args({"-w", "2"}));
        std::map<int, WorkerThread> threads;
        CHECK(wait_until([&] { return (threads = worker_threads(p.pid())).size() == 2; }, Ms(2000)));
        INFO("threads:" << describe(threads));
        REQUIRE(threads.size() == 2);
        CHECK(threads[0].cpus == "0-1");
        CHECK(threads[1].cpus == "0-1");
    }
}
