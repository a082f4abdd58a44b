// Integration-test harness: the real cproxy binary, origin servers run by the
// test on 127.0.0.1:0 (or ::1, 127.0.0.2, ...), raw socket clients, a command
// runner (for curl) and a view of the namespace's TCP sockets (/proc/net).
//
// Contracts shared by everything here:
//   - every wait is bounded by an explicit timeout (kWait unless told);
//   - traffic only goes to 127.0.0.0/8 or ::1;
//   - sockets are non-blocking and driven by poll(), so a silent peer can
//     never hang a test.
// Tests that resolve names REQUIRE $CPROXY_TEST_NETNS (set by test/run, which
// runs the binary under `unshare -n -m` with its own /etc/hosts and
// /etc/resolv.conf); outside that namespace they fail rather than touch the
// machine's resolver. The proxy under test is $CPROXY_BIN (build/asan/cproxy).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <sys/types.h>

namespace itest {

using Ms = std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// Default bound for any single wait in a test.
inline constexpr Ms kWait{5000};

// ---------------------------------------------------------------- utilities

// Move-only owner of a file descriptor.
class Fd {
public:
    Fd() = default;
    explicit Fd(int fd) noexcept : fd_(fd) {}
    Fd(Fd&& o) noexcept : fd_(o.release()) {}
    Fd& operator=(Fd&& o) noexcept;
    Fd(const Fd&) = delete;
    Fd& operator=(const Fd&) = delete;
    ~Fd() { reset(); }

    int get() const noexcept { return fd_; }
    bool valid() const noexcept { return fd_ >= 0; }
    int release() noexcept { int f = fd_; fd_ = -1; return f; }
    void reset(int fd = -1) noexcept;

private:
    int fd_ = -1;
};

// Case-insensitive ASCII comparison / search.
bool iequals(std::string_view a, std::string_view b);
bool icontains(std::string_view hay, std::string_view needle);

// Deterministic pseudo-random bytes (all 256 values occur).
std::string random_bytes(std::size_t n, std::uint64_t seed);

// FNV-1a 64, printable in failure messages instead of megabytes of data.
std::uint64_t fnv1a(std::string_view data);

// Milliseconds elapsed since `start`.
long long elapsed_ms(Clock::time_point start);

// Polls pred every 10 ms until it is true or timeout passes; returns pred().
bool wait_until(const std::function<bool()>& pred, Ms timeout = kWait);

// A TCP port on 127.0.0.1 that nothing listens on (bound, then closed).
std::uint16_t unused_port();

// A listening socket on 127.0.0.1, on a free port stored in `port`.
Fd listen_loopback(int backlog, std::uint16_t& port);

// True when a socket can be bound to [::1]:0 here.
bool ipv6_loopback_available();

// Base64 of "user:pass", for Proxy-Authorization headers.
std::string base64(std::string_view in);

// ------------------------------------------------------------------ HTTP data

using Headers = std::vector<std::pair<std::string, std::string>>;

// First value of header `name` (case-insensitive), if present.
std::optional<std::string> find_header(const Headers& h, std::string_view name);
// Number of header fields named `name`.
std::size_t count_header(const Headers& h, std::string_view name);

struct HttpRequest {
    std::string method, target, version;
    Headers headers;
    std::string raw_head;   // request line + fields + final CRLF CRLF
    std::string body;       // decoded body
    std::string raw_body;   // body bytes exactly as received (chunk framing kept)

    std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
    std::size_t count(std::string_view name) const { return count_header(headers, name); }
};

struct HttpResponse {
    std::string version;
    int status = 0;
    std::string reason;
    Headers headers;
    std::string raw_head;
    std::string body;             // decoded body
    bool close_delimited = false; // body ended by EOF
    std::vector<int> informational; // 1xx statuses seen before this one

    std::optional<std::string> header(std::string_view name) const { return find_header(headers, name); }
    std::size_t count(std::string_view name) const { return count_header(headers, name); }
};

// Splits "Name: value" lines of a head (after its first line); false on a
// line without a colon. Leading/trailing blanks of values are trimmed.
bool parse_fields(std::string_view head_after_first_line, Headers& out);

// A request head (request line and fields, ending in CRLF CRLF; no body).
std::optional<HttpRequest> parse_request_head(const std::string& head);

// "HTTP/1.1 <status> <reason>\r\nContent-Length: N\r\n<extra>\r\n<body>".
// `extra` is zero or more complete "Name: value\r\n" lines.
std::string http_response(int status, std::string_view body, std::string_view extra = {});

// ------------------------------------------------------------------- streams

// A connected non-blocking socket with a read buffer. Every call is bounded
// by its timeout. `tap` (if set) sees every received byte; `stop` (if set)
// aborts waits early when it becomes true.
class Conn {
public:
    explicit Conn(Fd fd, std::function<void(std::string_view)> tap = {},
                  const std::atomic<bool>* stop = nullptr);
    Conn(Conn&&) = default;
    Conn& operator=(Conn&&) = default;

    int fd() const noexcept { return fd_.get(); }

    // Sends everything; false on error or timeout.
    bool send_all(std::string_view data, Ms timeout = kWait);
    void shutdown_write();
    void close() { fd_.reset(); }

    // Receives into buffer(): >0 bytes read, 0 EOF, -1 error/reset, -2 timeout.
    long fill(Ms timeout);
    std::string& buffer() noexcept { return buf_; }
    bool eof() const noexcept { return eof_; }

    // Data up to and including `delim`, consumed from the buffer.
    std::optional<std::string> read_until(std::string_view delim, Ms timeout = kWait);
    std::optional<std::string> read_exact(std::size_t n, Ms timeout = kWait);

    struct UntilClose {
        std::string data;  // everything received (buffer first)
        bool closed = false; // EOF or reset seen (false: timed out)
        bool reset = false;
    };
    UntilClose read_until_close(Ms timeout = kWait);

    // Waits for the peer to close (EOF/reset), discarding data; false on timeout.
    bool wait_closed(Ms timeout = kWait);

    // One request (head + body by Content-Length or chunked).
    std::optional<HttpRequest> read_request(Ms timeout = kWait);
    // One response; 1xx are collected and skipped. `no_body` for replies to HEAD.
    std::optional<HttpResponse> read_response(Ms timeout = kWait, bool no_body = false);

    // One HTTP exchange: send `request`, read one response.
    std::optional<HttpResponse> roundtrip(std::string_view request, Ms timeout = kWait,
                                          bool no_body = false);

private:
    bool read_chunked(std::string& decoded, std::string& raw, Clock::time_point deadline);
    Ms left(Clock::time_point deadline) const;

    Fd fd_;
    std::string buf_;
    bool eof_ = false;
    std::function<void(std::string_view)> tap_;
    const std::atomic<bool>* stop_ = nullptr;
};

// Connects to host:port (IPv4 or IPv6 literal); throws std::runtime_error on
// failure or timeout.
Conn connect_to(std::uint16_t port, const std::string& host = "127.0.0.1", Ms timeout = kWait);

// ------------------------------------------------------------------ origins

// A TCP server on 127.0.0.1:0 (or on `host`:`port`, host a loopback literal
// such as "::1" or "127.0.0.2"). Each accepted connection runs `handler` on
// its own thread; the origin records every received byte, the connection
// count and the requests its HTTP helpers parsed.
class Origin {
public:
    using Handler = std::function<void(Origin&, Conn&)>;

    explicit Origin(Handler handler, int backlog = 128);
    // Throws std::runtime_error when host:port cannot be bound.
    Origin(Handler handler, const std::string& host, std::uint16_t port = 0, int backlog = 128);
    ~Origin();
    Origin(const Origin&) = delete;
    Origin& operator=(const Origin&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    const std::string& host() const noexcept { return host_; }
    std::string authority() const; // "127.0.0.1:PORT", "[::1]:PORT"
    std::string url(std::string_view path = "/") const; // "http://" + authority() + path

    std::size_t connections() const;
    // Connections open at once, as the peer holds them: a connection counts
    // from its accept until the peer closes (or shuts down) its side or the
    // handler returns. Checked at each accept, so the peak is exact for a
    // peer that closes a connection before it opens the next one; a handler
    // that closes first (rather than shutdown_write and wait) stops counting
    // then. peak_connections() is the most seen at once.
    std::size_t open_connections() const;
    std::size_t peak_connections() const;
    std::string received() const;
    std::vector<HttpRequest> requests() const;
    void record(HttpRequest r);
    // Per-connection flags helpers can raise (e.g. "saw EOF").
    void note(const std::string& s);
    std::vector<std::string> notes() const;

    bool wait_requests(std::size_t n, Ms timeout = kWait) const;
    bool wait_connections(std::size_t n, Ms timeout = kWait) const;
    bool wait_notes(std::size_t n, Ms timeout = kWait) const;
    bool stopping() const noexcept { return stop_.load(); }

private:
    void accept_loop();
    std::size_t count_open_locked() const;

    Handler handler_;
    std::string host_ = "127.0.0.1";
    Fd listen_;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread acceptor_;
    std::vector<std::thread> workers_; // only touched by the acceptor thread
    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::size_t connections_ = 0;
    std::vector<int> live_;    // sockets of running handlers, open while listed
    std::size_t peak_ = 0;
    std::string received_;
    std::vector<HttpRequest> requests_;
    std::vector<std::string> notes_;
};

// What an HTTP origin sends back for one request.
struct Reply {
    std::string raw;       // bytes sent as the response
    bool close = false;    // close the connection after sending
    Ms delay{0};           // wait before sending
};
using Responder = std::function<Reply(const HttpRequest&)>;

// Keep-alive HTTP origin: reads requests, records them, sends responder's reply.
Origin::Handler http_origin(Responder r);
// Replies 200 with `body` to every request (keep-alive).
Origin::Handler static_origin(std::string body);
// Echoes every byte back until EOF.
Origin::Handler echo_origin();
// Reads (and records) but never answers; holds the connection until stop.
Origin::Handler silent_origin();

// A listener whose accept queue is full and that never accepts: a connect()
// to it stays pending (SYN dropped) until the connector gives up. Binds
// 127.0.0.1:0, or `host`:`port` (e.g. "::1"). One of its own filler sockets
// stays in SYN-SENT toward it.
class HangListener {
public:
    HangListener();
    explicit HangListener(const std::string& host, std::uint16_t port = 0);
    std::uint16_t port() const noexcept { return port_; }
    const std::string& host() const noexcept { return host_; }

private:
    std::string host_ = "127.0.0.1";
    Fd listen_;
    std::vector<Fd> fillers_;
    std::uint16_t port_ = 0;
};

// One TCP socket from /proc/net/tcp or /proc/net/tcp6 of this namespace.
struct TcpSocketInfo {
    std::string local, remote; // "127.0.0.1:80", "[::1]:80"
    std::uint16_t remote_port = 0;
    int state = 0;             // the kernel's TCP_* number (2 = SYN-SENT)
    unsigned long inode = 0;
};
inline constexpr int kTcpSynSent = 2;
// Every TCP socket of this network namespace (IPv4 and IPv6).
std::vector<TcpSocketInfo> tcp_sockets();
// The socket inodes process `pid` holds open.
std::vector<unsigned long> socket_inodes(pid_t pid);

// ------------------------------------------------------------------ files

// A directory under /tmp for a test's files, removed with them afterwards.
class ScratchDir {
public:
    explicit ScratchDir(const std::string& prefix = "cproxy-test");
    ~ScratchDir();
    ScratchDir(const ScratchDir&) = delete;
    ScratchDir& operator=(const ScratchDir&) = delete;

    const std::string& path() const noexcept { return path_; }
    std::string file(const std::string& name) const { return path_ + "/" + name; }
    // Writes (truncating in place) the file `name` with `mode`; returns its path.
    std::string write(const std::string& name, const std::string& text, mode_t mode = 0600) const;

private:
    std::string path_;
};

// The whole file, or "" if it cannot be read.
std::string read_file(const std::string& path);

// ------------------------------------------------------------------ processes

struct RunResult {
    int exit_code = -1;    // valid when exited
    int term_signal = 0;   // set when killed by a signal
    bool exited = false;
    bool timed_out = false;
    std::string out, err;
};

// Runs argv[0] (PATH searched) with stdin /dev/null, captures stdout/stderr;
// kills it after `timeout`. With clean_env the child sees only PATH.
RunResult run_command(const std::vector<std::string>& argv, Ms timeout = kWait,
                      bool clean_env = false);

// curl with ~/.curlrc and proxy env ignored, a 5 s cap, silent but with errors.
RunResult curl(const std::vector<std::string>& args);

// Path of the binary under test: $CPROXY_BIN or "build/asan/cproxy".
std::string proxy_binary();

// A running child process whose stdout/stderr are collected by a thread.
class Child {
public:
    Child(const std::vector<std::string>& argv, bool clean_env);
    ~Child();
    Child(const Child&) = delete;
    Child& operator=(const Child&) = delete;

    pid_t pid() const noexcept { return pid_; }
    std::string out() const;
    std::string err() const;
    // Waits until pred(stdout, stderr) holds or the child's output ends.
    bool wait_output(const std::function<bool(const std::string&, const std::string&)>& pred,
                     Ms timeout);
    // Reaps the child if it exited within timeout.
    bool wait_exit(Ms timeout);
    bool exited() const noexcept { return reaped_; }
    int status() const noexcept { return status_; } // raw waitpid status
    void kill_now(int sig);
    void join_output(Ms timeout); // waits for EOF on both pipes

private:
    void reader(int out_fd, int err_fd);

    pid_t pid_ = -1;
    bool reaped_ = false;
    int status_ = 0;
    std::thread reader_;
    mutable std::mutex mu_;
    std::condition_variable cv_;
    std::string out_, err_;
    bool output_done_ = false;
};

// The proxy under test, started with `-l ...` arguments given by the caller.
// The constructor waits (bounded) for the listen line and throws with the
// child's stderr if it does not come. The destructor sends SIGTERM, a second
// one after 0.5 s (which ends open requests), SIGKILL after 3 s more, and
// CHECKs that no sanitizer report appeared on stderr.
class Proxy {
public:
    explicit Proxy(std::vector<std::string> args);
    ~Proxy();
    Proxy(const Proxy&) = delete;
    Proxy& operator=(const Proxy&) = delete;

    std::uint16_t port(std::size_t i = 0) const { return listeners_.at(i).second; }
    const std::vector<std::pair<std::string, std::uint16_t>>& listeners() const { return listeners_; }
    const std::string& listen_line() const noexcept { return line_; }
    std::string url() const; // "http://127.0.0.1:PORT" of the first listener
    pid_t pid() const noexcept { return child_.pid(); }
    std::string err() const { return child_.err(); }
    std::string out() const { return child_.out(); }
    bool wait_err(const std::function<bool(const std::string&)>& pred, Ms timeout = kWait);
    int open_fds() const; // descriptors the proxy holds (from /proc)

    // Sends sig, waits up to timeout; exit code or nullopt if still running.
    // Killed-by-signal is reported as 128 + signal.
    std::optional<int> stop(int sig, Ms timeout);

    Conn connect(Ms timeout = kWait) const { return connect_to(port(), "127.0.0.1", timeout); }

    // The start-up line announcing the --stats-listen address,
    // "cproxy: stats on ADDR:PORT", waited for (bounded) like the listen
    // line. It is looked for on stderr, where it belongs, and on stdout too,
    // so that a line on the wrong stream still yields the port; `on_stderr`
    // and `line` let a test check where and how it was printed. nullopt when
    // no such complete line came within timeout (or the proxy exited).
    struct StatsLine {
        std::string line;       // the whole line, without its newline
        std::string host;       // brackets of an IPv6 literal removed
        std::uint16_t port = 0;
        bool on_stderr = false;
    };
    std::optional<StatsLine> stats_line(Ms timeout = kWait);

private:
    Child child_;
    std::string line_;
    std::vector<std::pair<std::string, std::uint16_t>> listeners_;
};

// Builds proxy args: {"-c", "/dev/null", "-l", "127.0.0.1:0"} + extra.
std::vector<std::string> proxy_args(std::vector<std::string> extra = {});

// Access-log lines (stderr lines with 11 space-separated fields) in `err`.
std::vector<std::vector<std::string>> access_log_lines(const std::string& err);

} // namespace itest
