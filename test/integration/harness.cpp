#include "harness.hpp"

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <catch2/catch.hpp>

extern char** environ;

namespace itest {

// ---------------------------------------------------------------- utilities

Fd& Fd::operator=(Fd&& o) noexcept
{
    if (this != &o)
        reset(o.release());
    return *this;
}

void Fd::reset(int fd) noexcept
{
    if (fd_ >= 0)
        ::close(fd_);
    fd_ = fd;
}

namespace {

char lower(char c) { return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c; }

std::string_view trim(std::string_view s)
{
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t'))
        s.remove_prefix(1);
    while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r'))
        s.remove_suffix(1);
    return s;
}

void set_nonblocking(int fd)
{
    int fl = ::fcntl(fd, F_GETFL, 0);
    ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

// poll() one fd for `events`, bounded; returns revents (0 on timeout).
short poll_one(int fd, short events, Ms timeout)
{
    pollfd p{fd, events, 0};
    auto ms = static_cast<int>(std::max<long long>(0, timeout.count()));
    for (;;) {
        int r = ::poll(&p, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        return r > 0 ? p.revents : 0;
    }
}

sockaddr_storage make_addr(const std::string& host, std::uint16_t port, socklen_t& len)
{
    sockaddr_storage ss{};
    auto* v4 = reinterpret_cast<sockaddr_in*>(&ss);
    auto* v6 = reinterpret_cast<sockaddr_in6*>(&ss);
    if (::inet_pton(AF_INET, host.c_str(), &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons(port);
        len = sizeof(sockaddr_in);
    } else if (::inet_pton(AF_INET6, host.c_str(), &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons(port);
        len = sizeof(sockaddr_in6);
    } else {
        throw std::runtime_error("not an IP literal: " + host);
    }
    return ss;
}

// Listening socket on host:port (port 0: any); returns fd and port.
Fd listen_on(const std::string& host, int backlog, std::uint16_t& port)
{
    socklen_t len = 0;
    sockaddr_storage a = make_addr(host, port, len);
    Fd fd(::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) != 0 ||
        ::listen(fd.get(), backlog) != 0)
        throw std::runtime_error("bind/listen " + host + ":" + std::to_string(port) + ": " +
                                 std::strerror(errno));
    len = sizeof a;
    ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len);
    port = ntohs(a.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&a)->sin6_port
                                         : reinterpret_cast<sockaddr_in*>(&a)->sin_port);
    return fd;
}


std::string bracket(const std::string& host)
{
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
}

} // namespace

Fd listen_loopback(int backlog, std::uint16_t& port)
{
    port = 0;
    return listen_on("127.0.0.1", backlog, port);
}

bool iequals(std::string_view a, std::string_view b)
{
    if (a.size() != b.size())
        return false;
    for (std::size_t i = 0; i < a.size(); ++i)
        if (lower(a[i]) != lower(b[i]))
            return false;
    return true;
}

bool icontains(std::string_view hay, std::string_view needle)
{
    if (needle.size() > hay.size())
        return false;
    for (std::size_t i = 0; i + needle.size() <= hay.size(); ++i)
        if (iequals(hay.substr(i, needle.size()), needle))
            return true;
    return false;
}

std::string random_bytes(std::size_t n, std::uint64_t seed)
{
    std::string s(n, '\0');
    std::uint64_t x = seed * 0x9E3779B97F4A7C15ULL + 1;
    for (std::size_t i = 0; i < n; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s[i] = static_cast<char>(x & 0xff);
    }
    return s;
}

std::uint64_t fnv1a(std::string_view data)
{
    std::uint64_t h = 1469598103934665603ULL;
    for (unsigned char c : data) {
        h ^= c;
        h *= 1099511628211ULL;
    }
    return h;
}

long long elapsed_ms(Clock::time_point start)
{
    return std::chrono::duration_cast<Ms>(Clock::now() - start).count();
}

bool wait_until(const std::function<bool()>& pred, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
        if (pred())
            return true;
        std::this_thread::sleep_for(Ms(10));
    }
    return pred();
}

std::uint16_t unused_port()
{
    std::uint16_t port = 0;
    Fd fd = listen_loopback(1, port);
    return port; // fd closes here; nothing listens on the port afterwards
}

bool ipv6_loopback_available()
{
    Fd fd(::socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (!fd.valid())
        return false;
    sockaddr_in6 a{};
    a.sin6_family = AF_INET6;
    a.sin6_addr = in6addr_loopback;
    return ::bind(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

std::string base64(std::string_view in)
{
    static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    std::size_t i = 0;
    for (; i + 2 < in.size(); i += 3) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8) |
                     static_cast<unsigned char>(in[i + 2]);
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += tbl[v & 63];
    }
    if (in.size() - i == 1) {
        unsigned v = static_cast<unsigned char>(in[i]) << 16;
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += "==";
    } else if (in.size() - i == 2) {
        unsigned v = (static_cast<unsigned char>(in[i]) << 16) |
                     (static_cast<unsigned char>(in[i + 1]) << 8);
        out += tbl[(v >> 18) & 63];
        out += tbl[(v >> 12) & 63];
        out += tbl[(v >> 6) & 63];
        out += '=';
    }
    return out;
}

// ------------------------------------------------------------------ HTTP data

std::optional<std::string> find_header(const Headers& h, std::string_view name)
{
    for (const auto& [k, v] : h)
        if (iequals(k, name))
            return v;
    return std::nullopt;
}

std::size_t count_header(const Headers& h, std::string_view name)
{
    return static_cast<std::size_t>(
        std::count_if(h.begin(), h.end(), [&](const auto& kv) { return iequals(kv.first, name); }));
}

bool parse_fields(std::string_view rest, Headers& out)
{
    while (!rest.empty()) {
        std::size_t eol = rest.find("\r\n");
        std::string_view line = rest.substr(0, eol);
        rest = eol == std::string_view::npos ? std::string_view{} : rest.substr(eol + 2);
        if (line.empty())
            break;
        std::size_t colon = line.find(':');
        if (colon == std::string_view::npos)
            return false;
        out.emplace_back(std::string(line.substr(0, colon)), std::string(trim(line.substr(colon + 1))));
    }
    return true;
}

std::string http_response(int status, std::string_view body, std::string_view extra)
{
    const char* reason = "OK";
    switch (status) {
    case 200: reason = "OK"; break;
    case 201: reason = "Created"; break;
    case 204: reason = "No Content"; break;
    case 304: reason = "Not Modified"; break;
    case 404: reason = "Not Found"; break;
    case 500: reason = "Internal Server Error"; break;
    default: reason = "Status"; break;
    }
    std::string r = "HTTP/1.1 " + std::to_string(status) + " " + reason + "\r\n";
    r += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    r += extra;
    r += "\r\n";
    r += body;
    return r;
}

// ------------------------------------------------------------------- streams

Conn::Conn(Fd fd, std::function<void(std::string_view)> tap, const std::atomic<bool>* stop)
    : fd_(std::move(fd)), tap_(std::move(tap)), stop_(stop)
{
    if (fd_.valid())
        set_nonblocking(fd_.get());
}

Ms Conn::left(Clock::time_point deadline) const
{
    auto d = std::chrono::duration_cast<Ms>(deadline - Clock::now());
    return d.count() < 0 ? Ms(0) : d;
}

bool Conn::send_all(std::string_view data, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    while (!data.empty()) {
        ssize_t n = ::send(fd_.get(), data.data(), data.size(), MSG_NOSIGNAL);
        if (n > 0) {
            data.remove_prefix(static_cast<std::size_t>(n));
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
            return false;
        if (Clock::now() >= deadline || (stop_ && stop_->load()))
            return false;
        poll_one(fd_.get(), POLLOUT, std::min(left(deadline), Ms(50)));
    }
    return true;
}

void Conn::shutdown_write() { ::shutdown(fd_.get(), SHUT_WR); }

long Conn::fill(Ms timeout)
{
    if (eof_)
        return 0;
    auto deadline = Clock::now() + timeout;
    char tmp[65536];
    for (;;) {
        ssize_t n = ::recv(fd_.get(), tmp, sizeof tmp, 0);
        if (n > 0) {
            if (tap_)
                tap_(std::string_view(tmp, static_cast<std::size_t>(n)));
            buf_.append(tmp, static_cast<std::size_t>(n));
            return static_cast<long>(n);
        }
        if (n == 0) {
            eof_ = true;
            return 0;
        }
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            eof_ = true;
            return -1;
        }
        if (Clock::now() >= deadline || (stop_ && stop_->load()))
            return -2;
        poll_one(fd_.get(), POLLIN, std::min(left(deadline), Ms(50)));
    }
}

std::optional<std::string> Conn::read_until(std::string_view delim, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    std::size_t from = 0;
    for (;;) {
        std::size_t pos = buf_.find(delim, from);
        if (pos != std::string::npos) {
            std::string out = buf_.substr(0, pos + delim.size());
            buf_.erase(0, pos + delim.size());
            return out;
        }
        from = buf_.size() >= delim.size() ? buf_.size() - delim.size() + 1 : 0;
        if (fill(left(deadline)) <= 0)
            return std::nullopt;
    }
}

std::optional<std::string> Conn::read_exact(std::size_t n, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    while (buf_.size() < n)
        if (fill(left(deadline)) <= 0)
            return std::nullopt;
    std::string out = buf_.substr(0, n);
    buf_.erase(0, n);
    return out;
}

Conn::UntilClose Conn::read_until_close(Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    UntilClose r;
    for (;;) {
        long n = fill(left(deadline));
        if (n > 0)
            continue;
        r.closed = n == 0 || n == -1;
        r.reset = n == -1;
        break;
    }
    r.data = std::move(buf_);
    buf_.clear();
    return r;
}

bool Conn::wait_closed(Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    for (;;) {
        long n = fill(left(deadline));
        buf_.clear();
        if (n > 0)
            continue;
        return n == 0 || n == -1;
    }
}

bool Conn::read_chunked(std::string& decoded, std::string& raw, Clock::time_point deadline)
{
    for (int guard = 0; guard < 1000000; ++guard) {
        auto line = read_until("\r\n", left(deadline));
        if (!line)
            return false;
        raw += *line;
        std::string_view sz = std::string_view(*line).substr(0, line->size() - 2);
        sz = sz.substr(0, sz.find(';'));
        sz = trim(sz);
        if (sz.empty() || sz.size() > 15)
            return false;
        std::size_t n = 0;
        for (char c : sz) {
            int d = (c >= '0' && c <= '9') ? c - '0'
                  : (lower(c) >= 'a' && lower(c) <= 'f') ? lower(c) - 'a' + 10 : -1;
            if (d < 0)
                return false;
            n = n * 16 + static_cast<std::size_t>(d);
        }
        if (n == 0) {
            for (int t = 0; t < 1000; ++t) { // trailer fields, then the empty line
                auto tl = read_until("\r\n", left(deadline));
                if (!tl)
                    return false;
                raw += *tl;
                if (*tl == "\r\n")
                    return true;
            }
            return false;
        }
        auto data = read_exact(n + 2, left(deadline));
        if (!data || data->compare(n, 2, "\r\n") != 0)
            return false;
        raw += *data;
        decoded.append(*data, 0, n);
    }
    return false;
}

std::optional<HttpRequest> parse_request_head(const std::string& head)
{
    HttpRequest r;
    r.raw_head = head;
    std::string_view h = head;
    std::size_t eol = h.find("\r\n");
    std::string_view line = h.substr(0, eol);
    std::size_t s1 = line.find(' ');
    std::size_t s2 = line.rfind(' ');
    if (s1 == std::string_view::npos || s2 == s1)
        return std::nullopt;
    r.method = line.substr(0, s1);
    r.target = line.substr(s1 + 1, s2 - s1 - 1);
    r.version = line.substr(s2 + 1);
    if (!parse_fields(h.substr(eol + 2), r.headers))
        return std::nullopt;
    return r;
}

std::optional<HttpRequest> Conn::read_request(Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    auto head = read_until("\r\n\r\n", timeout);
    if (!head)
        return std::nullopt;
    auto parsed = parse_request_head(*head);
    if (!parsed)
        return std::nullopt;
    HttpRequest& r = *parsed;
    auto te = r.header("Transfer-Encoding");
    auto cl = r.header("Content-Length");
    if (te && icontains(*te, "chunked")) {
        if (!read_chunked(r.body, r.raw_body, deadline))
            return std::nullopt;
    } else if (cl) {
        auto body = read_exact(std::stoul(*cl), left(deadline));
        if (!body)
            return std::nullopt;
        r.body = r.raw_body = *body;
    }
    return r;
}

std::optional<HttpResponse> Conn::read_response(Ms timeout, bool no_body)
{
    auto deadline = Clock::now() + timeout;
    HttpResponse r;
    for (int i = 0; i < 16; ++i) {
        auto head = read_until("\r\n\r\n", left(deadline));
        if (!head)
            return std::nullopt;
        std::string_view h = *head;
        std::size_t eol = h.find("\r\n");
        std::string_view line = h.substr(0, eol);
        std::size_t s1 = line.find(' ');
        if (s1 == std::string_view::npos || line.size() < s1 + 4)
            return std::nullopt;
        int status = 0;
        for (char c : line.substr(s1 + 1, 3)) {
            if (c < '0' || c > '9')
                return std::nullopt;
            status = status * 10 + (c - '0');
        }
        if (status >= 100 && status < 200 && status != 101) {
            r.informational.push_back(status);
            continue;
        }
        r.raw_head = *head;
        r.version = line.substr(0, s1);
        r.status = status;
        r.reason = line.size() > s1 + 5 ? std::string(line.substr(s1 + 5)) : std::string();
        if (!parse_fields(h.substr(eol + 2), r.headers))
            return std::nullopt;
        break;
    }
    if (r.status == 0)
        return std::nullopt;
    if (no_body || r.status == 204 || r.status == 304)
        return r;
    auto te = r.header("Transfer-Encoding");
    auto cl = r.header("Content-Length");
    if (te && icontains(*te, "chunked")) {
        std::string raw;
        if (!read_chunked(r.body, raw, deadline))
            return std::nullopt;
    } else if (cl) {
        auto body = read_exact(std::stoul(*cl), left(deadline));
        if (!body)
            return std::nullopt;
        r.body = *body;
    } else {
        auto rest = read_until_close(left(deadline));
        if (!rest.closed)
            return std::nullopt;
        r.body = std::move(rest.data);
        r.close_delimited = true;
    }
    return r;
}

std::optional<HttpResponse> Conn::roundtrip(std::string_view request, Ms timeout, bool no_body)
{
    if (!send_all(request, timeout))
        return std::nullopt;
    return read_response(timeout, no_body);
}

Conn connect_to(std::uint16_t port, const std::string& host, Ms timeout)
{
    socklen_t len = 0;
    sockaddr_storage ss = make_addr(host, port, len);
    Fd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (!fd.valid())
        throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
    int one = 1;
    ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        if (errno != EINPROGRESS)
            throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": " +
                                     std::strerror(errno));
        if (!(poll_one(fd.get(), POLLOUT, timeout) & (POLLOUT | POLLERR | POLLHUP)))
            throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": timed out");
        int err = 0;
        socklen_t el = sizeof err;
        ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &el);
        if (err != 0)
            throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": " +
                                     std::strerror(err));
    }
    return Conn(std::move(fd));
}

// ------------------------------------------------------------------ origins

Origin::Origin(Handler handler, int backlog) : handler_(std::move(handler))
{
    listen_ = listen_loopback(backlog, port_);
    set_nonblocking(listen_.get());
    acceptor_ = std::thread([this] { accept_loop(); });
}

Origin::Origin(Handler handler, const std::string& host, std::uint16_t port, int backlog)
    : handler_(std::move(handler)), host_(host), port_(port)
{
    listen_ = listen_on(host_, backlog, port_);
    set_nonblocking(listen_.get());
    acceptor_ = std::thread([this] { accept_loop(); });
}

Origin::~Origin()
{
    stop_ = true;
    if (acceptor_.joinable())
        acceptor_.join();
}

void Origin::accept_loop()
{
    while (!stop_.load()) {
        if (!(poll_one(listen_.get(), POLLIN, Ms(20)) & POLLIN))
            continue;
        int c = ::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        {
            std::lock_guard lk(mu_);
            ++connections_;
            live_.push_back(c);
            peak_ = std::max(peak_, count_open_locked());
        }
        cv_.notify_all();
        workers_.emplace_back([this, c] {
            Conn conn(Fd(c),
                      [this](std::string_view d) {
                          std::lock_guard lk(mu_);
                          received_.append(d);
                      },
                      &stop_);
            handler_(*this, conn);
            // Unlisted before `conn` closes the socket, so a listed
            // descriptor is never a reused number.
            std::lock_guard lk(mu_);
            live_.erase(std::find(live_.begin(), live_.end(), c));
        });
    }
    listen_.reset();
    for (auto& t : workers_)
        t.join();
}

std::string Origin::authority() const { return bracket(host_) + ":" + std::to_string(port_); }

std::string Origin::url(std::string_view path) const
{
    return "http://" + authority() + std::string(path);
}

std::size_t Origin::connections() const
{
    std::lock_guard lk(mu_);
    return connections_;
}

std::size_t Origin::count_open_locked() const
{
    // A peer's FIN or RST has reached the socket by the time the peer's next
    // connection can be accepted (loopback delivers in order), so a peer
    // that closed one before opening the next is never counted twice.
    std::size_t n = 0;
    for (int fd : live_)
        if (!(poll_one(fd, POLLRDHUP, Ms(0)) & (POLLRDHUP | POLLHUP | POLLERR)))
            ++n;
    return n;
}

std::size_t Origin::open_connections() const
{
    std::lock_guard lk(mu_);
    return count_open_locked();
}

std::size_t Origin::peak_connections() const
{
    std::lock_guard lk(mu_);
    return peak_;
}

std::string Origin::received() const
{
    std::lock_guard lk(mu_);
    return received_;
}

std::vector<HttpRequest> Origin::requests() const
{
    std::lock_guard lk(mu_);
    return requests_;
}

void Origin::record(HttpRequest r)
{
    {
        std::lock_guard lk(mu_);
        requests_.push_back(std::move(r));
    }
    cv_.notify_all();
}

void Origin::note(const std::string& s)
{
    {
        std::lock_guard lk(mu_);
        notes_.push_back(s);
    }
    cv_.notify_all();
}

std::vector<std::string> Origin::notes() const
{
    std::lock_guard lk(mu_);
    return notes_;
}

bool Origin::wait_requests(std::size_t n, Ms timeout) const
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return requests_.size() >= n; });
}

bool Origin::wait_connections(std::size_t n, Ms timeout) const
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return connections_ >= n; });
}

bool Origin::wait_notes(std::size_t n, Ms timeout) const
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return notes_.size() >= n; });
}

Origin::Handler http_origin(Responder responder)
{
    return [responder = std::move(responder)](Origin& o, Conn& c) {
        for (int i = 0; i < 100000 && !o.stopping(); ++i) {
            auto req = c.read_request(kWait);
            if (!req)
                return;
            Reply rep = responder(*req);
            o.record(std::move(*req));
            if (rep.delay.count() > 0)
                std::this_thread::sleep_for(rep.delay);
            if (!c.send_all(rep.raw) || rep.close)
                return;
        }
    };
}

Origin::Handler static_origin(std::string body)
{
    return http_origin([body = std::move(body)](const HttpRequest&) {
        return Reply{http_response(200, body)};
    });
}

Origin::Handler echo_origin()
{
    return [](Origin&, Conn& c) {
        for (;;) {
            long n = c.fill(Ms(30000));
            if (n <= 0)
                return;
            std::string data = std::move(c.buffer());
            c.buffer().clear();
            if (!c.send_all(data))
                return;
        }
    };
}

Origin::Handler silent_origin()
{
    return [](Origin& o, Conn& c) {
        while (!o.stopping()) {
            long n = c.fill(Ms(30000));
            if (n == 0 || n == -1)
                return;
        }
    };
}

HangListener::HangListener() : HangListener("127.0.0.1") {}

HangListener::HangListener(const std::string& host, std::uint16_t port) : host_(host), port_(port)
{
    listen_ = listen_on(host_, 0, port_);
    socklen_t len = 0;
    sockaddr_storage a = make_addr(host_, port_, len);
    // Fill the accept queue: connect until a connect stays pending.
    for (int i = 0; i < 16; ++i) {
        Fd fd(::socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
        int r = ::connect(fd.get(), reinterpret_cast<sockaddr*>(&a), len);
        bool done = r == 0 || (poll_one(fd.get(), POLLOUT, Ms(100)) & POLLOUT);
        fillers_.push_back(std::move(fd));
        if (!done)
            return; // this one is stuck in SYN-SENT: the queue is full
    }
    throw std::runtime_error("HangListener: accept queue never filled");
}

namespace {

// "0100007F:1F90" (/proc/net/tcp) or 32 hex digits + port (tcp6) as text.
std::string proc_address(const std::string& hex, std::uint16_t& port)
{
    std::size_t colon = hex.find(':');
    port = static_cast<std::uint16_t>(std::stoul(hex.substr(colon + 1), nullptr, 16));
    std::string addr = hex.substr(0, colon);
    unsigned char bytes[16] = {};
    std::size_t words = addr.size() / 8;
    for (std::size_t w = 0; w < words && w < 4; ++w) {
        // Each 32-bit word is printed in host (little-endian) order.
        auto v = static_cast<std::uint32_t>(std::stoul(addr.substr(w * 8, 8), nullptr, 16));
        std::memcpy(bytes + w * 4, &v, 4);
    }
    char text[INET6_ADDRSTRLEN] = {};
    if (words == 1) {
        ::inet_ntop(AF_INET, bytes, text, sizeof text);
        return std::string(text) + ":" + std::to_string(port);
    }
    ::inet_ntop(AF_INET6, bytes, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(port);
}

} // namespace

std::vector<TcpSocketInfo> tcp_sockets()
{
    std::vector<TcpSocketInfo> out;
    for (const char* path : {"/proc/net/tcp", "/proc/net/tcp6"}) {
        FILE* f = std::fopen(path, "r");
        if (!f)
            continue;
        char line[512];
        bool header = true;
        while (std::fgets(line, sizeof line, f)) {
            if (header) {
                header = false;
                continue;
            }
            char local[64], remote[64];
            unsigned state = 0;
            unsigned long inode = 0;
            // sl local rem st tx:rx tr:when retrnsmt uid timeout inode
            if (std::sscanf(line, " %*s %63s %63s %x %*s %*s %*s %*s %*s %lu", local, remote, &state,
                            &inode) != 4)
                continue;
            TcpSocketInfo t;
            std::uint16_t lp = 0;
            t.local = proc_address(local, lp);
            t.remote = proc_address(remote, t.remote_port);
            t.state = static_cast<int>(state);
            t.inode = inode;
            out.push_back(std::move(t));
        }
        std::fclose(f);
    }
    return out;
}

std::vector<unsigned long> socket_inodes(pid_t pid)
{
    std::vector<unsigned long> out;
    std::error_code ec;
    const std::string dir = "/proc/" + std::to_string(pid) + "/fd";
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
        std::error_code lec;
        std::string target = std::filesystem::read_symlink(it->path(), lec).string();
        if (!lec && target.rfind("socket:[", 0) == 0)
            out.push_back(std::stoul(target.substr(8)));
    }
    return out;
}

// ------------------------------------------------------------------ files

ScratchDir::ScratchDir(const std::string& prefix)
{
    std::string pattern = "/tmp/" + prefix + "-XXXXXX";
    if (!::mkdtemp(pattern.data()))
        throw std::runtime_error("mkdtemp failed");
    path_ = pattern;
    ::chmod(path_.c_str(), 0755);
}

ScratchDir::~ScratchDir() { run_command({"rm", "-rf", path_}); }

std::string ScratchDir::write(const std::string& name, const std::string& text, mode_t mode) const
{
    std::string path = file(name);
    std::ofstream(path, std::ios::trunc) << text;
    ::chmod(path.c_str(), mode);
    return path;
}

std::string read_file(const std::string& path)
{
    std::ifstream in(path);
    std::stringstream text;
    text << in.rdbuf();
    return text.str();
}

// ------------------------------------------------------------------ processes

namespace {

std::vector<char*> cargv(const std::vector<std::string>& v)
{
    std::vector<char*> out;
    for (const auto& s : v)
        out.push_back(const_cast<char*>(s.c_str()));
    out.push_back(nullptr);
    return out;
}

} // namespace

Child::Child(const std::vector<std::string>& argv, bool clean_env)
{
    int out_pipe[2], err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0)
        throw std::runtime_error("pipe2 failed");
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) {
        ::close(out_pipe[0]);
        ::close(out_pipe[1]);
        throw std::runtime_error("pipe2 failed");
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], 1);
    posix_spawn_file_actions_adddup2(&fa, err_pipe[1], 2);
    // A clean signal state: the test runner may have SIGPIPE etc. ignored.
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    std::vector<std::string> env_store{"PATH=/usr/local/bin:/usr/bin:/bin"};
    auto args = cargv(argv);
    auto envp = cargv(env_store);
    int rc = ::posix_spawnp(&pid_, args[0], &fa, &attr, args.data(),
                            clean_env ? envp.data() : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    ::close(out_pipe[1]);
    ::close(err_pipe[1]);
    if (rc != 0) {
        ::close(out_pipe[0]);
        ::close(err_pipe[0]);
        throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
    }
    reader_ = std::thread([this, o = out_pipe[0], e = err_pipe[0]] { reader(o, e); });
}

Child::~Child()
{
    if (!reaped_) {
        ::kill(pid_, SIGKILL);
        wait_exit(Ms(5000));
    }
    join_output(Ms(2000));
    if (reader_.joinable())
        reader_.join();
}

void Child::reader(int out_fd, int err_fd)
{
    // Bounded by the child: grandchildren do not inherit the pipes (CLOEXEC
    // in the child is not assumed though), so stop 2 s after the child is
    // reaped even if a pipe stays open.
    pollfd p[2] = {{out_fd, POLLIN, 0}, {err_fd, POLLIN, 0}};
    int open = 2;
    Clock::time_point reaped_at{};
    while (open > 0) {
        int r = ::poll(p, 2, 50);
        if (r < 0 && errno != EINTR)
            break;
        for (int i = 0; i < 2; ++i) {
            if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            char tmp[8192];
            ssize_t n = ::read(p[i].fd, tmp, sizeof tmp);
            if (n > 0) {
                std::lock_guard lk(mu_);
                (i == 0 ? out_ : err_).append(tmp, static_cast<std::size_t>(n));
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                ::close(p[i].fd);
                p[i].fd = -1;
                --open;
            }
        }
        cv_.notify_all();
        {
            std::lock_guard lk(mu_);
            if (reaped_ && reaped_at == Clock::time_point{})
                reaped_at = Clock::now();
        }
        if (reaped_at != Clock::time_point{} && Clock::now() - reaped_at > Ms(2000))
            break;
    }
    for (auto& q : p)
        if (q.fd >= 0)
            ::close(q.fd);
    {
        std::lock_guard lk(mu_);
        output_done_ = true;
    }
    cv_.notify_all();
}

std::string Child::out() const
{
    std::lock_guard lk(mu_);
    return out_;
}

std::string Child::err() const
{
    std::lock_guard lk(mu_);
    return err_;
}

bool Child::wait_output(const std::function<bool(const std::string&, const std::string&)>& pred,
                        Ms timeout)
{
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, timeout, [&] { return pred(out_, err_) || output_done_; }) &&
           pred(out_, err_);
}

bool Child::wait_exit(Ms timeout)
{
    if (reaped_)
        return true;
    auto deadline = Clock::now() + timeout;
    for (;;) {
        int st = 0;
        pid_t r = ::waitpid(pid_, &st, WNOHANG);
        if (r == pid_) {
            std::lock_guard lk(mu_);
            status_ = st;
            reaped_ = true;
            return true;
        }
        if (r < 0 && errno != EINTR)
            return false;
        if (Clock::now() >= deadline)
            return false;
        std::this_thread::sleep_for(Ms(5));
    }
}

void Child::kill_now(int sig)
{
    if (!reaped_)
        ::kill(pid_, sig);
}

void Child::join_output(Ms timeout)
{
    std::unique_lock lk(mu_);
    cv_.wait_for(lk, timeout, [&] { return output_done_; });
}

RunResult run_command(const std::vector<std::string>& argv, Ms timeout, bool clean_env)
{
    RunResult r;
    Child c(argv, clean_env);
    if (!c.wait_exit(timeout)) {
        r.timed_out = true;
        c.kill_now(SIGKILL);
        c.wait_exit(Ms(5000));
    }
    c.join_output(Ms(2000));
    r.out = c.out();
    r.err = c.err();
    if (c.exited() && WIFEXITED(c.status())) {
        r.exited = true;
        r.exit_code = WEXITSTATUS(c.status());
    } else if (c.exited() && WIFSIGNALED(c.status())) {
        r.term_signal = WTERMSIG(c.status());
    }
    return r;
}

RunResult curl(const std::vector<std::string>& args)
{
    std::vector<std::string> argv{"curl", "-q", "-sS", "--noproxy", "", "--max-time", "5"};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, Ms(8000), true);
}

std::string proxy_binary()
{
    const char* b = std::getenv("CPROXY_BIN");
    return (b && *b) ? b : "build/asan/cproxy";
}

std::vector<std::string> proxy_args(std::vector<std::string> extra)
{
    // An empty config file: a config installed on this machine must not
    // change what the tests see.
    std::vector<std::string> a{"-c", "/dev/null", "-l", "127.0.0.1:0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
}

namespace {

std::vector<std::string> with_binary(std::vector<std::string> args)
{
    std::string bin = proxy_binary();
    if (bin.find('/') == std::string::npos)
        bin = "./" + bin;
    if (!std::filesystem::exists(bin))
        throw std::runtime_error("proxy binary not found: " + bin + " (set CPROXY_BIN)");
    // One worker unless the test asks for more: tests of exact capacity,
    // resource counts and log order assume a single event loop.
    bool workers_given = std::any_of(args.begin(), args.end(), [](const std::string& arg) {
        return arg == "-w" || arg.rfind("--workers", 0) == 0;
    });
    if (!workers_given) args.insert(args.begin(), {"--workers", "1"});
    args.insert(args.begin(), bin);
    return args;
}

} // namespace

Proxy::Proxy(std::vector<std::string> args) : child_(with_binary(std::move(args)), false)
{
    const std::string marker = " listening on ";
    bool ok = child_.wait_output(
        [&](const std::string& out, const std::string&) {
            auto m = out.find(marker);
            return m != std::string::npos && out.find('\n', m) != std::string::npos;
        },
        kWait);
    std::string out = child_.out();
    if (!ok) {
        child_.kill_now(SIGKILL);
        child_.wait_exit(kWait);
        child_.join_output(Ms(1000));
        throw std::runtime_error("proxy did not print its listen line; stdout: [" + out +
                                 "] stderr: [" + child_.err() + "]");
    }
    std::size_t start = out.rfind('\n', out.find(marker));
    start = start == std::string::npos ? 0 : start + 1;
    line_ = out.substr(start, out.find('\n', start) - start);
    std::string_view rest = std::string_view(line_).substr(line_.find(marker) + marker.size());
    while (!rest.empty()) {
        std::size_t comma = rest.find(", ");
        std::string_view item = rest.substr(0, comma);
        std::size_t colon = item.rfind(':');
        if (colon == std::string_view::npos)
            throw std::runtime_error("bad listen line: " + line_);
        std::string host(item.substr(0, colon));
        if (host.size() >= 2 && host.front() == '[' && host.back() == ']')
            host = host.substr(1, host.size() - 2);
        int p = std::atoi(std::string(item.substr(colon + 1)).c_str());
        if (p <= 0 || p > 65535)
            throw std::runtime_error("bad port in listen line: " + line_);
        listeners_.emplace_back(host, static_cast<std::uint16_t>(p));
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 2);
    }
}

Proxy::~Proxy()
{
    if (!child_.exited()) {
        // The first SIGTERM lets open requests finish; a second one ends them.
        child_.kill_now(SIGTERM);
        if (!child_.wait_exit(Ms(500))) {
            child_.kill_now(SIGTERM);
        }
        if (!child_.exited() && !child_.wait_exit(Ms(3000))) {
            child_.kill_now(SIGKILL);
            child_.wait_exit(kWait);
        }
    }
    child_.join_output(Ms(2000));
    std::string e = child_.err();
    bool report = e.find("Sanitizer") != std::string::npos ||
                  e.find("runtime error:") != std::string::npos;
    if (std::uncaught_exceptions() == 0) {
        INFO("proxy stderr:\n" << e);
        CHECK_FALSE(report);
    } else if (report) {
        std::fprintf(stderr, "proxy sanitizer report:\n%s\n", e.c_str());
    }
}

std::string Proxy::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

bool Proxy::wait_err(const std::function<bool(const std::string&)>& pred, Ms timeout)
{
    return child_.wait_output([&](const std::string&, const std::string& e) { return pred(e); },
                              timeout);
}

namespace {

// The first complete line of `text` containing "stats on ", or "".
std::string find_stats_line(const std::string& text)
{
    std::size_t at = text.find("stats on ");
    if (at == std::string::npos)
        return "";
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos)
        return "";
    std::size_t start = text.rfind('\n', at);
    start = start == std::string::npos ? 0 : start + 1;
    return text.substr(start, end - start);
}

} // namespace

std::optional<Proxy::StatsLine> Proxy::stats_line(Ms timeout)
{
    child_.wait_output(
        [](const std::string& out, const std::string& err) {
            return !find_stats_line(err).empty() || !find_stats_line(out).empty();
        },
        timeout);
    StatsLine s;
    s.line = find_stats_line(child_.err());
    s.on_stderr = !s.line.empty();
    if (s.line.empty())
        s.line = find_stats_line(child_.out());
    if (s.line.empty())
        return std::nullopt;
    std::string item = s.line.substr(s.line.find("stats on ") + 9);
    item = item.substr(0, item.find_first_of(" \t\r"));
    std::size_t colon = item.rfind(':');
    if (colon == std::string::npos)
        return std::nullopt;
    s.host = item.substr(0, colon);
    if (s.host.size() >= 2 && s.host.front() == '[' && s.host.back() == ']')
        s.host = s.host.substr(1, s.host.size() - 2);
    int port = std::atoi(item.substr(colon + 1).c_str());
    if (port <= 0 || port > 65535)
        return std::nullopt;
    s.port = static_cast<std::uint16_t>(port);
    return s;
}

int Proxy::open_fds() const
{
    int n = 0;
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(
             "/proc/" + std::to_string(child_.pid()) + "/fd", ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec))
        ++n;
    return n;
}

std::optional<int> Proxy::stop(int sig, Ms timeout)
{
    child_.kill_now(sig);
    if (!child_.wait_exit(timeout))
        return std::nullopt;
    int st = child_.status();
    if (WIFEXITED(st))
        return WEXITSTATUS(st);
    if (WIFSIGNALED(st))
        return 128 + WTERMSIG(st);
    return -1;
}

std::vector<std::vector<std::string>> access_log_lines(const std::string& err)
{
    std::vector<std::vector<std::string>> out;
    std::size_t pos = 0;
    while (pos < err.size()) {
        std::size_t eol = err.find('\n', pos);
        if (eol == std::string::npos)
            break; // partial line: not yet complete
        std::string_view line(err.data() + pos, eol - pos);
        pos = eol + 1;
        std::vector<std::string> fields;
        std::size_t i = 0;
        while (i < line.size()) {
            while (i < line.size() && line[i] == ' ')
                ++i;
            std::size_t j = line.find(' ', i);
            if (j == std::string_view::npos)
                j = line.size();
            if (j > i)
                fields.emplace_back(line.substr(i, j - i));
            i = j;
        }
        if (fields.size() == 11)
            out.push_back(std::move(fields));
    }
    return out;
}

} // namespace itest
