// dns-responder: the benchmark's DNS server, authoritative for every name.
//
//   dns-responder PORT
//
// Listens for UDP queries on 127.0.0.1:PORT (RFC 1035 §4.2.1) and answers
// each one with a single datagram:
//
//   QTYPE A    (IN)  NOERROR, one answer: 127.0.0.1, TTL 3600
//   QTYPE AAAA (IN)  NOERROR, no answer, a SOA in the authority section whose
//                    TTL and MINIMUM are 3600, so the "no data" answer is
//                    cacheable too (RFC 2308 §3)
//   anything else    REFUSED (other types, classes and opcodes), FORMERR (a
//                    message that is not exactly one well-formed question,
//                    or longer than 512 bytes)
//
// Datagrams that are replies themselves, or shorter than a header, are
// dropped. Prints `listening on 127.0.0.1:PORT` once bound, and on SIGTERM or
// SIGINT one line `answered=N a=N aaaa=N refused=N formerr=N` before exiting 0:
// the benchmark reads it to show that cproxy's cache kept the name.
//
// Blocking and single-threaded: a benchmark tool serving a handful of
// queries. Every buffer is fixed; nothing is read past a datagram's length.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace {

constexpr std::size_t header_size = 12;
constexpr std::size_t max_udp_message = 512;  // RFC 1035 §2.3.4, no EDNS
constexpr std::size_t max_name_octets = 255;  // the encoded name, length octets included
constexpr std::uint32_t ttl_s = 3600;

constexpr std::uint16_t type_a = 1;
constexpr std::uint16_t type_soa = 6;
constexpr std::uint16_t type_aaaa = 28;
constexpr std::uint16_t class_in = 1;

constexpr std::uint8_t rcode_formerr = 1;
constexpr std::uint8_t rcode_refused = 5;

std::uint16_t read16(const std::uint8_t* p) { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }

// Appends big-endian integers and raw bytes to a fixed buffer. A write that
// would not fit marks the writer failed instead of writing.
struct Writer {
    std::uint8_t* out;
    std::size_t capacity;
    std::size_t length = 0;
    bool failed = false;

    void bytes(const void* data, std::size_t n) {
        if (failed || n > capacity - length) {
            failed = true;
            return;
        }
        std::memcpy(out + length, data, n);
        length += n;
    }
    void u16(std::uint16_t v) {
        std::uint8_t b[2] = {static_cast<std::uint8_t>(v >> 8), static_cast<std::uint8_t>(v)};
        bytes(b, sizeof b);
    }
    void u32(std::uint32_t v) {
        u16(static_cast<std::uint16_t>(v >> 16));
        u16(static_cast<std::uint16_t>(v));
    }
};

struct Question {
    std::size_t end = 0;  // offset just past QCLASS
    std::uint16_t type = 0;
    std::uint16_t klass = 0;
};

// Parses the one question that follows the header (RFC 1035 §4.1.2): QNAME
// as uncompressed labels of 1-63 octets ending in the root label, at most
// 255 octets in all, then QTYPE and QCLASS. False if it is malformed or runs
// past `size`.
bool parse_question(const std::uint8_t* m, std::size_t size, Question& question) {
    std::size_t pos = header_size;
    while (true) {
        if (pos >= size) return false;
        std::uint8_t label = m[pos];
        if (label == 0) break;
        if (label > 63) return false;  // a pointer (0b11) or a reserved form: not in a query
        pos += 1 + label;
        if (pos - header_size + 1 > max_name_octets) return false;
    }
    ++pos;  // the root label
    if (size - pos < 4) return false;
    question.type = read16(m + pos);
    question.klass = read16(m + pos + 2);
    question.end = pos + 4;
    return true;
}

struct Counts {
    std::uint64_t a = 0, aaaa = 0, refused = 0, formerr = 0;
    std::uint64_t answered() const { return a + aaaa + refused + formerr; }
};

// Builds the reply to the query m[0..size) in `out`; returns its length, or
// 0 when the datagram gets no reply.
std::size_t respond(const std::uint8_t* m, std::size_t size, std::uint8_t* out, std::size_t capacity,
                    Counts& counts) {
    if (size < header_size) return 0;
    std::uint16_t flags = read16(m + 2);
    if (flags & 0x8000) return 0;  // QR: a reply, never answered (no loops between servers)
    unsigned opcode = (flags >> 11) & 0xf;
    bool recursion_desired = flags & 0x0100;

    Question question;
    bool well_formed = read16(m + 4) == 1 && read16(m + 6) == 0 && read16(m + 8) == 0 && read16(m + 10) == 0 &&
                       parse_question(m, size, question) && question.end == size;
    std::uint8_t rcode = 0;
    if (!well_formed) rcode = rcode_formerr;
    else if (opcode != 0 || question.klass != class_in || (question.type != type_a && question.type != type_aaaa))
        rcode = rcode_refused;

    // Header: the query's ID; QR and AA set, RD echoed, RA clear (this server
    // does not recurse); the question echoed byte for byte, so its case too.
    Writer w{out, capacity};
    w.bytes(m, 2);
    w.u16(static_cast<std::uint16_t>(0x8000 | (opcode << 11) | 0x0400 | (recursion_desired ? 0x0100 : 0) | rcode));
    if (rcode == rcode_formerr) {
        for (int count = 0; count < 4; ++count) w.u16(0);  // no question echoed: it may be garbage
        ++counts.formerr;
        return w.failed ? 0 : w.length;
    }
    bool a = rcode == 0 && question.type == type_a;
    bool aaaa = rcode == 0 && question.type == type_aaaa;
    w.u16(1);
    w.u16(a ? 1 : 0);
    w.u16(aaaa ? 1 : 0);
    w.u16(0);
    w.bytes(m + header_size, question.end - header_size);
    constexpr std::uint16_t question_name = 0xc000 | header_size;  // a pointer to QNAME (§4.1.4)
    if (a) {
        const std::uint8_t loopback[4] = {127, 0, 0, 1};
        w.u16(question_name);
        w.u16(type_a);
        w.u16(class_in);
        w.u32(ttl_s);
        w.u16(sizeof loopback);
        w.bytes(loopback, sizeof loopback);
        ++counts.a;
    } else if (aaaa) {
        // The name stands as its own zone: SOA owner and MNAME are QNAME,
        // RNAME hostmaster.QNAME (§3.3.13).
        const std::uint8_t hostmaster[] = {10, 'h', 'o', 's', 't', 'm', 'a', 's', 't', 'e', 'r'};
        w.u16(question_name);
        w.u16(type_soa);
        w.u16(class_in);
        w.u32(ttl_s);
        w.u16(static_cast<std::uint16_t>(2 + sizeof hostmaster + 2 + 5 * 4));
        w.u16(question_name);
        w.bytes(hostmaster, sizeof hostmaster);
        w.u16(question_name);
        w.u32(1);       // SERIAL
        w.u32(ttl_s);   // REFRESH
        w.u32(600);     // RETRY
        w.u32(86400);   // EXPIRE
        w.u32(ttl_s);   // MINIMUM: the negative-caching TTL
        ++counts.aaaa;
    } else {
        ++counts.refused;
    }
    return w.failed ? 0 : w.length;
}

[[noreturn]] void fail(const char* what) {
    std::fprintf(stderr, "dns-responder: %s: %s\n", what, std::strerror(errno));
    std::exit(1);
}

}  // namespace

int main(int argc, char** argv) {
    char* end = nullptr;
    unsigned long port = argc == 2 ? std::strtoul(argv[1], &end, 10) : 0;
    if (argc != 2 || *argv[1] == '\0' || *end != '\0' || port == 0 || port > 65535) {
        std::fprintf(stderr, "usage: dns-responder PORT (answers on 127.0.0.1:PORT until SIGTERM)\n");
        return 2;
    }

    // The stop signals arrive through a descriptor, so a signal between two
    // polls is never lost.
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGTERM);
    sigaddset(&stop, SIGINT);
    if (::sigprocmask(SIG_BLOCK, &stop, nullptr) != 0) fail("sigprocmask");
    int signals = ::signalfd(-1, &stop, SFD_CLOEXEC);
    if (signals < 0) fail("signalfd");

    int sock = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (sock < 0) fail("socket");
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(static_cast<std::uint16_t>(port));
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(sock, reinterpret_cast<const sockaddr*>(&address), sizeof address) != 0) fail("bind 127.0.0.1");
    std::printf("listening on 127.0.0.1:%lu\n", port);
    std::fflush(stdout);

    Counts counts;
    std::uint8_t query[max_udp_message];
    std::uint8_t reply[max_udp_message];
    pollfd watched[2] = {{sock, POLLIN, 0}, {signals, POLLIN, 0}};
    while (true) {
        if (::poll(watched, 2, -1) < 0) {
            if (errno == EINTR) continue;
            fail("poll");
        }
        if (watched[1].revents) break;
        if (!watched[0].revents) continue;
        sockaddr_in client{};
        socklen_t client_length = sizeof client;
        // MSG_TRUNC: the datagram's real length, so an oversized one is
        // refused as malformed instead of parsed cut short.
        ssize_t n = ::recvfrom(sock, query, sizeof query, MSG_TRUNC, reinterpret_cast<sockaddr*>(&client),
                               &client_length);
        if (n < 0) {
            if (errno == EINTR) continue;
            fail("recvfrom");
        }
        std::size_t size = static_cast<std::size_t>(n);
        std::size_t length = 0;
        if (size > sizeof query) {
            // Only the header is trusted; its ID and flags get a FORMERR.
            length = respond(query, header_size, reply, sizeof reply, counts);
        } else {
            length = respond(query, size, reply, sizeof reply, counts);
        }
        if (length > 0)
            ::sendto(sock, reply, length, 0, reinterpret_cast<const sockaddr*>(&client), client_length);
    }
    std::printf("answered=%" PRIu64 " a=%" PRIu64 " aaaa=%" PRIu64 " refused=%" PRIu64 " formerr=%" PRIu64 "\n",
                counts.answered(), counts.a, counts.aaaa, counts.refused, counts.formerr);
    return 0;
}
