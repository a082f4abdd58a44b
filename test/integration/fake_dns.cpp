// The scripted DNS server: message layout from RFC 1035 §4.1 (header,
// question, resource records, §4.1.4 name compression) and §4.2 (UDP, and
// TCP messages behind a two-byte length).
#include "fake_dns.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

namespace itest {

namespace {

std::string lower_name(std::string_view n)
{
    if (!n.empty() && n.back() == '.')
        n.remove_suffix(1);
    std::string s(n);
    for (char& c : s)
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::uint16_t get16(std::string_view m, std::size_t at)
{
    return static_cast<std::uint16_t>((static_cast<unsigned char>(m[at]) << 8) |
                                      static_cast<unsigned char>(m[at + 1]));
}

// Reads the (possibly compressed) name at `at`; on success sets `next` to
// the byte after the name's bytes at `at` (not after a pointer's target).
std::optional<std::string> read_name(std::string_view m, std::size_t at, std::size_t& next)
{
    std::string out;
    bool jumped = false;
    std::size_t total = 0;
    for (int hops = 0; hops < 64;) {
        if (at >= m.size())
            return std::nullopt;
        auto len = static_cast<unsigned char>(m[at]);
        if ((len & 0xC0) == 0xC0) {
            if (at + 1 >= m.size())
                return std::nullopt;
            std::size_t target = get16(m, at) & 0x3FFF;
            if (!jumped)
                next = at + 2;
            jumped = true;
            ++hops;
            if (target >= at)
                return std::nullopt; // pointers only go backwards
            at = target;
            continue;
        }
        if ((len & 0xC0) != 0)
            return std::nullopt; // the 0x40 / 0x80 label types are not defined for us
        if (len == 0) {
            if (!jumped)
                next = at + 1;
            return out;
        }
        if (at + 1 + len > m.size())
            return std::nullopt;
        total += len + 1;
        if (total > 255)
            return std::nullopt;
        if (!out.empty())
            out += '.';
        out.append(m.substr(at + 1, len));
        at += 1 + len;
    }
    return std::nullopt;
}

// Builds one message; names are compressed against every name written before.
class Writer {
public:
    std::string out;

    void u8(unsigned v) { out += static_cast<char>(v & 0xff); }
    void u16(unsigned v) { u8(v >> 8); u8(v); }
    void u32(std::uint32_t v) { u16(v >> 16); u16(v & 0xffff); }
    void set16(std::size_t at, unsigned v)
    {
        out[at] = static_cast<char>((v >> 8) & 0xff);
        out[at + 1] = static_cast<char>(v & 0xff);
    }

    void name(std::string_view n)
    {
        if (!n.empty() && n.back() == '.')
            n.remove_suffix(1);
        while (!n.empty()) {
            std::string key = lower_name(n);
            auto it = suffixes_.find(key);
            if (it != suffixes_.end()) {
                u16(0xC000u | it->second);
                return;
            }
            if (out.size() < 0x3FFF)
                suffixes_.emplace(key, static_cast<std::uint16_t>(out.size()));
            std::size_t dot = n.find('.');
            std::string_view label = n.substr(0, dot);
            if (label.empty() || label.size() > 63)
                throw std::runtime_error("fake dns: bad label in " + std::string(n));
            u8(static_cast<unsigned>(label.size()));
            out.append(label);
            n = dot == std::string_view::npos ? std::string_view{} : n.substr(dot + 1);
        }
        u8(0);
    }

    // Owner, type, class IN, TTL; returns where RDLENGTH goes (fill with end_rr).
    std::size_t begin_rr(std::string_view owner, std::uint16_t type, std::uint32_t ttl)
    {
        name(owner);
        u16(type);
        u16(1);
        u32(ttl);
        std::size_t at = out.size();
        u16(0);
        return at;
    }
    void end_rr(std::size_t at) { set16(at, static_cast<unsigned>(out.size() - at - 2)); }

private:
    std::map<std::string, std::uint16_t> suffixes_;
};

Fd bind_socket(int type, std::uint16_t port)
{
    Fd fd(::socket(AF_INET, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        throw std::runtime_error("fake dns: socket: " + std::string(std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
        return Fd();
    return fd;
}

std::uint16_t local_port(int fd)
{
    sockaddr_in a{};
    socklen_t len = sizeof a;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    return ntohs(a.sin_port);
}

const char* type_name(std::uint16_t t)
{
    switch (t) {
    case dns::A: return "A";
    case dns::AAAA: return "AAAA";
    case dns::CNAME: return "CNAME";
    case dns::SOA: return "SOA";
    default: return "TYPE?";
    }
}

} // namespace

FakeDns::FakeDns(std::uint16_t port)
{
    for (int attempt = 0; attempt < 20 && !tcp_.valid(); ++attempt) {
        udp_ = bind_socket(SOCK_DGRAM, port);
        if (!udp_.valid())
            throw std::runtime_error("fake dns: bind udp 127.0.0.1:" + std::to_string(port) + ": " +
                                     std::strerror(errno));
        port_ = local_port(udp_.get());
        tcp_ = bind_socket(SOCK_STREAM, port_);
        if (!tcp_.valid() && port != 0)
            throw std::runtime_error("fake dns: bind tcp 127.0.0.1:" + std::to_string(port) + ": " +
                                     std::strerror(errno));
    }
    if (!tcp_.valid() || ::listen(tcp_.get(), 64) != 0)
        throw std::runtime_error("fake dns: no port free for both UDP and TCP");
    wake_ = Fd(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!wake_.valid())
        throw std::runtime_error("fake dns: eventfd failed");
    thread_ = std::thread([this] { loop(); });
}

FakeDns::~FakeDns()
{
    stop_ = true;
    std::uint64_t one = 1;
    [[maybe_unused]] auto n = ::write(wake_.get(), &one, sizeof one);
    if (thread_.joinable())
        thread_.join();
}

std::string FakeDns::address() const { return "127.0.0.1:" + std::to_string(port_); }

void FakeDns::script(const std::string& name, DnsScript s)
{
    for (const auto& a : s.a) {
        in_addr x{};
        if (::inet_pton(AF_INET, a.c_str(), &x) != 1)
            throw std::runtime_error("fake dns: not an IPv4 literal: " + a);
    }
    for (const auto& a : s.spoof_a) {
        in_addr x{};
        if (::inet_pton(AF_INET, a.c_str(), &x) != 1)
            throw std::runtime_error("fake dns: not an IPv4 literal: " + a);
    }
    for (const auto& a : s.aaaa) {
        in6_addr x{};
        if (::inet_pton(AF_INET6, a.c_str(), &x) != 1)
            throw std::runtime_error("fake dns: not an IPv6 literal: " + a);
    }
    std::lock_guard lk(mu_);
    scripts_[lower_name(name)] = std::move(s);
}

void FakeDns::remove(const std::string& name)
{
    std::lock_guard lk(mu_);
    scripts_.erase(lower_name(name));
}

std::vector<DnsQuery> FakeDns::queries() const
{
    std::lock_guard lk(mu_);
    return queries_;
}

std::vector<DnsQuery> FakeDns::queries_for(std::string_view name, std::uint16_t qtype) const
{
    std::string key = lower_name(name);
    std::vector<DnsQuery> out;
    std::lock_guard lk(mu_);
    for (const auto& q : queries_)
        if (lower_name(q.name) == key && (qtype == 0 || q.qtype == qtype))
            out.push_back(q);
    return out;
}

std::size_t FakeDns::count(std::string_view name, std::uint16_t qtype) const
{
    return queries_for(name, qtype).size();
}

std::size_t FakeDns::count_tcp(std::string_view name, std::uint16_t qtype) const
{
    auto q = queries_for(name, qtype);
    return static_cast<std::size_t>(std::count_if(q.begin(), q.end(), [](const DnsQuery& x) { return x.tcp; }));
}

void FakeDns::clear_queries()
{
    std::lock_guard lk(mu_);
    queries_.clear();
}

bool FakeDns::wait_queries(std::size_t n, Ms timeout) const
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return queries_.size() >= n; });
}

bool FakeDns::wait_count(std::string_view name, std::uint16_t qtype, std::size_t n, Ms timeout) const
{
    std::string key = lower_name(name);
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] {
        std::size_t c = 0;
        for (const auto& q : queries_)
            if (lower_name(q.name) == key && (qtype == 0 || q.qtype == qtype))
                ++c;
        return c >= n;
    });
}

std::string FakeDns::describe() const
{
    std::ostringstream s;
    std::lock_guard lk(mu_);
    s << queries_.size() << " queries:";
    for (const auto& q : queries_) {
        auto ms = queries_.empty() ? 0
                                   : std::chrono::duration_cast<Ms>(q.at - queries_.front().at).count();
        s << "\n  +" << ms << "ms " << (q.tcp ? "tcp " : "udp ") << type_name(q.qtype) << "("
          << q.qtype << ") " << q.name << " id=" << q.id << " sport=" << q.source_port
          << " rd=" << q.rd << " ar=" << q.arcount << (q.answered ? "" : " (not answered)");
    }
    return s.str();
}

// ------------------------------------------------------------ server thread

void FakeDns::loop()
{
    std::vector<pollfd> fds;
    std::vector<std::uint64_t> ids;
    while (!stop_.load()) {
        fds.clear();
        ids.clear();
        fds.push_back({wake_.get(), POLLIN, 0});
        fds.push_back({udp_.get(), POLLIN, 0});
        fds.push_back({tcp_.get(), POLLIN, 0});
        for (auto& [id, c] : conns_) {
            short ev = 0;
            if (!c.eof)
                ev |= POLLIN;
            if (!c.out.empty())
                ev |= POLLOUT;
            fds.push_back({c.fd.get(), ev, 0});
            ids.push_back(id);
        }
        int r = ::poll(fds.data(), fds.size(), next_timeout_ms());
        if (r < 0 && errno != EINTR)
            break;
        if (r > 0) {
            if (fds[0].revents & POLLIN) {
                std::uint64_t v;
                [[maybe_unused]] auto n = ::read(wake_.get(), &v, sizeof v);
            }
            if (fds[1].revents & POLLIN)
                on_udp();
            if (fds[2].revents & POLLIN)
                on_accept();
            for (std::size_t i = 0; i < ids.size(); ++i) {
                short rev = fds[3 + i].revents;
                auto it = conns_.find(ids[i]);
                if (it == conns_.end() || rev == 0)
                    continue;
                bool keep = true;
                if (rev & (POLLIN | POLLHUP | POLLERR))
                    keep = on_tcp_readable(it->first, it->second);
                if (keep && (rev & POLLOUT))
                    keep = flush_tcp(it->second);
                if (!keep)
                    conns_.erase(it);
            }
        }
        send_due();
        // A connection the client finished with goes once nothing is owed to it.
        for (auto it = conns_.begin(); it != conns_.end();) {
            bool owed = std::any_of(pending_.begin(), pending_.end(),
                                    [&](const Pending& p) { return p.tcp && p.conn == it->first; });
            if (it->second.eof && it->second.out.empty() && !owed)
                it = conns_.erase(it);
            else
                ++it;
        }
    }
}

int FakeDns::next_timeout_ms() const
{
    int ms = 1000; // an upper bound, so a lost wake-up costs at most a second
    auto now = Clock::now();
    for (const auto& p : pending_) {
        auto d = std::chrono::duration_cast<Ms>(p.due - now).count();
        ms = std::min<int>(ms, static_cast<int>(std::max<long long>(0, d + 1)));
    }
    return ms;
}

void FakeDns::on_udp()
{
    char buf[65536];
    for (int i = 0; i < 256; ++i) {
        sockaddr_in peer{};
        socklen_t len = sizeof peer;
        ssize_t n = ::recvfrom(udp_.get(), buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&peer), &len);
        if (n < 0)
            return; // EAGAIN (or an error we cannot act on)
        try {
            handle(std::string_view(buf, static_cast<std::size_t>(n)), false, 0, peer);
        } catch (const std::exception&) {
            // A name this server cannot write back: no answer.
        }
    }
}

void FakeDns::on_accept()
{
    for (int i = 0; i < 64; ++i) {
        sockaddr_in peer{};
        socklen_t len = sizeof peer;
        int fd = ::accept4(tcp_.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                           SOCK_CLOEXEC | SOCK_NONBLOCK);
        if (fd < 0)
            return;
        TcpConn& c = conns_[next_conn_++];
        c.fd = Fd(fd);
        c.peer = peer;
    }
}

bool FakeDns::on_tcp_readable(std::uint64_t id, TcpConn& c)
{
    char buf[65536];
    for (;;) {
        ssize_t n = ::recv(c.fd.get(), buf, sizeof buf, 0);
        if (n > 0) {
            c.in.append(buf, static_cast<std::size_t>(n));
            continue;
        }
        if (n == 0) {
            c.eof = true;
            break;
        }
        if (errno == EINTR)
            continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK)
            break;
        return false;
    }
    while (c.in.size() >= 2) {
        std::size_t len = get16(c.in, 0);
        if (c.in.size() < 2 + len)
            break;
        std::string msg = c.in.substr(2, len);
        c.in.erase(0, 2 + len);
        try {
            handle(msg, true, id, c.peer);
        } catch (const std::exception&) {
            // A name this server cannot write back: no answer.
        }
    }
    return true;
}

bool FakeDns::flush_tcp(TcpConn& c)
{
    while (!c.out.empty()) {
        ssize_t n = ::send(c.fd.get(), c.out.data(), c.out.size(), MSG_NOSIGNAL);
        if (n > 0) {
            c.out.erase(0, static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        return n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK);
    }
    return true;
}

void FakeDns::send_due()
{
    auto now = Clock::now();
    std::vector<Pending> due;
    for (auto it = pending_.begin(); it != pending_.end();) {
        if (it->due <= now) {
            due.push_back(std::move(*it));
            it = pending_.erase(it);
        } else {
            ++it;
        }
    }
    for (auto& p : due) {
        if (!p.tcp) {
            ::sendto(udp_.get(), p.bytes.data(), p.bytes.size(), 0,
                     reinterpret_cast<const sockaddr*>(&p.peer), sizeof p.peer);
            continue;
        }
        auto it = conns_.find(p.conn);
        if (it == conns_.end())
            continue; // the client went away
        Writer len;
        len.u16(static_cast<unsigned>(p.bytes.size()));
        it->second.out += len.out + p.bytes;
        if (!flush_tcp(it->second))
            conns_.erase(it);
    }
}

void FakeDns::handle(std::string_view msg, bool tcp, std::uint64_t conn, const sockaddr_in& peer)
{
    if (msg.size() < 12)
        return; // not even a header: nothing to answer
    DnsQuery q;
    q.tcp = tcp;
    q.at = Clock::now();
    q.id = get16(msg, 0);
    q.source_port = ntohs(peer.sin_port);
    auto flags = static_cast<unsigned char>(msg[2]);
    bool is_response = flags & 0x80;
    unsigned opcode = (flags >> 3) & 0x0F;
    q.rd = flags & 0x01;
    std::uint16_t qdcount = get16(msg, 4);
    q.arcount = get16(msg, 10);

    Writer w;
    w.u16(q.id);
    // QR=1, opcode echoed, AA=1, TC (patched below), RD echoed; RA=1.
    w.u8(0x80u | (opcode << 3) | 0x04u | (q.rd ? 0x01u : 0));
    w.u8(0x80);
    w.u16(0); // QDCOUNT
    w.u16(0); // ANCOUNT
    w.u16(0); // NSCOUNT
    w.u16(0); // ARCOUNT
    auto set_rcode = [&](int rc) { w.out[3] = static_cast<char>(0x80 | (rc & 0x0F)); };

    std::size_t next = 12;
    std::optional<std::string> qname;
    if (!is_response && qdcount == 1)
        qname = read_name(msg, 12, next);
    if (!qname || next + 4 > msg.size()) {
        // Not a query we understand: record it and answer FORMERR.
        {
            std::lock_guard lk(mu_);
            queries_.push_back(q);
        }
        cv_.notify_all();
        if (is_response)
            return;
        set_rcode(dns::FORMERR);
        Pending p{Clock::now(), tcp, conn, peer, w.out};
        pending_.push_back(std::move(p));
        return;
    }
    q.name = *qname;
    q.qtype = get16(msg, next);
    std::uint16_t qclass = get16(msg, next + 2);

    w.set16(4, 1);
    w.name(q.name);
    w.u16(q.qtype);
    w.u16(qclass);
    const std::size_t question_end = w.out.size();

    std::lock_guard lk(mu_);
    auto record = [&](bool answered) {
        q.answered = answered;
        queries_.push_back(q);
        cv_.notify_all();
    };
    if (opcode != 0) {
        set_rcode(dns::NOTIMP);
        record(true);
        pending_.push_back(Pending{q.at, tcp, conn, peer, w.out});
        return;
    }
    auto found = scripts_.find(lower_name(q.name));
    if (found == scripts_.end()) {
        set_rcode(dns::NXDOMAIN);
        record(true);
        pending_.push_back(Pending{q.at, tcp, conn, peer, w.out});
        return;
    }
    const DnsScript& first = found->second;
    if (first.silent) {
        record(false);
        return;
    }
    if (!tcp && first.drop_first_udp > 0 &&
        udp_seen_[{found->first, q.qtype}]++ < first.drop_first_udp) {
        record(false);
        return;
    }

    std::uint16_t ancount = 0, nscount = 0;
    auto add_soa = [&](const DnsScript& s, const std::string& owner) {
        if (!s.soa_minimum)
            return;
        std::string zone = owner;
        if (auto dot = zone.rfind('.'); dot != std::string::npos)
            zone = zone.substr(dot + 1);
        auto at = w.begin_rr(zone, dns::SOA, s.soa_ttl);
        w.name("ns." + zone);          // MNAME
        w.name("hostmaster." + zone);  // RNAME
        w.u32(1);                      // SERIAL
        w.u32(3600);                   // REFRESH
        w.u32(600);                    // RETRY
        w.u32(86400);                  // EXPIRE
        w.u32(*s.soa_minimum);         // MINIMUM
        w.end_rr(at);
        ++nscount;
    };

    if (first.rcode != dns::NOERROR) {
        set_rcode(first.rcode);
        add_soa(first, q.name);
    } else {
        std::string owner = q.name;
        const DnsScript* s = &first;
        std::size_t addresses = 0;
        for (int hop = 0; s && hop < 8; ++hop) {
            if (!s->cname.empty() && q.qtype != dns::CNAME) {
                auto at = w.begin_rr(owner, dns::CNAME, s->ttl);
                w.name(s->cname);
                w.end_rr(at);
                ++ancount;
                auto nx = scripts_.find(lower_name(s->cname));
                owner = s->cname;
                s = nx == scripts_.end() ? nullptr : &nx->second;
                continue;
            }
            if (q.qtype == dns::A) {
                for (const auto& a : s->a) {
                    unsigned char b[4];
                    ::inet_pton(AF_INET, a.c_str(), b);
                    auto at = w.begin_rr(owner, dns::A, s->ttl);
                    w.out.append(reinterpret_cast<const char*>(b), 4);
                    w.end_rr(at);
                    ++ancount;
                    ++addresses;
                }
            } else if (q.qtype == dns::AAAA) {
                for (const auto& a : s->aaaa) {
                    unsigned char b[16];
                    ::inet_pton(AF_INET6, a.c_str(), b);
                    auto at = w.begin_rr(owner, dns::AAAA, s->ttl);
                    w.out.append(reinterpret_cast<const char*>(b), 16);
                    w.end_rr(at);
                    ++ancount;
                    ++addresses;
                }
            } else if (q.qtype == dns::CNAME && !s->cname.empty()) {
                auto at = w.begin_rr(owner, dns::CNAME, s->ttl);
                w.name(s->cname);
                w.end_rr(at);
                ++ancount;
                ++addresses;
            }
            if (addresses == 0)
                add_soa(*s, owner);
            break;
        }
    }
    w.set16(6, ancount);
    w.set16(8, nscount);
    if (!tcp && first.truncate_udp) {
        // TC=1 and nothing beyond the question.
        w.out.resize(question_end);
        w.out[2] = static_cast<char>(w.out[2] | 0x02);
        w.set16(6, 0);
        w.set16(8, 0);
    }
    record(true);
    if (q.qtype == dns::A && !first.spoof_a.empty()) {
        Writer f;
        f.u16(q.id ^ 0x5A5Au);
        f.out.append(w.out, 2, 2); // the real answer's flags
        f.u16(1);
        f.u16(static_cast<unsigned>(first.spoof_a.size()));
        f.u16(0);
        f.u16(0);
        f.name(q.name);
        f.u16(q.qtype);
        f.u16(qclass);
        for (const auto& a : first.spoof_a) {
            unsigned char b[4];
            ::inet_pton(AF_INET, a.c_str(), b);
            auto at = f.begin_rr(q.name, dns::A, first.ttl);
            f.out.append(reinterpret_cast<const char*>(b), 4);
            f.end_rr(at);
        }
        pending_.push_back(Pending{q.at, tcp, conn, peer, std::move(f.out)});
    }
    Ms delay = first.delay + (q.qtype == dns::AAAA ? first.aaaa_delay : Ms(0));
    pending_.push_back(Pending{q.at + delay, tcp, conn, peer, std::move(w.out)});
}

std::vector<std::string> proxy_args_dns(const FakeDns& dns, std::vector<std::string> extra)
{
    std::vector<std::string> a{"--resolver", dns.address()};
    a.insert(a.end(), extra.begin(), extra.end());
    return proxy_args(std::move(a));
}

} // namespace itest
