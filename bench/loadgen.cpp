// loadgen: the HTTP/1.1 load generator behind cproxy's benchmarks.
//
// wrk cannot open CONNECT tunnels and cannot prove that every client was served;
// this tool does both. One thread runs one edge-triggered epoll loop over N
// clients allocated at start-up; each client is a small state machine:
//
//   Pending ──connect()──► Connecting ──┬── idle ──► Holding ──peer closes──► Dead
//      ▲                                ├── http ────────────────────────────┐
//      │                                └── tunnel-* ──► SendConnect         │
//      │                                                      ▼              ▼
//      │                                                 ReadConnect ──► SendRequest ◄──┐
//      │                                                    (2xx)             ▼         │ keep-alive
//      └──── an error; "Connection: close"; a tunnel-setup cycle's end ── ReadResponse ─┘
//
// Pending is a FIFO drained at most --connect-batch per millisecond, which
// paces the ramp-up and any storm of reconnects alike. A failed connect waits
// 10 ms before its retry; nothing is retried in idle mode.
//
// A client is registered once for in, out and peer shutdown, edge-triggered;
// "can read / can write" are kept in the client. A read shorter than the buffer
// drained the socket (the kernel signals new bytes with a new edge), so a
// response normally costs one send and one recv.
//
// Responses are parsed a byte at a time by a saved-state machine (Response), so
// a head split anywhere needs no per-client buffer: bodies are only counted, the
// shared read buffer is the only one, and a client is about a hundred bytes.
// Deadlines all have the same length, so the timer list is a FIFO kept sorted by
// appending: arm, cancel and expiry are O(1).
//
// Output: one line of key=value pairs on stdout (idle mode prints a
// `ready connected=N` line first, when every connection has been tried).
#include <arpa/inet.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cerrno>
#include <cinttypes>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace {

constexpr std::uint64_t ns_per_ms = 1'000'000;
constexpr std::uint64_t ns_per_s = 1'000'000'000;
constexpr std::size_t read_buffer_size = 64 * 1024;
constexpr int max_events = 512;
constexpr std::uint64_t retry_delay_ns = 10 * ns_per_ms;  // after a failed connect
constexpr std::uint64_t reserved_descriptors = 16;        // stdio, epoll, slack

volatile sig_atomic_t stop_requested = 0;

std::uint64_t now_ns() noexcept {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::uint64_t>(ts.tv_sec) * ns_per_s + static_cast<std::uint64_t>(ts.tv_nsec);
}

bool would_block(int error) noexcept { return error == EAGAIN || error == EWOULDBLOCK; }

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c; }

int hex_value(char c) noexcept {
    if (c >= '0' && c <= '9') return c - '0';
    char l = lower(c);
    if (l >= 'a' && l <= 'f') return l - 'a' + 10;
    return -1;
}

// ---------------------------------------------------------------------------
// Response: an HTTP/1.1 response parser as saved state. It keeps only what
// framing needs (status, Content-Length, the last transfer coding, Connection
// tokens) and matches those names while the bytes go by, so nothing is copied.

enum class Feed : std::uint8_t { Partial, Done, Error };

// Words matched on the fly: a bit per candidate still matching the bytes so far.
struct WordSet {
    const std::string_view* words;
    std::uint8_t count;
    std::uint8_t all() const noexcept { return static_cast<std::uint8_t>((1u << count) - 1); }
};

constexpr std::string_view header_words[] = {"content-length", "transfer-encoding", "connection"};
constexpr std::string_view coding_words[] = {"chunked"};
constexpr std::string_view connection_words[] = {"close", "keep-alive"};
constexpr WordSet header_names{header_words, 3};
constexpr WordSet codings{coding_words, 1};
constexpr WordSet connection_tokens{connection_words, 2};

// Drops the candidates whose byte at `pos` is not `c` (already lower case).
std::uint8_t narrow(WordSet set, std::uint8_t mask, std::uint8_t pos, char c) noexcept {
    for (std::uint8_t i = 0; i < set.count; ++i)
        if ((static_cast<unsigned>(mask) >> i & 1u) && (pos >= set.words[i].size() || set.words[i][pos] != c))
            mask = static_cast<std::uint8_t>(mask & ~(1u << i));
    return mask;
}

// The candidate exactly `length` bytes long that is still matching, or -1.
int matched(WordSet set, std::uint8_t mask, std::uint8_t length) noexcept {
    for (std::uint8_t i = 0; i < set.count; ++i)
        if ((static_cast<unsigned>(mask) >> i & 1u) && set.words[i].size() == length) return i;
    return -1;
}

class Response {
public:
    // Parses the next `size` bytes. `used` is how many of them belong to this
    // response: all of them unless it returns Done. `tunnel` marks the answer to
    // CONNECT, which has no body if it is 2xx, whatever its fields say.
    Feed feed(const char* data, std::size_t size, std::size_t& used, bool tunnel) noexcept;
    // At the peer's clean end of stream: true if that ends the body (a response
    // with neither Content-Length nor chunked coding).
    bool end_at_eof() noexcept {
        if (state_ != State::EofBody) return false;
        state_ = State::Done;
        return true;
    }
    int status() const noexcept { return status_; }
    std::uint64_t body_bytes() const noexcept { return body_bytes_; }
    // The connection cannot carry another request after this response.
    bool close_after() const noexcept { return flags_ & close_flag; }

private:
    enum class State : std::uint8_t {
        Version, Status, SkipLine, LineStart, Name, Value, HeadLf,
        Body, EofBody,
        ChunkSize, ChunkExt, ChunkData, ChunkDataCr, ChunkDataLf,
        TrailerStart, Trailer, TrailerLf,
        Done,
    };
    enum Field : std::uint8_t { content_length, transfer_encoding, connection, other };
    static constexpr std::uint8_t http10 = 1, has_length = 2, chunked = 4, te_seen = 8,
                                  close_token = 16, keep_alive_token = 32, close_flag = 64;
    // Bytes parsed one at a time (a head with its interim heads, or one chunk
    // line, or the last chunk line with the trailers) are bounded by this.
    static constexpr std::uint32_t max_meta_bytes = 64 * 1024;
    static constexpr std::uint64_t max_length = 1'000'000'000'000'000'000ull;

    Feed finish_head(bool tunnel) noexcept;
    bool finish_value() noexcept;
    void finish_token() noexcept;
    void begin_chunk() noexcept {
        state_ = State::ChunkSize;
        number_ = 0;
        pos_ = 0;
        meta_bytes_ = 0;
    }
    void finish_chunk_line() noexcept {
        if (number_ == 0) {
            state_ = State::TrailerStart;
        } else {
            remaining_ = number_;
            state_ = State::ChunkData;
        }
    }
    WordSet tokens() const noexcept { return field_ == transfer_encoding ? codings : connection_tokens; }

    std::uint64_t number_ = 0;     // Content-Length or chunk size being read
    std::uint64_t remaining_ = 0;  // Content-Length during the head, then body or chunk bytes left
    std::uint64_t body_bytes_ = 0;
    std::uint32_t meta_bytes_ = 0;
    std::uint16_t status_ = 0;
    State state_ = State::Version;
    Field field_ = other;
    std::uint8_t pos_ = 0;   // bytes matched of a literal, name or token (saturates)
    std::uint8_t mask_ = 0;  // candidates still matching
    std::uint8_t flags_ = 0;
};

Feed Response::feed(const char* data, std::size_t size, std::size_t& used, bool tunnel) noexcept {
    std::size_t i = 0;
    while (i < size) {
        if (state_ == State::Body || state_ == State::ChunkData || state_ == State::EofBody) {
            std::size_t take = size - i;
            if (state_ != State::EofBody && take > remaining_) take = static_cast<std::size_t>(remaining_);
            i += take;
            body_bytes_ += take;
            if (state_ == State::EofBody) continue;
            remaining_ -= take;
            if (remaining_ != 0) continue;
            if (state_ == State::ChunkData) {
                state_ = State::ChunkDataCr;
                continue;
            }
            state_ = State::Done;
            used = i;
            return Feed::Done;
        }
        if (++meta_bytes_ > max_meta_bytes) return Feed::Error;
        char c = data[i++];
        switch (state_) {
        case State::Version:
            if (pos_ < 7) {
                if (c != "HTTP/1."[pos_]) return Feed::Error;
                ++pos_;
            } else if (pos_ == 7) {
                if (c != '0' && c != '1') return Feed::Error;
                if (c == '0') flags_ |= http10;
                ++pos_;
            } else {
                if (c != ' ') return Feed::Error;
                pos_ = 0;
                state_ = State::Status;
            }
            break;
        case State::Status:
            if (pos_ < 3) {
                if (c < '0' || c > '9') return Feed::Error;
                status_ = static_cast<std::uint16_t>(status_ * 10 + (c - '0'));
                ++pos_;
                break;
            }
            if (status_ < 100) return Feed::Error;
            if (c == ' ' || c == '\r') {
                state_ = State::SkipLine;
            } else if (c == '\n') {
                state_ = State::LineStart;
            } else {
                return Feed::Error;
            }
            break;
        case State::SkipLine:
            if (c == '\n') state_ = State::LineStart;
            break;
        case State::LineStart:
            if (c == '\r') {
                state_ = State::HeadLf;
                break;
            }
            if (c == '\n') {
                Feed result = finish_head(tunnel);
                if (result != Feed::Partial) {
                    used = i;
                    return result;
                }
                break;
            }
            if (c == ' ' || c == '\t') return Feed::Error;  // obsolete line folding
            pos_ = 0;
            mask_ = header_names.all();
            state_ = State::Name;
            [[fallthrough]];
        case State::Name:
            if (c == ':') {
                int word = matched(header_names, mask_, pos_);
                field_ = word < 0 ? other : static_cast<Field>(word);
                pos_ = 0;
                number_ = 0;
                if (field_ == transfer_encoding) flags_ |= te_seen;
                if (field_ != content_length) mask_ = tokens().all();
                state_ = field_ == other ? State::SkipLine : State::Value;
                break;
            }
            if (c == '\r' || c == '\n') return Feed::Error;
            mask_ = narrow(header_names, mask_, pos_, lower(c));
            if (pos_ < UINT8_MAX) ++pos_;
            break;
        case State::Value:
            if (c == '\n') {
                if (!finish_value()) return Feed::Error;
                state_ = State::LineStart;
                break;
            }
            if (c == '\r') break;
            if (field_ == content_length) {  // pos_: 0 before digits, 1 in them, 2 after
                if (c == ' ' || c == '\t') {
                    if (pos_ == 1) pos_ = 2;
                    break;
                }
                if (c < '0' || c > '9' || pos_ == 2 || number_ > max_length) return Feed::Error;
                number_ = number_ * 10 + static_cast<std::uint64_t>(c - '0');
                pos_ = 1;
                break;
            }
            if (c == ',') {
                finish_token();
            } else if (c != ' ' && c != '\t') {
                mask_ = narrow(tokens(), mask_, pos_, lower(c));
                if (pos_ < UINT8_MAX) ++pos_;
            }
            break;
        case State::HeadLf:
            if (c != '\n') return Feed::Error;
            {
                Feed result = finish_head(tunnel);
                if (result != Feed::Partial) {
                    used = i;
                    return result;
                }
            }
            break;
        case State::ChunkSize: {
            int digit = hex_value(c);
            if (digit >= 0) {
                if (number_ >> 56) return Feed::Error;
                number_ = number_ * 16 + static_cast<std::uint64_t>(digit);
                pos_ = 1;
                break;
            }
            if (pos_ == 0) return Feed::Error;
            if (c == '\n') {
                finish_chunk_line();
            } else if (c == ';' || c == ' ' || c == '\t' || c == '\r') {
                state_ = State::ChunkExt;
            } else {
                return Feed::Error;
            }
            break;
        }
        case State::ChunkExt:
            if (c == '\n') finish_chunk_line();
            break;
        case State::ChunkDataCr:
            if (c == '\r') {
                state_ = State::ChunkDataLf;
            } else if (c == '\n') {
                begin_chunk();
            } else {
                return Feed::Error;
            }
            break;
        case State::ChunkDataLf:
            if (c != '\n') return Feed::Error;
            begin_chunk();
            break;
        case State::TrailerStart:
            if (c == '\r') {
                state_ = State::TrailerLf;
                break;
            }
            if (c == '\n') {
                state_ = State::Done;
                used = i;
                return Feed::Done;
            }
            state_ = State::Trailer;
            break;
        case State::Trailer:
            if (c == '\n') state_ = State::TrailerStart;
            break;
        case State::TrailerLf:
            if (c != '\n') return Feed::Error;
            state_ = State::Done;
            used = i;
            return Feed::Done;
        case State::Body:
        case State::EofBody:
        case State::ChunkData:
        case State::Done:
            return Feed::Error;  // fed after Done: the caller's bug, reported as a bad response
        }
    }
    used = i;
    return Feed::Partial;
}

// Returns Done (no body), Partial (a body or the real head after an interim
// one follows) or Error.
Feed Response::finish_head(bool tunnel) noexcept {
    if (status_ < 200 && status_ != 101) {  // 1xx interim: the final head follows
        state_ = State::Version;
        pos_ = 0;
        status_ = 0;
        flags_ = 0;
        remaining_ = 0;
        return Feed::Partial;
    }
    bool close = (flags_ & close_token) || ((flags_ & http10) && !(flags_ & keep_alive_token));
    Feed result = Feed::Partial;
    // A 2xx answer to CONNECT starts the tunnel; any other is framed as usual.
    if ((tunnel && status_ / 100 == 2) || status_ < 200 || status_ == 204 || status_ == 304) {
        state_ = State::Done;
        result = Feed::Done;
    } else if (flags_ & te_seen) {
        if (flags_ & chunked) {
            begin_chunk();
        } else {
            state_ = State::EofBody;
            close = true;
        }
    } else if (flags_ & has_length) {
        if (remaining_ == 0) {
            state_ = State::Done;
            result = Feed::Done;
        } else {
            state_ = State::Body;
        }
    } else {
        state_ = State::EofBody;
        close = true;
    }
    if (close) flags_ |= close_flag;
    return result;
}

bool Response::finish_value() noexcept {
    if (field_ != content_length) {
        finish_token();
        return true;
    }
    if (pos_ == 0) return false;
    if ((flags_ & has_length) && remaining_ != number_) return false;  // conflicting lengths
    remaining_ = number_;
    flags_ |= has_length;
    return true;
}

void Response::finish_token() noexcept {
    if (pos_ == 0) return;  // empty list element
    int word = matched(tokens(), mask_, pos_);
    if (field_ == transfer_encoding) {
        // Only the last coding decides the framing, across repeated fields too.
        if (word == 0) {
            flags_ |= chunked;
        } else {
            flags_ = static_cast<std::uint8_t>(flags_ & ~chunked);
        }
    } else if (word == 0) {
        flags_ |= close_token;
    } else if (word == 1) {
        flags_ |= keep_alive_token;
    }
    pos_ = 0;
    mask_ = tokens().all();
}

// ---------------------------------------------------------------------------
// Histogram: log-linear buckets over nanoseconds, 128 per power of two (each
// under 0.8 % wide), exact below 256 ns, clamped at 60 s. Recording is an
// index computation and an increment.

class Histogram {
public:
    static constexpr std::uint64_t max_value = 60 * ns_per_s;

    Histogram() : counts_(index(max_value) + 1) {}

    void record(std::uint64_t value) noexcept {
        ++counts_[index(std::min(value, max_value))];
        ++total_;
        sum_ += value;
        max_ = std::max(max_, value);
    }
    std::uint64_t total() const noexcept { return total_; }
    std::uint64_t max() const noexcept { return max_; }
    double mean() const noexcept {
        return total_ ? static_cast<double>(sum_) / static_cast<double>(total_) : 0;
    }

    // The middle of the bucket holding the value at `fraction` of the recorded
    // values (never above the largest value seen); 0 when nothing was recorded.
    std::uint64_t percentile(double fraction) const noexcept {
        if (total_ == 0) return 0;
        auto rank = static_cast<std::uint64_t>(std::ceil(fraction * static_cast<double>(total_)));
        rank = std::clamp<std::uint64_t>(rank, 1, total_);
        std::uint64_t seen = 0;
        for (std::size_t i = 0; i < counts_.size(); ++i) {
            seen += counts_[i];
            if (seen >= rank) return std::min(middle(i), max_);
        }
        return max_;
    }

private:
    static constexpr int sub_bits = 8;
    static constexpr std::uint64_t half = 1u << (sub_bits - 1);

    static std::size_t index(std::uint64_t value) noexcept {
        int msb = 63 - std::countl_zero(value | 1);
        if (msb < sub_bits) return static_cast<std::size_t>(value);
        int shift = msb - sub_bits + 1;
        return static_cast<std::size_t>(static_cast<std::uint64_t>(shift) * half + (value >> shift));
    }
    static std::uint64_t middle(std::size_t index) noexcept {
        if (index < 2 * half) return index;
        std::uint64_t shift = index / half - 1;
        std::uint64_t mantissa = index - shift * half;
        return (mantissa << shift) + ((std::uint64_t{1} << shift) >> 1);
    }

    std::vector<std::uint64_t> counts_;
    std::uint64_t total_ = 0;
    std::uint64_t sum_ = 0;
    std::uint64_t max_ = 0;
};

// ---------------------------------------------------------------------------
// Command line.

enum class Mode : std::uint8_t { Http, TunnelSetup, TunnelRequests, Idle };

const char* mode_name(Mode mode) noexcept {
    switch (mode) {
    case Mode::Http: return "http";
    case Mode::TunnelSetup: return "tunnel-setup";
    case Mode::TunnelRequests: return "tunnel-requests";
    case Mode::Idle: return "idle";
    }
    return "?";
}

struct Options {
    Mode mode = Mode::Http;
    sockaddr_in target{};
    std::string origin;  // host:port as written in requests
    std::string path = "/index.html";
    bool absolute_form = false;
    bool close_each = false;  // http mode: a new connection per request
    std::string credentials;  // base64 of USER:PASS; empty: no Proxy-Authorization
    std::uint32_t connections = 100;
    std::uint32_t connect_batch = 200;
    std::uint64_t duration_ns = 5 * ns_per_s;
    std::uint64_t timeout_ns = 10 * ns_per_s;
    std::uint64_t hold_ns = 0;
    std::uint64_t expect_bytes = 0;
    bool expect_set = false;
};

constexpr const char* usage_text =
    "usage: loadgen --mode MODE --target IPV4:PORT [options]\n"
    "HTTP/1.1 load generator for cproxy benchmarks: one thread, one epoll loop.\n"
    "\n"
    "  --mode MODE            http | tunnel-setup | tunnel-requests | idle\n"
    "  --target IPV4:PORT     where the TCP connections go (the proxy, or the origin)\n"
    "  --connections N        concurrent clients (default 100)\n"
    "  --duration SECONDS     measurement after the ramp-up, decimals allowed (default 5)\n"
    "  --origin HOST:PORT     origin for CONNECT, Host and absolute-form URLs\n"
    "                         (default: the target)\n"
    "  --path PATH            request path (default /index.html)\n"
    "  --form origin|absolute request-target form in http mode (default origin)\n"
    "  --close                http mode: send Connection: close, reconnect per request\n"
    "  --auth USER:PASS       Proxy-Authorization: Basic on each CONNECT (tunnel modes)\n"
    "                         or each request (http mode)\n"
    "  --expect-bytes N       a response counts only if its status is 200 and its body\n"
    "                         is exactly N bytes (default: any 200 counts)\n"
    "  --connect-batch N      new connections per 1 ms tick at most (default 200)\n"
    "  --timeout SECONDS      per connect and per response (default 10)\n"
    "  --hold SECONDS         idle mode: how long to hold the connections once all\n"
    "                         were tried (default: the duration)\n"
    "  -h, --help             this text\n"
    "\n"
    "Modes: http sends keep-alive GETs; tunnel-setup loops connect, CONNECT, one GET,\n"
    "close (one cycle is one request); tunnel-requests sends keep-alive GETs through\n"
    "one tunnel per client; idle opens connections, sends nothing, and reports how\n"
    "many the peer closed (it prints `ready connected=N` once all were tried).\n"
    "Output: one line of key=value pairs. Exit status 0, or 2 on a usage error.\n";

[[noreturn]] void usage_error(const std::string& message) {
    std::fprintf(stderr, "loadgen: %s (see --help)\n", message.c_str());
    std::exit(2);
}

std::uint64_t parse_count(const char* option, const char* text, std::uint64_t min, std::uint64_t max) {
    errno = 0;
    char* end = nullptr;
    unsigned long long value = std::strtoull(text, &end, 10);
    if (*text < '0' || *text > '9' || *end != '\0' || errno != 0 || value < min || value > max)
        usage_error(std::string(option) + ": expected a whole number from " + std::to_string(min) +
                    " to " + std::to_string(max) + ", got '" + text + "'");
    return value;
}

std::uint64_t parse_seconds(const char* option, const char* text, bool allow_zero) {
    errno = 0;
    char* end = nullptr;
    double value = std::strtod(text, &end);
    if (end == text || *end != '\0' || errno != 0 || !std::isfinite(value) || value < 0 ||
        (value == 0 && !allow_zero) || value > 1e6)
        usage_error(std::string(option) + ": expected seconds (" + (allow_zero ? "0" : "more than 0") +
                    " to 1000000, decimals allowed), got '" + text + "'");
    return static_cast<std::uint64_t>(value * static_cast<double>(ns_per_s) + 0.5);
}

// Splits "host:port" at the last colon; false if the port is not 1..65535.
bool split_authority(std::string_view text, std::string_view& host, std::uint16_t& port) {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos || colon == 0 || colon + 1 == text.size() ||
        text.size() - colon - 1 > 5)
        return false;
    unsigned value = 0;
    for (char c : text.substr(colon + 1)) {
        if (c < '0' || c > '9') return false;
        value = value * 10 + static_cast<unsigned>(c - '0');
    }
    if (value == 0 || value > 65535) return false;
    host = text.substr(0, colon);
    port = static_cast<std::uint16_t>(value);
    return true;
}

// Text that goes into a request line or a field: no spaces, controls or DEL.
bool printable_token(std::string_view text) {
    return !text.empty() && std::all_of(text.begin(), text.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u > 0x20 && u != 0x7f;
    });
}

std::string base64(std::string_view input) {
    static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    for (std::size_t i = 0; i < input.size(); i += 3) {
        auto byte = [&](std::size_t at) -> std::uint32_t {
            return at < input.size() ? static_cast<unsigned char>(input[at]) : 0u;
        };
        std::uint32_t n = byte(i) << 16 | byte(i + 1) << 8 | byte(i + 2);
        out += alphabet[n >> 18 & 63];
        out += alphabet[n >> 12 & 63];
        out += i + 1 < input.size() ? alphabet[n >> 6 & 63] : '=';
        out += i + 2 < input.size() ? alphabet[n & 63] : '=';
    }
    return out;
}

Options parse_options(int argc, char** argv) {
    enum : int { o_mode = 256, o_target, o_connections, o_duration, o_origin, o_path, o_form, o_auth,
                 o_expect, o_batch, o_timeout, o_hold, o_close };
    static const option long_options[] = {
        {"mode", required_argument, nullptr, o_mode},
        {"target", required_argument, nullptr, o_target},
        {"connections", required_argument, nullptr, o_connections},
        {"duration", required_argument, nullptr, o_duration},
        {"origin", required_argument, nullptr, o_origin},
        {"path", required_argument, nullptr, o_path},
        {"form", required_argument, nullptr, o_form},
        {"close", no_argument, nullptr, o_close},
        {"auth", required_argument, nullptr, o_auth},
        {"expect-bytes", required_argument, nullptr, o_expect},
        {"connect-batch", required_argument, nullptr, o_batch},
        {"timeout", required_argument, nullptr, o_timeout},
        {"hold", required_argument, nullptr, o_hold},
        {"help", no_argument, nullptr, 'h'},
        {nullptr, 0, nullptr, 0},
    };
    Options options;
    bool mode_set = false;
    bool hold_set = false;
    std::string target_text;
    int opt;
    while ((opt = ::getopt_long(argc, argv, "h", long_options, nullptr)) != -1) {
        std::string_view arg = optarg ? optarg : "";
        switch (opt) {
        case o_mode:
            mode_set = true;
            if (arg == "http") options.mode = Mode::Http;
            else if (arg == "tunnel-setup") options.mode = Mode::TunnelSetup;
            else if (arg == "tunnel-requests") options.mode = Mode::TunnelRequests;
            else if (arg == "idle") options.mode = Mode::Idle;
            else usage_error("--mode: expected http, tunnel-setup, tunnel-requests or idle, got '" +
                             std::string(arg) + "'");
            break;
        case o_target: {
            std::string_view host;
            std::uint16_t port = 0;
            std::string host_text;
            if (split_authority(arg, host, port)) host_text = host;
            if (host_text.empty() || ::inet_pton(AF_INET, host_text.c_str(), &options.target.sin_addr) != 1)
                usage_error("--target: expected IPV4:PORT, got '" + std::string(arg) + "'");
            options.target.sin_family = AF_INET;
            options.target.sin_port = htons(port);
            target_text = arg;
            break;
        }
        case o_connections:
            options.connections =
                static_cast<std::uint32_t>(parse_count("--connections", optarg, 1, 1'000'000));
            break;
        case o_duration: options.duration_ns = parse_seconds("--duration", optarg, false); break;
        case o_origin: {
            std::string_view host;
            std::uint16_t port = 0;
            if (!split_authority(arg, host, port) || !printable_token(arg))
                usage_error("--origin: expected HOST:PORT, got '" + std::string(arg) + "'");
            options.origin = arg;
            break;
        }
        case o_path:
            if (arg.empty() || arg[0] != '/' || !printable_token(arg))
                usage_error("--path: expected a path starting with '/' and no spaces, got '" +
                            std::string(arg) + "'");
            options.path = arg;
            break;
        case o_form:
            if (arg == "origin") options.absolute_form = false;
            else if (arg == "absolute") options.absolute_form = true;
            else usage_error("--form: expected origin or absolute, got '" + std::string(arg) + "'");
            break;
        case o_close: options.close_each = true; break;
        case o_auth:
            if (arg.find(':') == std::string_view::npos)
                usage_error("--auth: expected USER:PASS, got '" + std::string(arg) + "'");
            options.credentials = base64(arg);
            break;
        case o_expect:
            options.expect_bytes = parse_count("--expect-bytes", optarg, 0, 1'000'000'000'000'000ull);
            options.expect_set = true;
            break;
        case o_batch:
            options.connect_batch =
                static_cast<std::uint32_t>(parse_count("--connect-batch", optarg, 1, 1'000'000));
            break;
        case o_timeout: options.timeout_ns = parse_seconds("--timeout", optarg, false); break;
        case o_hold:
            options.hold_ns = parse_seconds("--hold", optarg, true);
            hold_set = true;
            break;
        case 'h':
            std::fputs(usage_text, stdout);
            std::exit(0);
        default:
            usage_error("unknown option or missing value");  // getopt_long named it above
        }
    }
    if (optind < argc) usage_error(std::string("unexpected argument '") + argv[optind] + "'");
    if (!mode_set) usage_error("--mode is required");
    if (target_text.empty()) usage_error("--target is required");
    if (options.origin.empty()) options.origin = target_text;
    if (!hold_set) options.hold_ns = options.duration_ns;
    return options;
}

// Raises the soft descriptor limit to the hard one; returns the soft limit.
std::uint64_t raise_descriptor_limit() noexcept {
    rlimit limit{};
    ::getrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_cur < limit.rlim_max) {
        limit.rlim_cur = limit.rlim_max;
        if (::setrlimit(RLIMIT_NOFILE, &limit) != 0) ::getrlimit(RLIMIT_NOFILE, &limit);
    }
    return limit.rlim_cur;
}

// ---------------------------------------------------------------------------
// The load generator.

enum class Phase : std::uint8_t {
    Pending,      // on the connect queue or waiting out a retry delay
    Connecting,
    SendConnect,
    ReadConnect,  // the proxy's answer to CONNECT
    SendRequest,
    ReadResponse,
    Holding,      // idle mode: open, sending nothing
    Dead,         // idle mode: closed or failed, never reopened
};

enum class Failure : std::uint8_t { NotOk, BadLength, BadResponse, Timeout, ConnectFailed, Closed };

enum ListId : std::uint8_t { no_list, pending_list, retry_list, timer_list, list_count };

constexpr std::uint32_t none = UINT32_MAX;

struct Client {
    Response response;
    std::uint64_t deadline_ns = 0;     // on the retry or timer list
    std::uint64_t started_ns = 0;      // latency start: request sent, or connect for tunnel-setup
    std::uint64_t response_bytes = 0;  // bytes of the current response received
    std::uint32_t prev = none;         // links of the list the client is on
    std::uint32_t next = none;
    std::uint32_t generation = 0;      // tells a stale epoll event from the current socket's
    std::uint32_t sent = 0;            // bytes of the current request written
    std::uint32_t responses = 0;       // complete responses on this connection
    int fd = -1;
    Phase phase = Phase::Pending;
    ListId list = no_list;
    bool can_read = false;
    bool can_write = false;
    bool hangup = false;  // the peer shut down: read to the end, a short read proves nothing
    bool ever_connected = false;
    bool ever_served = false;
};

struct Counters {
    std::uint64_t requests = 0;    // valid responses completed inside the window
    std::uint64_t body_bytes = 0;  // their body bytes
    std::uint64_t not_ok = 0;
    std::uint64_t bad_length = 0;
    std::uint64_t bad_response = 0;
    std::uint64_t timeouts = 0;
    std::uint64_t connect_failures = 0;
    std::uint64_t closed = 0;
    std::uint64_t reconnects = 0;  // completed connects after a client's first
    std::uint32_t connected = 0;
    std::uint32_t served = 0;
    std::uint32_t held = 0;        // idle mode: open right now
};

class Loadgen {
public:
    explicit Loadgen(const Options& options);
    // Runs until the window ends or a signal asks to stop; prints the summary.
    void run();

private:
    struct List {
        std::uint32_t head = none;
        std::uint32_t tail = none;
    };

    void link(std::uint32_t index, ListId list) noexcept;
    void unlink(std::uint32_t index) noexcept;
    void arm(std::uint32_t index, std::uint64_t now) noexcept {
        unlink(index);
        clients_[index].deadline_ns = now + options_.timeout_ns;
        link(index, timer_list);
    }

    void start_connects(std::uint64_t now) noexcept;
    void open_connection(std::uint32_t index) noexcept;
    void expire(std::uint64_t now) noexcept;
    int wait_timeout(std::uint64_t now) const noexcept;
    void on_event(const epoll_event& event) noexcept;
    void drive(std::uint32_t index) noexcept;
    bool finish_connect(std::uint32_t index) noexcept;
    void send_request(std::uint32_t index) noexcept;
    void read_response(std::uint32_t index) noexcept;
    void read_idle(std::uint32_t index) noexcept;
    void begin_request(std::uint32_t index, Phase phase) noexcept;
    void complete(std::uint32_t index) noexcept;
    void peer_closed(std::uint32_t index, bool clean) noexcept;
    void fail(std::uint32_t index, Failure failure) noexcept;
    void close_connection(std::uint32_t index) noexcept;
    void reopen(std::uint32_t index) noexcept {
        close_connection(index);
        link(index, pending_list);
    }
    bool ramp_done() const noexcept {
        return untried_ == 0 && (options_.mode != Mode::Idle || connecting_ == 0);
    }
    void print_summary(std::uint64_t now) const;

    Options options_;
    std::string connect_request_;
    std::string get_request_;
    std::vector<Client> clients_;
    std::array<List, list_count> lists_{};
    Histogram latency_;
    Counters counters_;
    std::unique_ptr<char[]> read_buffer_;
    int epoll_fd_ = -1;
    std::uint32_t untried_;        // clients whose first connect has not been started
    std::uint32_t connecting_ = 0;
    std::uint32_t budget_ = 0;     // connects left in the current 1 ms tick
    std::uint64_t budget_tick_ = 0;
    std::uint64_t window_start_ = 0;
    std::uint64_t window_end_ = UINT64_MAX;
    bool measuring_ = false;
};

Loadgen::Loadgen(const Options& options)
    : options_(options),
      clients_(options.connections),
      read_buffer_(new char[read_buffer_size]),
      untried_(options.connections) {
    const std::string& origin = options_.origin;
    std::string auth_line;
    if (!options_.credentials.empty())
        auth_line = "Proxy-Authorization: Basic " + options_.credentials + "\r\n";
    connect_request_ = "CONNECT " + origin + " HTTP/1.1\r\nHost: " + origin + "\r\n" + auth_line + "\r\n";
    bool through_tunnel = options_.mode == Mode::TunnelSetup || options_.mode == Mode::TunnelRequests;
    std::string target = !through_tunnel && options_.absolute_form ? "http://" + origin + options_.path
                                                                    : options_.path;
    get_request_ = "GET " + target + " HTTP/1.1\r\nHost: " + origin + "\r\n" +
                   (through_tunnel ? std::string() : auth_line) +
                   (options_.close_each ? "Connection: close\r\n" : "") + "\r\n";
    epoll_fd_ = ::epoll_create1(EPOLL_CLOEXEC);
    if (epoll_fd_ < 0) {
        std::perror("loadgen: epoll_create1");
        std::exit(1);
    }
    for (std::uint32_t i = 0; i < options_.connections; ++i) link(i, pending_list);
}

void Loadgen::link(std::uint32_t index, ListId list) noexcept {
    Client& client = clients_[index];
    List& l = lists_[list];
    client.list = list;
    client.prev = l.tail;
    client.next = none;
    if (l.tail != none) {
        clients_[l.tail].next = index;
    } else {
        l.head = index;
    }
    l.tail = index;
}

void Loadgen::unlink(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    if (client.list == no_list) return;
    List& l = lists_[client.list];
    if (client.prev != none) {
        clients_[client.prev].next = client.next;
    } else {
        l.head = client.next;
    }
    if (client.next != none) {
        clients_[client.next].prev = client.prev;
    } else {
        l.tail = client.prev;
    }
    client.prev = client.next = none;
    client.list = no_list;
}

// Starts queued connects, at most --connect-batch per millisecond, so a ramp of
// thousands does not overflow the listener's SYN and accept queues.
void Loadgen::start_connects(std::uint64_t now) noexcept {
    std::uint64_t tick = now / ns_per_ms;
    if (tick != budget_tick_) {
        budget_tick_ = tick;
        budget_ = options_.connect_batch;
    }
    while (budget_ > 0 && lists_[pending_list].head != none) {
        std::uint32_t index = lists_[pending_list].head;
        unlink(index);
        --budget_;
        if (untried_ > 0) --untried_;  // the queue is FIFO: the first N pops are first tries
        open_connection(index);
    }
}

void Loadgen::open_connection(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    std::uint64_t now = now_ns();  // not the loop's: a batch of connects takes a while
    client.response = Response{};
    client.response_bytes = 0;
    client.responses = 0;
    client.can_read = client.can_write = client.hangup = false;
    client.started_ns = now;
    client.fd = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (client.fd < 0) {
        fail(index, Failure::ConnectFailed);
        return;
    }
    int one = 1;
    ::setsockopt(client.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client.phase = Phase::Connecting;
    ++connecting_;
    arm(index, now);
    const auto* address = reinterpret_cast<const sockaddr*>(&options_.target);
    if (::connect(client.fd, address, sizeof options_.target) != 0 && errno != EINPROGRESS) {
        fail(index, Failure::ConnectFailed);
        return;
    }
    // Registered only now: an unconnected TCP socket polls as hung up.
    epoll_event event{};
    event.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
    event.data.u64 = static_cast<std::uint64_t>(client.generation) << 32 | index;
    if (::epoll_ctl(epoll_fd_, EPOLL_CTL_ADD, client.fd, &event) != 0) fail(index, Failure::ConnectFailed);
}

void Loadgen::expire(std::uint64_t now) noexcept {
    auto due = [&](ListId list) {
        std::uint32_t index = lists_[list].head;
        return index != none && clients_[index].deadline_ns <= now ? index : none;
    };
    for (std::uint32_t index; (index = due(retry_list)) != none;) {
        unlink(index);
        link(index, pending_list);
    }
    for (std::uint32_t index; (index = due(timer_list)) != none;) fail(index, Failure::Timeout);
}

// Milliseconds until the next thing the loop must do without an event: a new
// connect tick, a deadline, the end of the window (rounded up, so never early).
int Loadgen::wait_timeout(std::uint64_t now) const noexcept {
    std::uint64_t wake = measuring_ ? window_end_ : UINT64_MAX;
    if (lists_[pending_list].head != none) wake = std::min(wake, (now / ns_per_ms + 1) * ns_per_ms);
    for (ListId list : {retry_list, timer_list})
        if (lists_[list].head != none) wake = std::min(wake, clients_[lists_[list].head].deadline_ns);
    if (wake == UINT64_MAX) return 1000;
    if (wake <= now) return 0;
    return static_cast<int>(std::min<std::uint64_t>(1000, (wake - now + ns_per_ms - 1) / ns_per_ms));
}

void Loadgen::on_event(const epoll_event& event) noexcept {
    auto index = static_cast<std::uint32_t>(event.data.u64);
    if (index >= clients_.size()) return;
    Client& client = clients_[index];
    if (client.fd < 0 || client.generation != static_cast<std::uint32_t>(event.data.u64 >> 32)) return;
    if (event.events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) client.can_read = true;
    if (event.events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) client.can_write = true;
    if (event.events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)) client.hangup = true;
    drive(index);
}

// Runs the client's phases until one needs readiness it does not have, or the
// connection is gone. Each step does a system call or returns, so it cannot spin.
void Loadgen::drive(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    for (;;) {
        switch (client.phase) {
        case Phase::Pending:
        case Phase::Dead:
            return;
        case Phase::Connecting:
            if (!client.can_write || !finish_connect(index)) return;
            break;
        case Phase::SendConnect:
        case Phase::SendRequest:
            if (!client.can_write) return;
            send_request(index);
            break;
        case Phase::ReadConnect:
        case Phase::ReadResponse:
            if (!client.can_read) return;
            read_response(index);
            break;
        case Phase::Holding:
            if (!client.can_read) return;
            read_idle(index);
            break;
        }
    }
}

// Returns false if the connect failed (the client was closed).
bool Loadgen::finish_connect(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    int error = 0;
    socklen_t length = sizeof error;
    if (::getsockopt(client.fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) error = errno;
    if (error != 0) {
        fail(index, Failure::ConnectFailed);
        return false;
    }
    --connecting_;
    if (client.ever_connected) {
        ++counters_.reconnects;
    } else {
        client.ever_connected = true;
        ++counters_.connected;
    }
    switch (options_.mode) {
    case Mode::Idle:
        unlink(index);
        client.phase = Phase::Holding;
        ++counters_.held;
        break;
    case Mode::Http: begin_request(index, Phase::SendRequest); break;
    case Mode::TunnelSetup:
    case Mode::TunnelRequests: begin_request(index, Phase::SendConnect); break;
    }
    return true;
}

void Loadgen::begin_request(std::uint32_t index, Phase phase) noexcept {
    Client& client = clients_[index];
    std::uint64_t now = now_ns();
    client.phase = phase;
    client.sent = 0;
    client.response = Response{};
    client.response_bytes = 0;
    if (options_.mode != Mode::TunnelSetup) client.started_ns = now;  // tunnel-setup times the cycle
    arm(index, now);
}

void Loadgen::send_request(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    const std::string& request = client.phase == Phase::SendConnect ? connect_request_ : get_request_;
    ssize_t n = ::send(client.fd, request.data() + client.sent, request.size() - client.sent, MSG_NOSIGNAL);
    if (n < 0) {
        if (would_block(errno)) {
            client.can_write = false;
        } else if (errno != EINTR) {
            peer_closed(index, false);
        }
        return;
    }
    client.sent += static_cast<std::uint32_t>(n);
    if (client.sent == request.size())
        client.phase = client.phase == Phase::SendConnect ? Phase::ReadConnect : Phase::ReadResponse;
}

void Loadgen::read_response(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    ssize_t n = ::recv(client.fd, read_buffer_.get(), read_buffer_size, 0);
    if (n == 0) {
        peer_closed(index, true);
        return;
    }
    if (n < 0) {
        if (would_block(errno)) {
            client.can_read = false;
        } else if (errno != EINTR) {
            peer_closed(index, false);
        }
        return;
    }
    auto size = static_cast<std::size_t>(n);
    if (size < read_buffer_size && !client.hangup) client.can_read = false;
    client.response_bytes += size;
    std::size_t used = 0;
    switch (client.response.feed(read_buffer_.get(), size, used, client.phase == Phase::ReadConnect)) {
    case Feed::Partial: return;
    case Feed::Error: fail(index, Failure::BadResponse); return;
    case Feed::Done:
        if (used != size) {
            fail(index, Failure::BadResponse);  // bytes nobody asked for yet
            return;
        }
        complete(index);
        return;
    }
}

void Loadgen::read_idle(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    ssize_t n = ::recv(client.fd, read_buffer_.get(), read_buffer_size, 0);
    if (n > 0) {
        if (static_cast<std::size_t>(n) < read_buffer_size && !client.hangup) client.can_read = false;
        return;  // whatever the peer says (a 408, say) is discarded; its close is what counts
    }
    if (n < 0 && (would_block(errno) || errno == EINTR)) {
        if (errno != EINTR) client.can_read = false;
        return;
    }
    ++counters_.closed;
    --counters_.held;
    close_connection(index);
    client.phase = Phase::Dead;
}

// A response (or the answer to CONNECT) ended cleanly at a message boundary.
void Loadgen::complete(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    const Response& response = client.response;
    if (client.phase == Phase::ReadConnect) {
        if (response.status() / 100 != 2) {
            fail(index, Failure::NotOk);
            return;
        }
        begin_request(index, Phase::SendRequest);
        return;
    }
    if (response.status() != 200) {
        fail(index, Failure::NotOk);
        return;
    }
    if (options_.expect_set && response.body_bytes() != options_.expect_bytes) {
        fail(index, Failure::BadLength);
        return;
    }
    std::uint64_t now = now_ns();
    if (!client.ever_served) {
        client.ever_served = true;
        ++counters_.served;
    }
    if (measuring_ && now < window_end_) {
        ++counters_.requests;
        counters_.body_bytes += response.body_bytes();
        latency_.record(now - client.started_ns);
    }
    ++client.responses;
    if (options_.mode == Mode::TunnelSetup || response.close_after()) {
        reopen(index);  // announced or by design: not an error
        return;
    }
    begin_request(index, Phase::SendRequest);
}

// The peer closed (clean) or reset the connection while a request or response
// was under way.
void Loadgen::peer_closed(std::uint32_t index, bool clean) noexcept {
    Client& client = clients_[index];
    if (clean && client.phase == Phase::ReadResponse && client.response.end_at_eof()) {
        complete(index);
        return;
    }
    // A keep-alive connection closed before any byte of the next response: the
    // server ended it between requests, which plain HTTP clients retry. Through a
    // tunnel the same thing is a broken tunnel.
    bool between_requests = client.responses > 0 && client.response_bytes == 0 &&
                            (client.phase == Phase::SendRequest || client.phase == Phase::ReadResponse);
    if (options_.mode == Mode::Http && between_requests) {
        reopen(index);
        return;
    }
    fail(index, Failure::Closed);
}

void Loadgen::fail(std::uint32_t index, Failure failure) noexcept {
    switch (failure) {
    case Failure::NotOk: ++counters_.not_ok; break;
    case Failure::BadLength: ++counters_.bad_length; break;
    case Failure::BadResponse: ++counters_.bad_response; break;
    case Failure::Timeout: ++counters_.timeouts; break;
    case Failure::ConnectFailed: ++counters_.connect_failures; break;
    case Failure::Closed: ++counters_.closed; break;
    }
    close_connection(index);
    Client& client = clients_[index];
    if (options_.mode == Mode::Idle) {
        client.phase = Phase::Dead;
    } else if (failure == Failure::ConnectFailed) {
        // A refused or impossible connect fails at once: wait before the retry
        // so a dead target does not turn the loop into a spin.
        client.deadline_ns = now_ns() + retry_delay_ns;
        link(index, retry_list);
    } else {
        link(index, pending_list);
    }
}

// The one close path: releases the socket and the timer; the caller decides
// where the client goes next.
void Loadgen::close_connection(std::uint32_t index) noexcept {
    Client& client = clients_[index];
    if (client.phase == Phase::Connecting) --connecting_;
    if (client.fd >= 0) ::close(client.fd);
    client.fd = -1;
    ++client.generation;
    unlink(index);
    client.phase = Phase::Pending;
    client.can_read = client.can_write = client.hangup = false;
}

void Loadgen::run() {
    std::vector<epoll_event> events(max_events);
    std::uint64_t now = now_ns();
    while (!stop_requested) {
        now = now_ns();
        expire(now);
        start_connects(now);
        if (!measuring_ && ramp_done()) {
            measuring_ = true;
            window_start_ = now;
            window_end_ = now + (options_.mode == Mode::Idle ? options_.hold_ns : options_.duration_ns);
            if (options_.mode == Mode::Idle) {
                std::printf("ready connected=%u\n", counters_.connected);
                std::fflush(stdout);
            }
        }
        if (measuring_ && now >= window_end_) break;
        int n = ::epoll_wait(epoll_fd_, events.data(), max_events, wait_timeout(now));
        for (int i = 0; i < n; ++i) on_event(events[static_cast<std::size_t>(i)]);
    }
    print_summary(std::min(now_ns(), window_end_));
}

void Loadgen::print_summary(std::uint64_t now) const {
    double seconds = measuring_ ? static_cast<double>(now - window_start_) / 1e9 : 0;
    const Counters& c = counters_;
    if (options_.mode == Mode::Idle) {
        std::printf("mode=idle connections=%" PRIu32 " connected=%" PRIu32 " held=%" PRIu32 " closed=%" PRIu64
                    " errors=%" PRIu64 " timeouts=%" PRIu64 " connect_failures=%" PRIu64 " seconds=%.2f\n",
                    options_.connections, c.connected, c.held, c.closed, c.timeouts + c.connect_failures,
                    c.timeouts, c.connect_failures, seconds);
        std::fflush(stdout);
        return;
    }
    auto ms = [](double ns) { return ns / 1e6; };
    auto pct = [&](double fraction) { return ms(static_cast<double>(latency_.percentile(fraction))); };
    std::uint64_t errors =
        c.not_ok + c.bad_length + c.bad_response + c.timeouts + c.connect_failures + c.closed;
    std::printf("mode=%s connections=%" PRIu32 " connected=%" PRIu32 " served=%" PRIu32 " requests=%" PRIu64
                " errors=%" PRIu64 " non200=%" PRIu64 " bad_length=%" PRIu64 " bad_response=%" PRIu64
                " timeouts=%" PRIu64 " connect_failures=%" PRIu64 " closed=%" PRIu64 " reconnects=%" PRIu64
                " seconds=%.2f rps=%.1f mean_ms=%.3f p50_ms=%.3f p90_ms=%.3f p99_ms=%.3f p999_ms=%.3f"
                " max_ms=%.3f body_bytes=%" PRIu64 "\n",
                mode_name(options_.mode), options_.connections, c.connected, c.served, c.requests, errors,
                c.not_ok, c.bad_length, c.bad_response, c.timeouts, c.connect_failures, c.closed, c.reconnects,
                seconds, seconds > 0 ? static_cast<double>(c.requests) / seconds : 0.0, ms(latency_.mean()),
                pct(0.50), pct(0.90), pct(0.99), pct(0.999), ms(static_cast<double>(latency_.max())),
                c.body_bytes);
    std::fflush(stdout);
}

void on_stop_signal(int) { stop_requested = 1; }

}  // namespace

int main(int argc, char** argv) {
    Options options = parse_options(argc, argv);
    std::uint64_t limit = raise_descriptor_limit();
    if (options.connections + reserved_descriptors > limit)
        usage_error("--connections " + std::to_string(options.connections) + " needs " +
                    std::to_string(options.connections + reserved_descriptors) +
                    " descriptors but the open-file limit is " + std::to_string(limit));
    struct sigaction action{};
    action.sa_handler = on_stop_signal;  // no SA_RESTART: epoll_wait returns and the loop ends
    ::sigaction(SIGINT, &action, nullptr);
    ::sigaction(SIGTERM, &action, nullptr);
    ::signal(SIGPIPE, SIG_IGN);
    Loadgen loadgen(options);
    loadgen.run();
    return 0;
}
