// A scripted DNS server for the integration tests, written from RFC 1035 on
// its own (it shares no code with cproxy's resolver, so one misreading of the
// RFC cannot hide on both sides).
//
// It serves UDP and TCP on one port of 127.0.0.1 from a single poll()-driven
// thread; delayed answers wait in a queue, so a slow name never holds up the
// answers for other names. Every query is recorded for the test to inspect.
//
// What it answers, for a query of NAME / QTYPE (class IN):
//   - NAME not scripted: NXDOMAIN, no records;
//   - script.silent: nothing, ever (UDP and TCP);
//   - the first script.drop_first_udp UDP queries of each QTYPE: nothing;
//   - script.rcode != 0: that rcode, no answers (plus the SOA if soa_minimum);
//   - otherwise NOERROR with the CNAME chain starting at NAME (each link
//     whose target is scripted is followed, at most 8) and then the A or AAAA
//     records of the last name; none of them gives "no data" (plus the SOA if
//     the last name's script has soa_minimum);
//   - script.truncate_udp: over UDP the same header with TC=1 and no records
//     beyond the question; over TCP the full answer;
//   - script.delay: the reply is sent that long after the query arrived
//     (AAAA replies script.aaaa_delay later still);
//   - script.spoof_a: an A query first gets, at once, a reply with another ID
//     and those addresses (an off-path forgery the client must ignore).
// The delay, rcode, drop and truncation come from NAME's own script.
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <netinet/in.h>

#include "harness.hpp"

namespace itest {

namespace dns {
inline constexpr std::uint16_t A = 1;
inline constexpr std::uint16_t CNAME = 5;
inline constexpr std::uint16_t SOA = 6;
inline constexpr std::uint16_t AAAA = 28;

inline constexpr int NOERROR = 0;
inline constexpr int FORMERR = 1;
inline constexpr int SERVFAIL = 2;
inline constexpr int NXDOMAIN = 3;
inline constexpr int NOTIMP = 4;
inline constexpr int REFUSED = 5;
} // namespace dns

struct DnsScript {
    std::vector<std::string> a;     // IPv4 literals
    std::vector<std::string> aaaa;  // IPv6 literals
    std::string cname;              // alias target; empty: none
    std::uint32_t ttl = 300;        // of every record this script contributes
    int rcode = dns::NOERROR;
    std::optional<std::uint32_t> soa_minimum; // SOA in the authority section of negative answers
    std::uint32_t soa_ttl = 3600;   // the SOA record's own TTL
    Ms delay{0};
    Ms aaaa_delay{0};               // added to `delay` for AAAA answers only
    int drop_first_udp = 0;         // per query type
    bool truncate_udp = false;
    bool silent = false;
    // Before each A answer, at once, a forged reply with the wrong ID that
    // carries these addresses instead (set a delay so it arrives first).
    std::vector<std::string> spoof_a;
};

struct DnsQuery {
    std::string name;               // as received (case kept), no trailing dot
    std::uint16_t qtype = 0;
    bool tcp = false;
    Clock::time_point at;
    std::uint16_t id = 0;
    std::uint16_t source_port = 0;  // the client's port
    bool rd = false;                // recursion desired
    std::uint16_t arcount = 0;      // additional records (an EDNS OPT would be one)
    bool answered = false;          // false: dropped, silent, or malformed
};

class FakeDns {
public:
    // Binds UDP and TCP to 127.0.0.1:port (0: one free port for both);
    // throws std::runtime_error when that is impossible.
    explicit FakeDns(std::uint16_t port = 0);
    ~FakeDns();
    FakeDns(const FakeDns&) = delete;
    FakeDns& operator=(const FakeDns&) = delete;

    std::uint16_t port() const noexcept { return port_; }
    std::string address() const; // "127.0.0.1:PORT", for --resolver

    // Sets (replaces) the script for a name; names compare case-insensitively,
    // a trailing dot is ignored. Throws on an address that is not a literal.
    void script(const std::string& name, DnsScript s);
    void remove(const std::string& name);

    std::vector<DnsQuery> queries() const;
    // Queries for `name` (case-insensitive); qtype 0 = any type.
    std::vector<DnsQuery> queries_for(std::string_view name, std::uint16_t qtype = 0) const;
    std::size_t count(std::string_view name, std::uint16_t qtype = 0) const;
    std::size_t count_tcp(std::string_view name, std::uint16_t qtype = 0) const;
    void clear_queries();

    // Bounded waits for at least n queries (in total / for name and qtype).
    bool wait_queries(std::size_t n, Ms timeout = kWait) const;
    bool wait_count(std::string_view name, std::uint16_t qtype, std::size_t n,
                    Ms timeout = kWait) const;

    // Human-readable list of the queries so far, for INFO().
    std::string describe() const;

private:
    struct TcpConn {
        Fd fd;
        std::string in, out;
        bool eof = false;         // the client finished sending
        sockaddr_in peer{};
    };
    struct Pending {
        Clock::time_point due;
        bool tcp = false;
        std::uint64_t conn = 0;   // TCP: the connection's id
        sockaddr_in peer{};       // UDP: where to send
        std::string bytes;
    };

    void loop();
    void on_udp();
    void on_accept();
    // Reads what is there and handles every complete message; false: close it.
    bool on_tcp_readable(std::uint64_t id, TcpConn& c);
    bool flush_tcp(TcpConn& c);
    // Records one query and queues its reply (unless it is dropped).
    void handle(std::string_view msg, bool tcp, std::uint64_t conn, const sockaddr_in& peer);
    void send_due();
    int next_timeout_ms() const;

    Fd udp_, tcp_, wake_;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::thread thread_;

    mutable std::mutex mu_;
    mutable std::condition_variable cv_;
    std::map<std::string, DnsScript> scripts_;                        // key: lower-case name
    std::map<std::pair<std::string, std::uint16_t>, int> udp_seen_;  // for drop_first_udp
    std::vector<DnsQuery> queries_;

    // Only the server thread touches these.
    std::map<std::uint64_t, TcpConn> conns_;
    std::uint64_t next_conn_ = 1;
    std::vector<Pending> pending_;
};

// proxy_args() with --resolver pointing at `dns` (and the extra arguments).
std::vector<std::string> proxy_args_dns(const FakeDns& dns, std::vector<std::string> extra = {});

} // namespace itest
