// Running cproxy as a daemon: the config file and -t, allow/deny rules,
// auth_file, reload on SIGHUP, log reopening on SIGUSR1, draining on SIGTERM,
// the pid file, dropping root, and sd_notify messages.
#include "harness.hpp"

#include <csignal>
#include <cstdlib>
#include <fstream>
#include <sstream>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <poll.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

RunResult run_proxy(std::vector<std::string> args)
{
    args.insert(args.begin(), proxy_binary());
    return run_command(args, kWait);
}

std::string basic(const std::string& user_pass)
{
    return "Proxy-Authorization: Basic " + base64(user_pass) + "\r\n";
}

std::string get(const Origin& o, const std::string& extra = "", const std::string& path = "/")
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n" + extra + "\r\n";
}

int status_of(const Proxy& p, const std::string& request)
{
    Conn c = p.connect();
    auto r = c.roundtrip(request);
    return r ? r->status : 0;
}

// The access-log lines of a file, each split into its fields.
std::vector<std::vector<std::string>> log_file_lines(const std::string& path)
{
    return access_log_lines(read_file(path));
}

// One field of /proc/PID/status, e.g. "Uid:\t65534\t65534\t65534\t65534".
std::string proc_status_line(pid_t pid, const std::string& key)
{
    std::ifstream in("/proc/" + std::to_string(pid) + "/status");
    std::string line;
    while (std::getline(in, line))
        if (line.rfind(key + ":", 0) == 0)
            return line;
    return "";
}

// A datagram socket standing in for systemd's notification socket.
class NotifySocket {
public:
    explicit NotifySocket(const std::string& path) : path_(path)
    {
        fd_.reset(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
        sockaddr_un address{};
        address.sun_family = AF_UNIX;
        path.copy(address.sun_path, sizeof address.sun_path - 1);
        if (::bind(fd_.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0)
            throw std::runtime_error("bind " + path);
    }
    ~NotifySocket() { ::unlink(path_.c_str()); }
    // The next message, or "" after `timeout`.
    std::string next(Ms timeout = kWait)
    {
        pollfd p{fd_.get(), POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(timeout.count())) != 1)
            return "";
        char message[512];
        ssize_t n = ::recv(fd_.get(), message, sizeof message, 0);
        return n > 0 ? std::string(message, static_cast<std::size_t>(n)) : "";
    }

private:
    std::string path_;
    Fd fd_;
};

// A client whose request `silent` has received and will never answer.
Conn stuck_request(const Proxy& p, Origin& silent)
{
    Conn busy = p.connect();
    REQUIRE(busy.send_all(get(silent)));
    REQUIRE(silent.wait_connections(1));
    return busy;
}

std::uint16_t local_port(const Conn& c)
{
    sockaddr_in address{};
    socklen_t length = sizeof address;
    ::getsockname(c.fd(), reinterpret_cast<sockaddr*>(&address), &length);
    return ntohs(address.sin_port);
}

std::string connect_request(const std::string& authority, const std::string& extra = "")
{
    return "CONNECT " + authority + " HTTP/1.1\r\nHost: " + authority + "\r\n" + extra + "\r\n";
}

bool echoes(Conn& tunnel, const std::string& data)
{
    if (!tunnel.send_all(data))
        return false;
    auto back = tunnel.read_exact(data.size());
    return back && *back == data;
}

} // namespace

TEST_CASE("integration: a config file sets the listen address, auth and timeouts", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin o(static_origin("from origin"));
    std::string conf = dir.write("cproxy.conf",
                                 "# test configuration\n"
                                 "listen 127.0.0.1:0\n"
                                 "auth \"alice:open sesame\"\n"
                                 "timeout_idle 300ms   # short, so the test sees it\n"
                                 "via edge-7\n");
    Proxy p({"-c", conf});
    CHECK(status_of(p, get(o)) == 407);
    Conn c = p.connect();
    auto r = c.roundtrip(get(o, basic("alice:open sesame")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "from origin");
    CHECK(r->header("Via") == "1.1 edge-7");
    REQUIRE(o.wait_requests(1));
    CHECK(o.requests()[0].header("Via") == "1.1 edge-7");
    // timeout_idle from the file closes the kept-alive connection.
    auto start = Clock::now();
    CHECK(c.wait_closed(Ms(3000)));
    CHECK(elapsed_ms(start) < 2000);
}

TEST_CASE("integration: command-line options win over the config file", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin o(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:1\nauth alice:one\nvia off\n");
    // -l replaces the file's listen list (port 1 would need root and be in use
    // by nothing; binding 127.0.0.1:0 shows the file's entry was dropped).
    Proxy p({"-c", conf, "-l", "127.0.0.1:0", "--auth", "bob:two"});
    REQUIRE(p.listeners().size() == 1);
    CHECK(status_of(p, get(o, basic("alice:one"))) == 407);
    Conn c = p.connect();
    auto r = c.roundtrip(get(o, basic("bob:two")));
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK_FALSE(r->header("Via"));  // via off, from the file, still applies
    REQUIRE(o.wait_requests(1));
    CHECK_FALSE(o.requests()[0].header("Via"));
}

TEST_CASE("integration: -t checks the configuration without binding, exit 0 or 2", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    // -t must not bind: a listen address already taken does not fail it.
    Fd taken(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(taken.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
    socklen_t length = sizeof address;
    ::getsockname(taken.get(), reinterpret_cast<sockaddr*>(&address), &length);
    REQUIRE(::listen(taken.get(), 1) == 0);
    std::string port = std::to_string(ntohs(address.sin_port));
    std::string good = dir.write("good.conf", "listen 127.0.0.1:" + port + "\ntimeout_idle 5s\n");
    auto ok = run_proxy({"-t", "-c", good});
    INFO(ok.err);
    CHECK(ok.exited);
    CHECK(ok.exit_code == 0);
    CHECK(ok.out == "cproxy: configuration " + good + " is ok\n");

    std::string bad = dir.write("bad.conf",
                                "listen 0.0.0.0:" + port + "\n"
                                "timeout_idle forever\n"
                                "colour blue\n"
                                "auth_file " + dir.file("missing") + "\n");
    auto failed = run_proxy({"-t", "-c", bad});
    CHECK(failed.exit_code == 2);
    CHECK(failed.out.empty());
    CHECK(failed.err.find(bad + ":3: unknown directive 'colour'") != std::string::npos);
    CHECK(failed.err.find(bad + ":2: timeout_idle: 'forever' is not a duration") != std::string::npos);
    CHECK(failed.err.find(bad + ":4: auth_file: cannot read '" + dir.file("missing") + "'") !=
          std::string::npos);
    // auth_file gave no user, so nothing restricts the 0.0.0.0 listener either.
    CHECK(failed.err.find("refusing to run an open proxy") != std::string::npos);
    CHECK(failed.err.find("cproxy: configuration " + bad + ": 4 errors") != std::string::npos);

    // The open-proxy refusal is one of the errors -t reports.
    std::string open = dir.write("open.conf", "listen 0.0.0.0:" + port + "\n");
    auto refused = run_proxy({"-t", "-c", open});
    CHECK(refused.exit_code == 2);
    CHECK(refused.err.find("refusing to run an open proxy: listen 0.0.0.0:" + port +
                           " is not a loopback address and no auth, auth_file or allow rule restricts "
                           "who may use it") != std::string::npos);
    // Files a start would open are checked too.
    std::string unwritable = dir.write("files.conf", "access_log /nonexistent/dir/access.log\n"
                                                     "pid_file /nonexistent/dir/cproxy.pid\n");
    auto files = run_proxy({"-t", "-c", unwritable});
    CHECK(files.exit_code == 2);
    CHECK(files.err.find("cannot create log file /nonexistent/dir/access.log: No such file or directory") !=
          std::string::npos);
    CHECK(files.err.find("cannot create pid file /nonexistent/dir/cproxy.pid: No such file or directory") !=
          std::string::npos);
    // Allowing only some clients makes it acceptable.
    std::string restricted = dir.write("restricted.conf", "listen 0.0.0.0:" + port + "\nallow 10.0.0.0/8\n");
    CHECK(run_proxy({"-t", "-c", restricted}).exit_code == 0);
}

TEST_CASE("integration: a bad config file stops the start with exit 2 and FILE:LINE", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n\nmax_connections lots\n");
    auto r = run_proxy({"-c", conf});
    CHECK(r.exit_code == 2);
    CHECK(r.out.find("listening") == std::string::npos);
    CHECK(r.err.find(conf + ":3: max_connections: 'lots' is not a number") != std::string::npos);
    auto missing = run_proxy({"-c", dir.file("absent.conf")});
    CHECK(missing.exit_code == 2);
    CHECK(missing.err.find("cannot read config file '" + dir.file("absent.conf") + "'") != std::string::npos);
}

TEST_CASE("integration: deny and allow rules answer refused clients 403", "[integration][ops]")
{
    Origin o(static_origin("ok"));
    {
        Proxy p(proxy_args({"--deny", "127.0.0.0/8", "-v"}));
        Conn c = p.connect();
        auto r = c.read_response();  // the refusal comes without waiting for a request
        REQUIRE(r);
        CHECK(r->status == 403);
        CHECK(r->header("Connection") == "close");
        CHECK(c.wait_closed());
        CHECK(p.wait_err([](const std::string& err) {
            auto lines = access_log_lines(err);
            return !lines.empty() && lines.back()[5] == "403" && lines.back()[10] == "denied";
        }));
        CHECK(o.connections() == 0);
    }
    {
        // First match wins: 127.0.0.1 is allowed before the /8 is denied.
        Proxy p(proxy_args({"--allow", "127.0.0.1", "--deny", "127.0.0.0/8"}));
        CHECK(status_of(p, get(o)) == 200);
    }
    {
        // With an allow list, addresses it does not name are refused.
        Proxy p(proxy_args({"--allow", "10.0.0.0/8,::1"}));
        CHECK(status_of(p, get(o)) == 403);
    }
}

TEST_CASE("integration: auth_file users are accepted; a world-readable file is warned about", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin o(static_origin("ok"));
    std::string users = dir.write("users", "# proxy users\ncarol:pw3\ndave:pw4\n", 0644);
    Proxy p(proxy_args({"--auth-file", users}));
    CHECK(status_of(p, get(o)) == 407);
    CHECK(status_of(p, get(o, basic("carol:pw3"))) == 200);
    CHECK(status_of(p, get(o, basic("dave:pw4"))) == 200);
    CHECK(status_of(p, get(o, basic("dave:pw3"))) == 407);
    CHECK(p.err().find("warning: --auth-file: " + users + " is readable by every user") != std::string::npos);
}

TEST_CASE("integration: SIGHUP changes auth for new requests while an open tunnel survives", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin echo(echo_origin());
    Origin web(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\nconnect_ports any\nauth alice:one\n");
    Proxy p({"-c", conf});

    Conn tunnel = p.connect();
    REQUIRE(tunnel.send_all(connect_request(echo.authority(), basic("alice:one"))));
    auto established = tunnel.read_until("\r\n\r\n");
    REQUIRE(established);
    REQUIRE(established->rfind("HTTP/1.1 200", 0) == 0);
    REQUIRE(echoes(tunnel, "before reload"));
    Conn kept = p.connect();  // an idle keep-alive client authenticated as alice
    auto first = kept.roundtrip(get(web, basic("alice:one")));
    REQUIRE(first);
    REQUIRE(first->status == 200);

    dir.write("cproxy.conf", "listen 127.0.0.1:0\nconnect_ports any\nauth bob:two\ntimeout_idle 30s\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([&](const std::string& err) {
        return err.find("info: configuration reloaded from " + conf) != std::string::npos;
    }));
    CHECK(echoes(tunnel, "after reload"));  // the tunnel was not dropped
    CHECK(status_of(p, get(web, basic("alice:one"))) == 407);
    CHECK(status_of(p, get(web, basic("bob:two"))) == 200);
    // The kept connection is still open; its next request meets the new rules.
    auto second = kept.roundtrip(get(web, basic("alice:one")));
    REQUIRE(second);
    CHECK(second->status == 407);
    // The same listen line is no change, so no restart warning.
    CHECK(p.err().find("reload: listen changed but take effect only at a restart") == std::string::npos);
}

TEST_CASE("integration: an invalid config on SIGHUP is logged and the old one kept", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin web(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\nauth alice:one\n");
    Proxy p({"-c", conf});
    dir.write("cproxy.conf", "listen 127.0.0.1:0\nauth bob:two\ntimeout_idle 5 s\nlisten 127.0.0.1:1\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([](const std::string& err) {
        return err.find("reload failed: 1 error; the running configuration stays") != std::string::npos;
    }));
    CHECK(p.err().find("error: " + conf + ":3: timeout_idle takes one value") != std::string::npos);
    CHECK(status_of(p, get(web, basic("alice:one"))) == 200);
    CHECK(status_of(p, get(web, basic("bob:two"))) == 407);

    // A valid config that changes listen: the rest applies, listen waits for a restart.
    dir.write("cproxy.conf", "listen 127.0.0.1:1\nauth bob:two\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([](const std::string& err) {
        return err.find("reload: listen changed but take effect only at a restart") != std::string::npos &&
               err.find("configuration reloaded") != std::string::npos;
    }));
    CHECK(status_of(p, get(web, basic("bob:two"))) == 200);
}

TEST_CASE("integration: a reload that would leave a non-loopback listener open to anyone fails",
          "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin web(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 0.0.0.0:0\nallow 127.0.0.0/8\n");
    Proxy p({"-c", conf});
    // The new file listens on loopback only, so on its own it is fine; but the
    // running listener stays 0.0.0.0 until a restart.
    dir.write("cproxy.conf", "listen 127.0.0.1:0\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([](const std::string& err) {
        return err.find("reload failed: refusing to run an open proxy: listen 0.0.0.0:0 is not a loopback "
                        "address") != std::string::npos;
    }));
    CHECK(status_of(p, get(web)) == 200);  // the old rules still run
}

TEST_CASE("integration: new allow/deny rules apply to the next request of a kept connection",
          "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin web(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n");
    Proxy p({"-c", conf});
    Conn kept = p.connect();
    auto first = kept.roundtrip(get(web));
    REQUIRE(first);
    CHECK(first->status == 200);
    dir.write("cproxy.conf", "listen 127.0.0.1:0\ndeny 127.0.0.1\n");
    ::kill(p.pid(), SIGHUP);
    REQUIRE(p.wait_err([](const std::string& err) { return err.find("configuration reloaded") != std::string::npos; }));
    auto second = kept.roundtrip(get(web));
    REQUIRE(second);
    CHECK(second->status == 403);
    CHECK(kept.wait_closed());
}

TEST_CASE("integration: a small max_header_size needs no large buffers and limits heads",
          "[integration][ops]")
{
    Origin web(static_origin("ok"));
    Proxy p(proxy_args({"--max-header-size", "2k"}));
    CHECK(p.wait_err([](const std::string& err) { return err.find("info: up to") != std::string::npos; }));
    CHECK(status_of(p, get(web, "X-Fill: " + std::string(1000, 'a') + "\r\n")) == 200);
    CHECK(status_of(p, get(web, "X-Fill: " + std::string(3000, 'a') + "\r\n")) == 431);
}

TEST_CASE("integration: SIGTERM lets an in-flight request finish, then exits 0", "[integration][ops]")
{
    Origin slow(http_origin([](const HttpRequest&) { return Reply{http_response(200, "slow answer"), false, Ms(800)}; }));
    Proxy p(proxy_args({"--shutdown-timeout", "5s"}));
    Conn idle = p.connect();
    Conn busy = p.connect();
    REQUIRE(busy.send_all(get(slow)));
    REQUIRE(slow.wait_requests(1));
    auto start = Clock::now();
    ::kill(p.pid(), SIGTERM);
    CHECK(idle.wait_closed(Ms(1000)));  // idle connections are closed at once
    auto r = busy.read_response();
    REQUIRE(r);
    CHECK(r->status == 200);
    CHECK(r->body == "slow answer");
    CHECK(r->header("Connection") == "close");
    auto code = p.stop(0, Ms(3000));  // signal 0: only wait for the exit
    REQUIRE(code);
    CHECK(*code == 0);
    CHECK(elapsed_ms(start) < 3000);
    CHECK(p.err().find("info: stopping: 2 connections open, waiting up to 5000 ms") != std::string::npos);
    CHECK(p.err().find("info: stopped: 2 connections accepted, 0 refused, 1 requests") != std::string::npos);
}

TEST_CASE("integration: shutdown_timeout bounds the wait for a stuck request", "[integration][ops]")
{
    Origin silent(silent_origin());
    Proxy p(proxy_args({"--shutdown-timeout", "500ms"}));
    Conn busy = stuck_request(p, silent);
    auto start = Clock::now();
    auto code = p.stop(SIGTERM, Ms(3000));
    REQUIRE(code);
    CHECK(*code == 0);
    CHECK(elapsed_ms(start) >= 400);
    CHECK(elapsed_ms(start) < 2500);
    CHECK(busy.wait_closed(Ms(1000)));
    CHECK(p.err().find("info: closing 1 connections still open") != std::string::npos);
}

TEST_CASE("integration: a second SIGTERM stops at once", "[integration][ops]")
{
    Origin silent(silent_origin());
    Proxy p(proxy_args({"--shutdown-timeout", "30s"}));
    Conn busy = stuck_request(p, silent);
    ::kill(p.pid(), SIGTERM);
    REQUIRE(p.wait_err([](const std::string& err) { return err.find("info: stopping:") != std::string::npos; }));
    auto start = Clock::now();
    auto code = p.stop(SIGINT, Ms(3000));
    REQUIRE(code);
    CHECK(*code == 0);
    CHECK(elapsed_ms(start) < 1500);
    CHECK(p.err().find("second stop signal") != std::string::npos);
}

TEST_CASE("integration: SIGUSR1 reopens a log file that was moved away", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    Origin o(static_origin("ok"));
    std::string access = dir.file("access.log");
    std::string errors = dir.file("error.log");
    Proxy p(proxy_args({"--access-log", access, "--error-log", errors}));
    CHECK(status_of(p, get(o, "", "/first")) == 200);
    auto written = Clock::now();
    REQUIRE(wait_until([&] { return log_file_lines(access).size() == 1; }, Ms(3000)));
    CHECK(elapsed_ms(written) < 1600);  // the buffer is written within about a second
    REQUIRE(::rename(access.c_str(), (access + ".1").c_str()) == 0);
    REQUIRE(::rename(errors.c_str(), (errors + ".1").c_str()) == 0);
    ::kill(p.pid(), SIGUSR1);
    REQUIRE(wait_until([&] { return read_file(errors).find("info: log files reopened") != std::string::npos; }));
    CHECK(status_of(p, get(o, "", "/second")) == 200);
    REQUIRE(wait_until([&] { return log_file_lines(access).size() == 1; }, Ms(3000)));
    CHECK(log_file_lines(access)[0][4] == o.url("/second"));
    auto old_lines = log_file_lines(access + ".1");
    REQUIRE(old_lines.size() == 1);
    CHECK(old_lines[0][4] == o.url("/first"));
    CHECK(read_file(errors + ".1").find("info: up to ") != std::string::npos);
    CHECK(p.err().find("info: up to") == std::string::npos);  // the error log went to the file
}

TEST_CASE("integration: the error log names the failure; log_level hides what is below it", "[integration][ops]")
{
    Origin o(static_origin("ok"));
    std::uint16_t closed = unused_port();
    std::string refused_url = "http://127.0.0.1:" + std::to_string(closed) + "/";
    Proxy quiet(proxy_args({"--log-level", "warning", "--auth", "u:p"}));
    Proxy chatty(proxy_args({"--log-level", "debug", "--auth", "u:p"}));
    for (Proxy* p : {&quiet, &chatty}) {
        CHECK(status_of(*p, get(o)) == 407);
        // One 502 only: more of the same cause within a second are counted, not logged.
        Conn c = p->connect();
        std::string client = "127.0.0.1:" + std::to_string(local_port(c));
        CHECK(c.roundtrip("GET " + refused_url + " HTTP/1.1\r\nHost: x\r\n" + basic("u:p") + "\r\n")->status == 502);
        CHECK(p->wait_err([&](const std::string& err) {
            return err.find("warning: " + client + ": 502 connect 127.0.0.1:" + std::to_string(closed) +
                            ": Connection refused") != std::string::npos;
        }));
    }
    CHECK(chatty.err().find("info: up to") != std::string::npos);
    CHECK(chatty.err().find(": 407 proxy authentication required") != std::string::npos);
    CHECK(quiet.err().find("info:") == std::string::npos);
    CHECK(quiet.err().find(": 407 ") == std::string::npos);  // not a port number that holds 407
}

TEST_CASE("integration: the pid file holds the pid and is removed at exit", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    std::string pid_file = dir.file("cproxy.pid");
    Proxy p(proxy_args({"--pid-file", pid_file}));
    CHECK(read_file(pid_file) == std::to_string(p.pid()) + "\n");
    REQUIRE(p.stop(SIGTERM, Ms(3000)) == 0);
    CHECK(::access(pid_file.c_str(), F_OK) != 0);
}

TEST_CASE("integration: started as root with user, cproxy binds first and then drops to that user", "[integration][ops]")
{
    REQUIRE(::geteuid() == 0);  // test/run runs the suite as root in its own namespaces
    ScratchDir dir("cproxy-ops");
    Origin o(static_origin("ok"));
    std::string access = dir.file("access.log");
    // Port 80 needs root to bind; the log file is opened before the switch too.
    Proxy p({"-c", "/dev/null", "-l", "127.0.0.1:80", "--user", "nobody", "--access-log", access});
    CHECK(p.port() == 80);
    CHECK(proc_status_line(p.pid(), "Uid") == "Uid:\t65534\t65534\t65534\t65534");
    CHECK(proc_status_line(p.pid(), "Gid") == "Gid:\t65534\t65534\t65534\t65534");
    std::istringstream groups(proc_status_line(p.pid(), "Groups").substr(7));
    for (std::string group; groups >> group;)
        CHECK(group == "65534");  // root's supplementary groups are gone too
    CHECK(status_of(p, get(o)) == 200);
    CHECK(wait_until([&] { return log_file_lines(access).size() == 1; }, Ms(3000)));
    // The log file was handed to the new user, and one that logrotate creates
    // for it (create 0640 nobody nogroup) is reopened after the switch.
    struct stat status{};
    REQUIRE(::stat(access.c_str(), &status) == 0);
    CHECK(status.st_uid == 65534u);
    REQUIRE(::rename(access.c_str(), (access + ".1").c_str()) == 0);
    { std::ofstream created(access); }
    REQUIRE(::chown(access.c_str(), 65534, 65534) == 0);
    ::kill(p.pid(), SIGUSR1);
    REQUIRE(p.wait_err([](const std::string& err) { return err.find("info: log files reopened") != std::string::npos; }));
    CHECK(status_of(p, get(o, "", "/after")) == 200);
    CHECK(wait_until([&] { return log_file_lines(access).size() == 1; }, Ms(3000)));
    CHECK(p.err().find("still writing to the old file") == std::string::npos);
}

TEST_CASE("integration: sd_notify messages go to $NOTIFY_SOCKET", "[integration][ops]")
{
    ScratchDir dir("cproxy-ops");
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\n");
    NotifySocket notify(dir.file("notify"));
    ::setenv("NOTIFY_SOCKET", dir.file("notify").c_str(), 1);
    Proxy p({"-c", conf});
    ::unsetenv("NOTIFY_SOCKET");
    CHECK(notify.next() == "READY=1");
    ::kill(p.pid(), SIGHUP);
    std::string reloading = notify.next();
    CHECK(reloading.rfind("RELOADING=1\nMONOTONIC_USEC=", 0) == 0);
    CHECK(notify.next() == "READY=1");
    ::kill(p.pid(), SIGTERM);
    CHECK(notify.next() == "STOPPING=1");
    CHECK(p.stop(0, Ms(3000)) == 0);
}

TEST_CASE("integration: per-request 502 warnings are limited to one line per cause a second, with a count of "
          "those left out",
          "[integration][ops]")
{
    Proxy p(proxy_args());
    const std::string dead = "127.0.0.1:" + std::to_string(unused_port());
    auto fail_once = [&] {
        Conn c = p.connect();
        auto r = c.roundtrip("GET http://" + dead + "/ HTTP/1.1\r\nHost: h\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 502);
    };
    auto warnings = [&] {
        std::vector<std::string> lines;
        std::istringstream err(p.err());
        for (std::string line; std::getline(err, line);)
            if (line.find("warning:") != std::string::npos && line.find("connect " + dead) != std::string::npos)
                lines.push_back(line);
        return lines;
    };
    for (int i = 0; i < 20; ++i) fail_once();
    std::size_t first_burst = warnings().size();
    INFO("stderr:\n" << p.err());
    CHECK(first_burst >= 1);
    CHECK(first_burst <= 2);  // the burst may straddle a second
    std::this_thread::sleep_for(Ms(1100));
    fail_once();
    REQUIRE(wait_until([&] { return warnings().size() == first_burst + 1; }, Ms(3000)));
    const std::string last = warnings().back();
    const std::string tail = " more like it since the last line)";
    REQUIRE(last.size() > tail.size());
    REQUIRE(last.compare(last.size() - tail.size(), tail.size(), tail) == 0);
    std::size_t open = last.rfind('(');
    REQUIRE(open != std::string::npos);
    CHECK(std::stoi(last.substr(open + 1)) >= 18 - static_cast<int>(first_burst));
}

TEST_CASE("integration: logging to a syslog socket nobody reads never stalls the proxy; syslog:SOCKET names "
          "the socket",
          "[integration][ops]")
{
    ScratchDir dir("cproxy-syslog");
    NotifySocket sink(dir.file("log"));  // read only at the end: its queue fills at once
    Origin o(static_origin("ok"));
    Proxy p(proxy_args({"--error-log", "syslog:" + dir.file("log"), "--log-level", "debug", "--auth", "u:p"}));
    Conn c = p.connect();
    auto start = Clock::now();
    for (int i = 0; i < 300; ++i) {  // a debug line each, far more than the socket queues
        auto r = c.roundtrip(get(o), Ms(2000));
        REQUIRE(r);
        REQUIRE(r->status == 407);
    }
    CHECK(elapsed_ms(start) < 4000);
    std::string message = sink.next();
    INFO("first message: " << message);
    // RFC 3164 as syslog(3) writes it: "<PRI>Mmm dd hh:mm:ss cproxy[PID]: ",
    // PRI of facility daemon (3 << 3) and the message's severity.
    REQUIRE(message.size() > 21);
    REQUIRE(message[0] == '<');
    int priority = std::atoi(message.c_str() + 1);
    CHECK(priority >= 24);
    CHECK(priority <= 31);
    std::size_t close = message.find('>');
    REQUIRE(close != std::string::npos);
    CHECK(message[close + 4] == ' ');
    CHECK(message[close + 7] == ' ');
    CHECK(message.find(" cproxy[" + std::to_string(p.pid()) + "]: ") == close + 16);
}
