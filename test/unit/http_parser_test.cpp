// Table-driven tests for the HTTP/1.x head parsers, the chunked decoder and the
// framing rules. Every head case is fed whole, byte by byte and split at every
// offset, and all three must agree. Each call sees its bytes copied so that they
// end right before a PROT_NONE page: reading one byte past the input crashes.
// (The copy moves the start between calls; the parsers keep offsets, not
// pointers, so only the bytes matter to them.)

#include "cproxy/http_parser.hpp"

#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <string>
#include <utility>
#include <vector>

using namespace cproxy::http;
using namespace std::string_literals;

namespace {

// A mapping whose last page is inaccessible; place() copies bytes to end
// exactly at that page.
class GuardedBuffer {
public:
    explicit GuardedBuffer(std::size_t capacity) {
        const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        data_bytes_ = (capacity / page + 1) * page;
        mapping_bytes_ = data_bytes_ + page;
        void* mapping = mmap(nullptr, mapping_bytes_, PROT_READ | PROT_WRITE,
                             MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        REQUIRE(mapping != MAP_FAILED);
        base_ = static_cast<char*>(mapping);
        REQUIRE(mprotect(base_ + data_bytes_, page, PROT_NONE) == 0);
    }
    ~GuardedBuffer() { munmap(base_, mapping_bytes_); }
    GuardedBuffer(const GuardedBuffer&) = delete;
    GuardedBuffer& operator=(const GuardedBuffer&) = delete;

    std::string_view place(std::string_view bytes) {
        char* start = base_ + data_bytes_ - bytes.size();
        if (!bytes.empty()) std::memcpy(start, bytes.data(), bytes.size());
        return {start, bytes.size()};
    }

private:
    char* base_ = nullptr;
    std::size_t data_bytes_ = 0;
    std::size_t mapping_bytes_ = 0;
};

// ---- head parser harness -----------------------------------------------------

// A view as (offset into the input, text), so results from different copies of
// the input compare equal exactly when the parser found the same bytes.
struct Located {
    std::ptrdiff_t offset = -1;
    std::string text;
    bool operator==(const Located&) const = default;
};

Located locate(std::string_view view, std::string_view input) {
    const std::ptrdiff_t offset = view.data() - input.data();
    // Every view must lie inside the input.
    if (offset < 0 || static_cast<std::size_t>(offset) + view.size() > input.size()) return {};
    return {offset, std::string(view)};
}

struct Outcome {
    ParseStatus status = ParseStatus::Partial;
    int error_status = 0;  // requests only
    std::string error_reason;
    Located method_or_reason;
    Located target;
    int status_code = 0;  // responses only
    int version_minor = -1;
    std::vector<std::pair<Located, Located>> headers;
    std::size_t length = 0;
    bool operator==(const Outcome&) const = default;
};

Outcome describe_request(ParseStatus status, const RequestParser& parser,
                         const RequestHead& head, std::string_view input) {
    Outcome outcome;
    outcome.status = status;
    if (status == ParseStatus::Error) {
        outcome.error_status = parser.error_status();
        outcome.error_reason = parser.error_reason();
    }
    if (status != ParseStatus::Done) return outcome;
    outcome.method_or_reason = locate(head.method, input);
    outcome.target = locate(head.target, input);
    outcome.version_minor = head.version_minor;
    for (std::size_t i = 0; i < head.header_count; ++i) {
        outcome.headers.emplace_back(locate(head.headers[i].name, input),
                                     locate(head.headers[i].value, input));
    }
    outcome.length = head.length;
    return outcome;
}

Outcome describe_response(ParseStatus status, const ResponseParser& parser,
                          const ResponseHead& head, std::string_view input) {
    Outcome outcome;
    outcome.status = status;
    if (status == ParseStatus::Error) outcome.error_reason = parser.error_reason();
    if (status != ParseStatus::Done) return outcome;
    outcome.method_or_reason = locate(head.reason, input);
    outcome.status_code = head.status;
    outcome.version_minor = head.version_minor;
    for (std::size_t i = 0; i < head.header_count; ++i) {
        outcome.headers.emplace_back(locate(head.headers[i].name, input),
                                     locate(head.headers[i].value, input));
    }
    outcome.length = head.length;
    return outcome;
}

// Feeds `input` whole, byte by byte and split at every offset; checks that all
// agree and returns the common outcome. Parser is RequestParser or ResponseParser.
template <class Parser, class Head, class Describe>
Outcome feed_every_way(const std::string& input, std::uint32_t max_head_bytes,
                       Describe describe) {
    GuardedBuffer first(input.size());
    GuardedBuffer second(input.size());
    auto head = std::make_unique<Head>();

    const std::string_view whole_view = first.place(input);
    Parser whole_parser(max_head_bytes);
    const Outcome whole =
        describe(whole_parser.parse(whole_view, *head), whole_parser, *head, whole_view);

    // Byte by byte: a growing prefix until the parser stops asking for more.
    {
        Parser parser(max_head_bytes);
        Outcome outcome;
        for (std::size_t k = 1; k <= input.size(); ++k) {
            const std::string_view prefix = first.place(std::string_view(input).substr(0, k));
            const ParseStatus status = parser.parse(prefix, *head);
            outcome = describe(status, parser, *head, prefix);
            if (status != ParseStatus::Partial) break;
        }
        if (input.empty()) outcome = whole;
        if (!(outcome == whole)) FAIL("byte-by-byte result differs from whole-input result");
    }

    // Every split: a prefix [0, k), then the whole input.
    for (std::size_t k = 0; k <= input.size(); ++k) {
        Parser parser(max_head_bytes);
        const ParseStatus first_status =
            parser.parse(first.place(std::string_view(input).substr(0, k)), *head);
        const std::string_view full = second.place(input);
        const ParseStatus status = parser.parse(full, *head);
        if (first_status != ParseStatus::Partial && first_status != status) {
            FAIL("split at " << k << ": a finished parse changed its mind");
        }
        if (!(describe(status, parser, *head, full) == whole)) {
            FAIL("split at " << k << " gives a different result");
        }
    }
    return whole;
}

Outcome parse_request_every_way(const std::string& input, std::uint32_t max_head_bytes = 16384) {
    return feed_every_way<RequestParser, RequestHead>(input, max_head_bytes, describe_request);
}

Outcome parse_response_every_way(const std::string& input,
                                 std::uint32_t max_head_bytes = 16384) {
    return feed_every_way<ResponseParser, ResponseHead>(input, max_head_bytes,
                                                        describe_response);
}

using Fields = std::vector<std::pair<std::string, std::string>>;

std::string texts(const Outcome& outcome) {
    std::string all;
    for (const auto& [name, value] : outcome.headers) all += name.text + ": " + value.text + "\n";
    return all;
}

std::string texts(const Fields& fields) {
    std::string all;
    for (const auto& [name, value] : fields) all += name + ": " + value + "\n";
    return all;
}

struct RequestCase {
    const char* name;
    std::string input;
    ParseStatus status = ParseStatus::Done;
    int error_status = 0;  // for Error
    const char* reason = nullptr;  // checked when set
    std::string method = {};
    std::string target = {};
    int version_minor = 1;
    Fields headers = {};
    std::size_t length = 0;  // 0: the whole input
    std::uint32_t max_head_bytes = 16384;
};

void check_request_case(const RequestCase& c) {
    INFO("case: " << c.name);
    const Outcome outcome = parse_request_every_way(c.input, c.max_head_bytes);
    REQUIRE(outcome.status == c.status);
    if (c.status == ParseStatus::Error) {
        CHECK(outcome.error_status == c.error_status);
        if (c.reason) CHECK(outcome.error_reason == c.reason);
        return;
    }
    if (c.status == ParseStatus::Partial) return;
    CHECK(outcome.method_or_reason.text == c.method);
    CHECK(outcome.target.text == c.target);
    CHECK(outcome.version_minor == c.version_minor);
    CHECK(texts(outcome) == texts(c.headers));
    CHECK(outcome.length == (c.length ? c.length : c.input.size()));
}

std::string repeat(const std::string& piece, std::size_t times) {
    std::string all;
    for (std::size_t i = 0; i < times; ++i) all += piece;
    return all;
}

// "GET /aaa… HTTP/1.1" with a request line of exactly `line_length` bytes.
std::string request_line_of(std::size_t line_length) {
    const std::string fixed = "GET /" + std::string(" HTTP/1.1");
    return "GET /" + std::string(line_length - fixed.size(), 'a') + " HTTP/1.1";
}

std::string numbered_fields(std::size_t count) {
    std::string all;
    for (std::size_t i = 0; i < count; ++i) all += "X-" + std::to_string(i) + ": v\r\n";
    return all;
}

}  // namespace

TEST_CASE("parser: sizes stay small enough for every session slot") {
    STATIC_REQUIRE(sizeof(RequestParser) <= 16);
    STATIC_REQUIRE(sizeof(ResponseParser) <= 16);
    STATIC_REQUIRE(sizeof(ChunkedDecoder) <= 24);
}

TEST_CASE("parser: request heads that are accepted") {
    const std::vector<RequestCase> cases = {
        {.name = "origin-form GET",
         .input = "GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n",
         .method = "GET",
         .target = "/index.html?q=1",
         .headers = {{"Host", "example.com"}}},
        {.name = "absolute-form",
         .input = "GET http://example.com:8080/a/b?c=d HTTP/1.1\r\nHost: example.com:8080\r\n"
                  "Accept: */*\r\n\r\n",
         .method = "GET",
         .target = "http://example.com:8080/a/b?c=d",
         .headers = {{"Host", "example.com:8080"}, {"Accept", "*/*"}}},
        {.name = "CONNECT authority-form",
         .input = "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
         .method = "CONNECT",
         .target = "example.com:443",
         .headers = {{"Host", "example.com:443"}}},
        {.name = "HTTP/1.0 without fields",
         .input = "GET / HTTP/1.0\r\n\r\n",
         .method = "GET",
         .target = "/",
         .version_minor = 0},
        {.name = "HTTP/1.2 is treated as 1.1",
         .input = "GET / HTTP/1.2\r\n\r\n",
         .method = "GET",
         .target = "/",
         .version_minor = 1},
        {.name = "HTTP/1.9 is treated as 1.1",
         .input = "OPTIONS * HTTP/1.9\r\n\r\n",
         .method = "OPTIONS",
         .target = "*",
         .version_minor = 1},
        {.name = "token method with unusual tchars",
         .input = "M-SEARCH!#$%&'*+.^_`|~ / HTTP/1.1\r\n\r\n",
         .method = "M-SEARCH!#$%&'*+.^_`|~",
         .target = "/"},
        {.name = "one leading CRLF is skipped",
         .input = "\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
         .method = "GET",
         .target = "/",
         .headers = {{"Host", "a"}}},
        {.name = "four leading CRLFs are skipped",
         .input = "\r\n\r\n\r\n\r\nPOST /x HTTP/1.1\r\n\r\n",
         .method = "POST",
         .target = "/x"},
        {.name = "value trimming",
         .input = "GET / HTTP/1.1\r\nA:   b c \t\r\nB:\tx\t\r\nC:y\r\n\r\n",
         .method = "GET",
         .target = "/",
         .headers = {{"A", "b c"}, {"B", "x"}, {"C", "y"}}},
        {.name = "empty values",
         .input = "GET / HTTP/1.1\r\nA:\r\nB:   \r\nC: \t \r\n\r\n",
         .method = "GET",
         .target = "/",
         .headers = {{"A", ""}, {"B", ""}, {"C", ""}}},
        {.name = "obs-text and inner colons in values",
         .input = "GET / HTTP/1.1\r\nX-Name: caf\xc3\xa9 \x80\xff\r\nX-Time: 12:34:56\r\n\r\n",
         .method = "GET",
         .target = "/",
         .headers = {{"X-Name", "caf\xc3\xa9 \x80\xff"}, {"X-Time", "12:34:56"}}},
        {.name = "many headers",
         .input = "GET /many HTTP/1.1\r\nHost: h\r\nUser-Agent: curl/8.0\r\nAccept: */*\r\n"
                  "Accept-Encoding: gzip, br\r\nConnection: keep-alive\r\n"
                  "Cookie: a=b; c=d\r\nX-Forwarded-For: 10.0.0.1, 10.0.0.2\r\n"
                  "Content-Length: 0\r\nx: y\r\nLast: done\r\n\r\n",
         .method = "GET",
         .target = "/many",
         .headers = {{"Host", "h"},
                     {"User-Agent", "curl/8.0"},
                     {"Accept", "*/*"},
                     {"Accept-Encoding", "gzip, br"},
                     {"Connection", "keep-alive"},
                     {"Cookie", "a=b; c=d"},
                     {"X-Forwarded-For", "10.0.0.1, 10.0.0.2"},
                     {"Content-Length", "0"},
                     {"x", "y"},
                     {"Last", "done"}}},
        {.name = "bytes after the head are not part of it",
         .input = "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\n",
         .method = "GET",
         .target = "/a",
         .headers = {{"Host", "a"}},
         .length = 28},
        {.name = "head of exactly max_head_bytes",
         .input = "GET / HTTP/1.1\r\nA: " + std::string(64 - 23, 'v') + "\r\n\r\n",
         .method = "GET",
         .target = "/",
         .headers = {{"A", std::string(64 - 23, 'v')}},
         .max_head_bytes = 64},
    };
    for (const auto& c : cases) check_request_case(c);
}

TEST_CASE("parser: request heads that are incomplete") {
    const std::vector<RequestCase> cases = {
        {.name = "empty", .input = "", .status = ParseStatus::Partial},
        {.name = "request line only",
         .input = "GET / HTTP/1.1\r\n",
         .status = ParseStatus::Partial},
        {.name = "missing final CRLF",
         .input = "GET / HTTP/1.1\r\nHost: a\r\n",
         .status = ParseStatus::Partial},
        {.name = "only empty lines so far", .input = "\r\n\r\n", .status = ParseStatus::Partial},
        {.name = "final CR without LF yet",
         .input = "GET / HTTP/1.1\r\n\r",
         .status = ParseStatus::Partial},
    };
    for (const auto& c : cases) check_request_case(c);
}

TEST_CASE("parser: malformed request heads") {
    using enum ParseStatus;
    const std::vector<RequestCase> cases = {
        {.name = "HTTP/2.0", .input = "GET / HTTP/2.0\r\n\r\n", .status = Error,
         .error_status = 505, .reason = "unsupported HTTP version"},
        {.name = "HTTP/0.9", .input = "GET / HTTP/0.9\r\n\r\n", .status = Error,
         .error_status = 505},
        {.name = "HTTP/2.0x is malformed, not unsupported",
         .input = "GET / HTTP/2.0x\r\n\r\n", .status = Error, .error_status = 400},
        {.name = "lowercase version", .input = "GET / http/1.1\r\n\r\n", .status = Error,
         .error_status = 400, .reason = "malformed HTTP version"},
        {.name = "HTTP/1.1x", .input = "GET / HTTP/1.1x\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "HTTP/1", .input = "GET / HTTP/1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "HTTP/11.1", .input = "GET / HTTP/11.1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "HTTP/1.1 with trailing space", .input = "GET / HTTP/1.1 \r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "missing version", .input = "GET /\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "missing version after space", .input = "GET / \r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "missing target", .input = "GET HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "method only", .input = "GET\r\n\r\n", .status = Error, .error_status = 400},
        {.name = "two spaces after method", .input = "GET  / HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400, .reason = "malformed request line"},
        {.name = "two spaces before version", .input = "GET /  HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "leading space", .input = " GET / HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "invalid method char", .input = "G@T / HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400, .reason = "invalid method"},
        {.name = "method with DEL", .input = "GE\x7fT / HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "method with tab", .input = "GET\t/ HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400},
        {.name = "non-ASCII in target", .input = "GET /caf\xc3\xa9 HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400, .reason = "invalid request target"},
        {.name = "control byte in target", .input = "GET /a\x01 HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "five leading CRLFs", .input = "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "leading bare LF", .input = "\nGET / HTTP/1.1\r\n\r\n", .status = Error,
         .error_status = 400, .reason = "bare LF"},
        {.name = "space before colon", .input = "GET / HTTP/1.1\r\nHost : a\r\n\r\n",
         .status = Error, .error_status = 400,
         .reason = "header name has whitespace before colon"},
        {.name = "tab before colon", .input = "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "obs-fold", .input = "GET / HTTP/1.1\r\nA: b\r\n c\r\n\r\n", .status = Error,
         .error_status = 400, .reason = "obs-fold"},
        {.name = "obs-fold with tab", .input = "GET / HTTP/1.1\r\nA: b\r\n\tc\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "whitespace before the first field",
         .input = "GET / HTTP/1.1\r\n A: b\r\n\r\n", .status = Error, .error_status = 400},
        {.name = "NUL in value", .input = "GET / HTTP/1.1\r\nA: b\0c\r\n\r\n"s,
         .status = Error, .error_status = 400, .reason = "invalid byte in header value"},
        {.name = "control byte in value", .input = "GET / HTTP/1.1\r\nA: b\x1b\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "DEL in value", .input = "GET / HTTP/1.1\r\nA: b\x7f\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "bare CR in value", .input = "GET / HTTP/1.1\r\nA: b\rc\r\n\r\n",
         .status = Error, .error_status = 400, .reason = "bare CR"},
        {.name = "bare CR ending the request line", .input = "GET / HTTP/1.1\rHost: a\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "bare CR as final line", .input = "GET / HTTP/1.1\r\nA: b\r\n\rX",
         .status = Error, .error_status = 400},
        {.name = "bare LF everywhere", .input = "GET / HTTP/1.1\nHost: a\n\n",
         .status = Error, .error_status = 400, .reason = "bare LF"},
        {.name = "bare LF ending a field", .input = "GET / HTTP/1.1\r\nHost: a\n\r\n",
         .status = Error, .error_status = 400, .reason = "bare LF"},
        {.name = "bare LF as final line", .input = "GET / HTTP/1.1\r\nHost: a\r\n\n",
         .status = Error, .error_status = 400, .reason = "bare LF"},
        {.name = "bare LF inside the request line", .input = "GET /\n HTTP/1.1\r\n\r\n",
         .status = Error, .error_status = 400, .reason = "bare LF"},
        {.name = "empty field name", .input = "GET / HTTP/1.1\r\n: v\r\n\r\n",
         .status = Error, .error_status = 400},
        {.name = "invalid name char", .input = "GET / HTTP/1.1\r\nA(b: v\r\n\r\n",
         .status = Error, .error_status = 400, .reason = "invalid header name"},
        {.name = "field without colon", .input = "GET / HTTP/1.1\r\nHost\r\n\r\n",
         .status = Error, .error_status = 400},
    };
    for (const auto& c : cases) check_request_case(c);
}

TEST_CASE("parser: request size limits") {
    using enum ParseStatus;
    const std::string line_8192 = request_line_of(8192);
    const std::string line_8193 = request_line_of(8193);
    REQUIRE(line_8192.size() == 8192);
    const std::vector<RequestCase> cases = {
        {.name = "request line of exactly 8192 bytes",
         .input = line_8192 + "\r\n\r\n",
         .method = "GET",
         .target = line_8192.substr(4, 8192 - 4 - 9)},
        {.name = "request line of 8192 bytes after leading CRLFs",
         .input = "\r\n\r\n" + line_8192 + "\r\n\r\n",
         .method = "GET",
         .target = line_8192.substr(4, 8192 - 4 - 9)},
        {.name = "request line of 8193 bytes", .input = line_8193 + "\r\n\r\n",
         .status = Error, .error_status = 414, .reason = "request line too long"},
        {.name = "request line of 8193 bytes, incomplete", .input = line_8193.substr(0, 8193),
         .status = Error, .error_status = 414},
        {.name = "incomplete target over the limit", .input = "GET /" + std::string(9000, 'a'),
         .status = Error, .error_status = 414},
        {.name = "endless method", .input = std::string(8193, 'A'), .status = Error,
         .error_status = 414},
        {.name = "head one byte over max_head_bytes",
         .input = "GET / HTTP/1.1\r\nA: " + std::string(64 - 23 + 1, 'v') + "\r\n\r\n",
         .status = Error, .error_status = 431, .reason = "head too large",
         .max_head_bytes = 64},
        {.name = "head over the default limit",
         .input = "GET / HTTP/1.1\r\n" + repeat("X-Big: " + std::string(1000, 'b') + "\r\n", 17) +
                  "\r\n",
         .status = Error, .error_status = 431},
        {.name = "incomplete head over the default limit",
         .input = "GET / HTTP/1.1\r\n" + repeat("X-Big: " + std::string(1000, 'b') + "\r\n", 17),
         .status = Error, .error_status = 431},
        {.name = "101 header fields", .input = "GET / HTTP/1.1\r\n" + numbered_fields(101) + "\r\n",
         .status = Error, .error_status = 431, .reason = "too many header fields"},
    };
    for (const auto& c : cases) check_request_case(c);
}

TEST_CASE("parser: 100 header fields are accepted and each view is right") {
    const std::string input = "GET / HTTP/1.1\r\n" + numbered_fields(100) + "\r\n";
    const Outcome outcome = parse_request_every_way(input);
    REQUIRE(outcome.status == ParseStatus::Done);
    REQUIRE(outcome.headers.size() == 100);
    for (std::size_t i = 0; i < 100; ++i) {
        const std::string name = "X-" + std::to_string(i);
        CHECK(outcome.headers[i].first.text == name);
        CHECK(outcome.headers[i].second.text == "v");
        CHECK(input.compare(static_cast<std::size_t>(outcome.headers[i].first.offset),
                            name.size() + 3, name + ": v") == 0);
    }
}

TEST_CASE("parser: the field limit is the caller's, up to header_capacity") {
    auto head = std::make_unique<RequestHead>();
    const std::string ten = "GET / HTTP/1.1\r\n" + numbered_fields(10) + "\r\n";
    RequestParser strict(16384, 9);
    REQUIRE(strict.parse(ten, *head) == ParseStatus::Error);
    CHECK(strict.error_status() == 431);
    strict.reset();
    strict.set_limits(16384, 10);
    CHECK(strict.parse(ten, *head) == ParseStatus::Done);
    const std::string full = "GET / HTTP/1.1\r\n" + numbered_fields(header_capacity) + "\r\n";
    RequestParser roomy(65536, static_cast<std::uint16_t>(header_capacity));
    REQUIRE(roomy.parse(full, *head) == ParseStatus::Done);
    CHECK(head->header_count == header_capacity);
    roomy.reset();
    CHECK(roomy.parse("GET / HTTP/1.1\r\n" + numbered_fields(header_capacity + 1) + "\r\n", *head) ==
          ParseStatus::Error);
}

TEST_CASE("parser: a finished request parser keeps its answer") {
    RequestParser parser;
    auto head = std::make_unique<RequestHead>();
    const std::string input = "GET / HTTP/1.1\r\nHost: a\r\n\r\nmore bytes";
    REQUIRE(parser.parse(input, *head) == ParseStatus::Done);
    CHECK(head->length == 27);
    const std::string longer = input + "and more";
    REQUIRE(parser.parse(longer, *head) == ParseStatus::Done);
    CHECK(head->length == 27);
    CHECK(head->headers[0].value == "a");

    parser.reset();
    REQUIRE(parser.parse("GET / HTTP/9.9\r\n\r\n", *head) == ParseStatus::Error);
    CHECK(parser.error_status() == 505);
    REQUIRE(parser.parse("GET / HTTP/9.9\r\n\r\nxx", *head) == ParseStatus::Error);
    CHECK(parser.error_status() == 505);

    parser.reset();
    CHECK(parser.error_status() == 0);
    REQUIRE(parser.parse("GET / HTTP/1.0\r\n\r\n", *head) == ParseStatus::Done);
    CHECK(head->version_minor == 0);
}

// ---- responses -----------------------------------------------------------------

struct ResponseCase {
    const char* name;
    std::string input;
    ParseStatus status = ParseStatus::Done;
    int status_code = 0;
    std::string reason = {};
    int version_minor = 1;
    Fields headers = {};
    const char* error_reason = nullptr;
};

TEST_CASE("parser: response heads") {
    using enum ParseStatus;
    const std::vector<ResponseCase> cases = {
        {.name = "normal",
         .input = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nServer: x \r\n\r\n",
         .status_code = 200,
         .reason = "OK",
         .headers = {{"Content-Length", "5"}, {"Server", "x"}}},
        {.name = "HTTP/1.0 with a long reason",
         .input = "HTTP/1.0 404 Not Found Here\r\n\r\n",
         .status_code = 404,
         .reason = "Not Found Here",
         .version_minor = 0},
        {.name = "empty reason after SP", .input = "HTTP/1.1 200 \r\n\r\n", .status_code = 200},
        {.name = "no reason, no SP", .input = "HTTP/1.1 204\r\nA: b\r\n\r\n", .status_code = 204,
         .headers = {{"A", "b"}}},
        {.name = "reason with obs-text", .input = "HTTP/1.1 500 \xc3\xa9rror\r\n\r\n",
         .status_code = 500, .reason = "\xc3\xa9rror"},
        {.name = "status 100", .input = "HTTP/1.1 100 Continue\r\n\r\n", .status_code = 100,
         .reason = "Continue"},
        {.name = "status 999", .input = "HTTP/1.1 999 Odd\r\n\r\n", .status_code = 999,
         .reason = "Odd"},
        {.name = "HTTP/1.5 is treated as 1.1", .input = "HTTP/1.5 200 OK\r\n\r\n",
         .status_code = 200, .reason = "OK"},
        {.name = "incomplete", .input = "HTTP/1.1 200 OK\r\nA: b\r\n", .status = Partial},
        {.name = "status 099", .input = "HTTP/1.1 099 X\r\n\r\n", .status = Error,
         .error_reason = "invalid status code"},
        {.name = "two-digit status", .input = "HTTP/1.1 20 OK\r\n\r\n", .status = Error},
        {.name = "four-digit status", .input = "HTTP/1.1 2000 OK\r\n\r\n", .status = Error},
        {.name = "letters for status", .input = "HTTP/1.1 abc OK\r\n\r\n", .status = Error},
        {.name = "HTTP/2", .input = "HTTP/2 200 OK\r\n\r\n", .status = Error,
         .error_reason = "unsupported HTTP version"},
        {.name = "HTTP/2.0", .input = "HTTP/2.0 200 OK\r\n\r\n", .status = Error},
        {.name = "lowercase version", .input = "http/1.1 200 OK\r\n\r\n", .status = Error},
        {.name = "two spaces before status", .input = "HTTP/1.1  200 OK\r\n\r\n",
         .status = Error},
        {.name = "leading CRLF", .input = "\r\nHTTP/1.1 200 OK\r\n\r\n", .status = Error},
        {.name = "bare LF", .input = "HTTP/1.1 200 OK\nA: b\n\n", .status = Error,
         .error_reason = "bare LF"},
        {.name = "control byte in reason", .input = "HTTP/1.1 200 O\x01K\r\n\r\n",
         .status = Error},
        {.name = "obs-fold", .input = "HTTP/1.1 200 OK\r\nA: b\r\n c\r\n\r\n", .status = Error,
         .error_reason = "obs-fold"},
        {.name = "space before colon", .input = "HTTP/1.1 200 OK\r\nA : b\r\n\r\n",
         .status = Error},
        {.name = "101 fields",
         .input = "HTTP/1.1 200 OK\r\n" + numbered_fields(101) + "\r\n", .status = Error,
         .error_reason = "too many header fields"},
    };
    for (const auto& c : cases) {
        INFO("case: " << c.name);
        const Outcome outcome = parse_response_every_way(c.input);
        REQUIRE(outcome.status == c.status);
        if (c.status == Error && c.error_reason) CHECK(outcome.error_reason == c.error_reason);
        if (c.status != Done) continue;
        CHECK(outcome.status_code == c.status_code);
        CHECK(outcome.method_or_reason.text == c.reason);
        CHECK(outcome.version_minor == c.version_minor);
        CHECK(texts(outcome) == texts(c.headers));
        CHECK(outcome.length == c.input.size());
    }
}

TEST_CASE("parser: response head over max_head_bytes") {
    const std::string input = "HTTP/1.1 200 OK\r\nA: " + std::string(100, 'v');
    CHECK(parse_response_every_way(input, 64).status == ParseStatus::Error);
    CHECK(parse_response_every_way(input, 1024).status == ParseStatus::Partial);
}

// ---- chunked bodies ------------------------------------------------------------

namespace {

struct ChunkedOutcome {
    ParseStatus status = ParseStatus::Partial;
    std::size_t consumed = 0;  // total over all feeds; for Error, the offending offset
    bool operator==(const ChunkedOutcome&) const = default;
};

// Feeds pieces in order until Done or Error.
ChunkedOutcome feed_pieces(const std::vector<std::string_view>& pieces, GuardedBuffer& buffer) {
    ChunkedDecoder decoder;
    ChunkedOutcome outcome;
    for (std::string_view piece : pieces) {
        const auto result = decoder.feed(buffer.place(piece));
        outcome.consumed += result.consumed;
        outcome.status = result.status;
        if (result.status != ParseStatus::Partial) break;
        if (result.consumed != piece.size()) FAIL("Partial without consuming everything");
    }
    return outcome;
}

ChunkedOutcome decode_every_way(const std::string& input) {
    GuardedBuffer buffer(input.size());
    const std::string_view all(input);
    const ChunkedOutcome whole = feed_pieces({all}, buffer);

    std::vector<std::string_view> bytes;
    for (std::size_t i = 0; i < all.size(); ++i) bytes.push_back(all.substr(i, 1));
    if (!(feed_pieces(bytes, buffer) == whole)) FAIL("byte-by-byte result differs");

    for (std::size_t k = 0; k <= all.size(); ++k) {
        if (!(feed_pieces({all.substr(0, k), all.substr(k)}, buffer) == whole)) {
            FAIL("split at " << k << " gives a different result");
        }
    }
    return whole;
}

struct ChunkedCase {
    const char* name;
    std::string input;
    ParseStatus status;
    std::size_t consumed = 0;  // for Done: the body length; 0 means the whole input
};

}  // namespace

TEST_CASE("parser: chunked bodies") {
    using enum ParseStatus;
    const std::string next_request = "GET /next HTTP/1.1\r\nHost: a\r\n\r\n";
    const std::vector<ChunkedCase> cases = {
        {"simple", "5\r\nhello\r\n0\r\n\r\n", Done},
        {"empty body", "0\r\n\r\n", Done},
        {"multiple chunks, hex sizes in both cases",
         "a\r\n0123456789\r\nA\r\n0123456789\r\n1\r\n!\r\n0\r\n\r\n", Done},
        {"chunk data containing CRLF and digits", "4\r\n\r\n0\r\r\n0\r\n\r\n", Done},
        {"leading zeros", "0000000005\r\nhello\r\n000\r\n\r\n", Done},
        {"extension names", "5;foo\r\nhello\r\n0;bar;baz\r\n\r\n", Done},
        {"token extension values", "5;a=b;c=d-e\r\nhello\r\n0;last=1\r\n\r\n", Done},
        {"quoted extension values", "5;a=\"x y;z=\\\"q\\\"\"\r\nhello\r\n0;b=\"\"\r\n\r\n", Done},
        {"BWS around ; and =", "5 ;\ta = b ; c\t=\t\"d\"\r\nhello\r\n0 ; e\r\n\r\n", Done},
        {"trailers", "5\r\nhello\r\n0\r\nExpires: never\r\nX-Sum:  abc \r\n\r\n", Done},
        {"followed by a pipelined request",
         "5\r\nhello\r\n0\r\nT: v\r\n\r\n" + next_request, Done,
         std::string("5\r\nhello\r\n0\r\nT: v\r\n\r\n").size()},
        {"largest chunk size, data pending", "1000000000000000\r\nabc", Partial},
        {"incomplete after data", "5\r\nhello", Partial},
        {"incomplete trailer", "0\r\nA: b\r\n", Partial},
        {"bad hex digit", "g\r\nhello\r\n0\r\n\r\n", Error},
        {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", Error},
        {"leading space", " 5\r\nhello\r\n0\r\n\r\n", Error},
        {"empty size", "\r\nhello\r\n0\r\n\r\n", Error},
        {"trailing space without extension", "5 \r\nhello\r\n0\r\n\r\n", Error},
        {"size over 2^60", "1000000000000001\r\n", Error},
        {"size overflowing 64 bits", "FFFFFFFFFFFFFFFFFF\r\n", Error},
        // Sizes that wrap a 64-bit count to a small one if the overflow check
        // before multiplying by 16 is missing: 2^64 would read as the last chunk.
        {"size of exactly 2^64", "10000000000000000\r\n\r\n", Error},
        {"size of 2^64 + 5", "10000000000000005\r\nhello\r\n0\r\n\r\n", Error},
        {"size of 2^68", "100000000000000000\r\n\r\n", Error},
        {"data longer than its size", "5\r\nhelloX\r\n0\r\n\r\n", Error},
        {"data followed by LF only", "5\r\nhello\n0\r\n\r\n", Error},
        {"data followed by CR only", "5\r\nhello\r0\r\n\r\n", Error},
        {"bare LF after size", "5\nhello\r\n0\r\n\r\n", Error},
        {"bare LF ending the body", "0\r\n\n", Error},
        {"extension without name", "5;\r\nhello\r\n0\r\n\r\n", Error},
        {"extension without value", "5;a=\r\nhello\r\n0\r\n\r\n", Error},
        {"extension name with space inside", "5;a b\r\nhello\r\n0\r\n\r\n", Error},
        {"BWS before CR after name", "5;a \r\nhello\r\n0\r\n\r\n", Error},
        {"unterminated quoted value", "5;a=\"abc\r\nhello\r\n0\r\n\r\n", Error},
        {"control byte in quoted value", "5;a=\"a\x01\"\r\nhello\r\n0\r\n\r\n", Error},
        {"junk after quoted value", "5;a=\"x\"y\r\nhello\r\n0\r\n\r\n", Error},
        {"trailer obs-fold", "0\r\nA: b\r\n c\r\n\r\n", Error},
        {"trailer space before colon", "0\r\nA : b\r\n\r\n", Error},
        {"trailer without colon", "0\r\nAbc\r\n\r\n", Error},
        {"trailer with NUL", "0\r\nA: b\0\r\n\r\n"s, Error},
        {"trailer with bare LF", "0\r\nA: b\n\r\n", Error},
        {"size line over 4096 bytes", "5;" + std::string(5000, 'a'), Error},
        {"trailer section over 8192 bytes",
         "0\r\n" + repeat("X-T: " + std::string(1000, 't') + "\r\n", 9) + "\r\n", Error},
    };
    for (const auto& c : cases) {
        INFO("case: " << c.name);
        const ChunkedOutcome outcome = decode_every_way(c.input);
        REQUIRE(outcome.status == c.status);
        if (c.status == Done) CHECK(outcome.consumed == (c.consumed ? c.consumed : c.input.size()));
        if (c.status == Partial) CHECK(outcome.consumed == c.input.size());
    }
}

TEST_CASE("parser: chunked bounds are inclusive") {
    // A size line of exactly 4096 bytes and a trailer section of exactly 8192.
    const std::string size_line = "5;" + std::string(4094, 'a');
    CHECK(decode_every_way(size_line + "\r\nhello\r\n0\r\n\r\n").status == ParseStatus::Done);
    CHECK(decode_every_way(size_line + "a\r\nhello\r\n0\r\n\r\n").status == ParseStatus::Error);

    const std::string field = "X: " + std::string(8192 - 2 - 2 - 3, 'v') + "\r\n";
    CHECK(decode_every_way("0\r\n" + field + "\r\n").status == ParseStatus::Done);
    const std::string longer = "X: " + std::string(8192 - 2 - 2 - 3 + 1, 'v') + "\r\n";
    CHECK(decode_every_way("0\r\n" + longer + "\r\n").status == ParseStatus::Error);
}

TEST_CASE("parser: chunked decoder reports where an error is and stays finished") {
    ChunkedDecoder decoder;
    auto result = decoder.feed("5\r\nhelloX");
    CHECK(result.status == ParseStatus::Error);
    CHECK(result.consumed == 8);
    CHECK(decoder.feed("\r\n").status == ParseStatus::Error);

    decoder.reset();
    result = decoder.feed("0\r\n\r\nGET");
    CHECK(result.status == ParseStatus::Done);
    CHECK(result.consumed == 5);
    result = decoder.feed("GET");
    CHECK(result.status == ParseStatus::Done);
    CHECK(result.consumed == 0);
}

TEST_CASE("parser: chunked decoding in place leaves the data, at every split") {
    const std::string body = "5;ext=1\r\nhello\r\n1\r\n,\r\n6\r\n world\r\n0\r\nT: v\r\n\r\nNEXT";
    const std::string body_end = body.substr(0, body.size() - 4);
    for (std::size_t split = 0; split <= body.size(); ++split) {
        INFO("split at " << split);
        std::string bytes = body;
        ChunkedDecoder decoder;
        std::string data;
        std::size_t consumed = 0;
        ChunkedDecoder::Result result{0, ParseStatus::Partial, 0};
        for (auto [from, to] : {std::pair{std::size_t{0}, split}, std::pair{split, body.size()}}) {
            if (result.status != ParseStatus::Partial) break;
            result = decoder.decode(bytes.data() + from, to - from);
            data.append(bytes.data() + from, result.produced);
            consumed += result.consumed;
        }
        CHECK(result.status == ParseStatus::Done);
        CHECK(data == "hello, world");
        CHECK(consumed == body_end.size());
    }
}

// ---- field helpers and framing -----------------------------------------------

TEST_CASE("parser: iequals and list_contains") {
    CHECK(iequals("Content-Length", "content-length"));
    CHECK(iequals("", ""));
    CHECK_FALSE(iequals("chunked", "chunke"));
    CHECK_FALSE(iequals("a", "b"));
    CHECK_FALSE(iequals("\xc3", "\xe3"));  // only ASCII letters fold

    CHECK(list_contains("keep-alive, Upgrade", "upgrade"));
    CHECK(list_contains(" , ,\tclose ", "close"));
    CHECK(list_contains("close", "CLOSE"));
    CHECK(list_contains("a,,b", "b"));
    CHECK_FALSE(list_contains("closed", "close"));
    CHECK_FALSE(list_contains("", "close"));
    CHECK_FALSE(list_contains(",,", ""));
    CHECK_FALSE(list_contains("keep-alive", "alive"));
}

TEST_CASE("parser: parse_content_length") {
    CHECK(parse_content_length("0") == 0u);
    CHECK(parse_content_length("5") == 5u);
    CHECK(parse_content_length("005") == 5u);
    CHECK(parse_content_length("4611686018427387904") == (std::uint64_t{1} << 62));
    CHECK_FALSE(parse_content_length("4611686018427387905"));
    CHECK_FALSE(parse_content_length("18446744073709551616"));
    CHECK_FALSE(parse_content_length("99999999999999999999999999"));
    CHECK_FALSE(parse_content_length(""));
    CHECK_FALSE(parse_content_length("+5"));
    CHECK_FALSE(parse_content_length("-1"));
    CHECK_FALSE(parse_content_length(" 5"));
    CHECK_FALSE(parse_content_length("5 "));
    CHECK_FALSE(parse_content_length("0x5"));
    CHECK_FALSE(parse_content_length("5,5"));
}

namespace {

std::unique_ptr<RequestHead> request_with(const Fields& fields, int version_minor = 1) {
    auto head = std::make_unique<RequestHead>();
    head->method = "POST";
    head->target = "/";
    head->version_minor = version_minor;
    for (const auto& [name, value] : fields) {
        head->headers[head->header_count++] = Header{name, value};
    }
    return head;
}

std::unique_ptr<ResponseHead> response_with(int status, const Fields& fields,
                                            int version_minor = 1) {
    auto head = std::make_unique<ResponseHead>();
    head->status = status;
    head->version_minor = version_minor;
    for (const auto& [name, value] : fields) {
        head->headers[head->header_count++] = Header{name, value};
    }
    return head;
}

bool is(const std::optional<Framing>& framing, BodyKind kind, std::uint64_t length = 0) {
    return framing && framing->kind == kind &&
           (kind != BodyKind::Length || framing->length == length);
}

bool is(const RequestFraming& framing, BodyKind kind, std::uint64_t length = 0) {
    return framing.refusal == 0 && is(framing.framing, kind, length);
}

std::uint16_t refusal(const RequestFraming& framing) { return framing.refusal; }

}  // namespace

TEST_CASE("parser: request framing") {
    // The Fields must outlive the heads whose views point into them.
    const Fields none = {{"Host", "a"}};
    const Fields length = {{"Content-Length", "42"}};
    const Fields zero = {{"content-length", "0"}};
    const Fields same_list = {{"Content-Length", "5, 5"}};
    const Fields same_fields = {{"Content-Length", "5"}, {"Content-Length", "5"}};
    const Fields different_list = {{"Content-Length", "5, 6"}};
    const Fields different_fields = {{"Content-Length", "5"}, {"Content-Length", "6"}};
    const Fields empty_element = {{"Content-Length", "5,,5"}};
    const Fields empty_length = {{"Content-Length", ""}};
    const Fields only_commas = {{"Content-Length", " , ,"}};
    const Fields signed_length = {{"Content-Length", "+5"}};
    const Fields huge_length = {{"Content-Length", "99999999999999999999"}};
    const Fields chunked = {{"Transfer-Encoding", "chunked"}};
    const Fields chunked_upper = {{"Transfer-Encoding", "Chunked"}};
    const Fields chunked_and_length = {{"Transfer-Encoding", "chunked"}, {"Content-Length", "5"}};
    const Fields gzip_chunked = {{"Transfer-Encoding", "gzip, chunked"}};
    const Fields gzip_then_chunked = {{"Transfer-Encoding", "gzip"},
                                      {"Transfer-Encoding", "chunked"}};
    const Fields chunked_twice = {{"Transfer-Encoding", "chunked, chunked"}};
    const Fields chunked_gzip = {{"Transfer-Encoding", "chunked, gzip"}};
    const Fields empty_te = {{"Transfer-Encoding", ""}};
    const Fields chunked_with_empties = {{"Transfer-Encoding", " , chunked ,"}};
    const Fields chunked_then_empty = {{"Transfer-Encoding", "chunked"}, {"Transfer-Encoding", ""}};
    const Fields gzip_alone = {{"Transfer-Encoding", "gzip"}};
    const Fields not_a_token = {{"Transfer-Encoding", "chun\"ked"}};
    const Fields underscore_te = {{"Transfer_Encoding", "chunked"}};
    const Fields underscore_cl = {{"content_LENGTH", "5"}};
    const Fields other_underscore = {{"X_Forwarded_For", "1.2.3.4"}};

    CHECK(is(request_framing(*request_with(none)), BodyKind::None));
    CHECK_FALSE(request_framing(*request_with(none)).framing.content_length);
    CHECK(is(request_framing(*request_with(length)), BodyKind::Length, 42));
    CHECK(is(request_framing(*request_with(zero)), BodyKind::None));
    CHECK(request_framing(*request_with(zero)).framing.content_length);  // sent on as Content-Length: 0
    CHECK(is(request_framing(*request_with(same_list)), BodyKind::Length, 5));
    CHECK(is(request_framing(*request_with(same_fields)), BodyKind::Length, 5));
    CHECK(refusal(request_framing(*request_with(different_list))) == 400);
    CHECK(refusal(request_framing(*request_with(different_fields))) == 400);
    CHECK(is(request_framing(*request_with(empty_element)), BodyKind::Length, 5));  // RFC 9110 §5.6.1
    CHECK(refusal(request_framing(*request_with(empty_length))) == 400);
    CHECK(refusal(request_framing(*request_with(only_commas))) == 400);
    CHECK(refusal(request_framing(*request_with(signed_length))) == 400);
    CHECK(refusal(request_framing(*request_with(huge_length))) == 400);
    CHECK(is(request_framing(*request_with(chunked)), BodyKind::Chunked));
    CHECK(is(request_framing(*request_with(chunked_upper)), BodyKind::Chunked));
    CHECK(is(request_framing(*request_with(chunked_with_empties)), BodyKind::Chunked));
    CHECK(is(request_framing(*request_with(chunked_then_empty)), BodyKind::Chunked));
    CHECK(refusal(request_framing(*request_with(chunked_and_length))) == 400);
    // RFC 9112 §6.1: a coding the proxy does not implement is 501...
    CHECK(refusal(request_framing(*request_with(gzip_chunked))) == 501);
    CHECK(refusal(request_framing(*request_with(gzip_then_chunked))) == 501);
    // ...and a final coding other than chunked, or chunked twice, is 400 (§6.3).
    CHECK(refusal(request_framing(*request_with(chunked_twice))) == 400);
    CHECK(refusal(request_framing(*request_with(chunked_gzip))) == 400);
    CHECK(refusal(request_framing(*request_with(gzip_alone))) == 400);
    CHECK(refusal(request_framing(*request_with(not_a_token))) == 400);
    CHECK(refusal(request_framing(*request_with(empty_te))) == 400);
    CHECK(refusal(request_framing(*request_with(chunked, 0))) == 400);  // TE in HTTP/1.0
    CHECK(refusal(request_framing(*request_with(underscore_te))) == 400);
    CHECK(refusal(request_framing(*request_with(underscore_cl))) == 400);
    CHECK(is(request_framing(*request_with(other_underscore)), BodyKind::None));
}

TEST_CASE("parser: request framing from a parsed head") {
    RequestParser parser;
    auto head = std::make_unique<RequestHead>();
    const std::string input =
        "POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length:  12 \r\n\r\nhello world!";
    REQUIRE(parser.parse(input, *head) == ParseStatus::Done);
    CHECK(is(request_framing(*head), BodyKind::Length, 12));
}

TEST_CASE("parser: response framing") {
    const Fields none = {{"Server", "x"}};
    const Fields length = {{"Content-Length", "7"}};
    const Fields zero = {{"Content-Length", "0"}};
    const Fields bad_length = {{"Content-Length", "7, 8"}};
    const Fields chunked = {{"Transfer-Encoding", "chunked"}};
    const Fields gzip_chunked = {{"Transfer-Encoding", "gzip, chunked"}};
    const Fields chunked_gzip = {{"Transfer-Encoding", "chunked, gzip"}};
    const Fields chunked_twice = {{"Transfer-Encoding", "chunked"},
                                  {"Transfer-Encoding", "chunked"}};
    const Fields chunked_and_length = {{"Transfer-Encoding", "chunked"}, {"Content-Length", "7"}};
    const Fields empty_te = {{"Transfer-Encoding", " "}};

    CHECK(is(response_framing(*response_with(200, length), "HEAD"), BodyKind::None));
    CHECK(is(response_framing(*response_with(200, chunked), "HEAD"), BodyKind::None));
    CHECK(is(response_framing(*response_with(100, none), "GET"), BodyKind::None));
    CHECK(is(response_framing(*response_with(101, none), "GET"), BodyKind::None));
    CHECK(is(response_framing(*response_with(199, length), "GET"), BodyKind::None));
    CHECK(is(response_framing(*response_with(204, length), "GET"), BodyKind::None));
    CHECK(is(response_framing(*response_with(304, length), "GET"), BodyKind::None));
    CHECK(is(response_framing(*response_with(200, length), "GET"), BodyKind::Length, 7));
    CHECK(is(response_framing(*response_with(200, length), "head"), BodyKind::Length, 7));
    CHECK(is(response_framing(*response_with(200, zero), "GET"), BodyKind::None));
    CHECK_FALSE(response_framing(*response_with(200, bad_length), "GET"));
    CHECK(is(response_framing(*response_with(200, chunked), "GET"), BodyKind::Chunked));
    CHECK(is(response_framing(*response_with(200, gzip_chunked), "GET"), BodyKind::Chunked));
    // chunked anywhere but last cannot be re-framed unambiguously: 502.
    CHECK_FALSE(response_framing(*response_with(200, chunked_gzip), "GET"));
    CHECK(is(response_framing(*response_with(200, chunked, 0), "GET"), BodyKind::UntilClose));
    CHECK_FALSE(response_framing(*response_with(200, chunked_twice), "GET"));
    CHECK_FALSE(response_framing(*response_with(200, chunked_and_length), "GET"));
    CHECK_FALSE(response_framing(*response_with(200, empty_te), "GET"));
    CHECK(is(response_framing(*response_with(200, none), "GET"), BodyKind::UntilClose));
    CHECK(is(response_framing(*response_with(404, none), "POST"), BodyKind::UntilClose));
}

TEST_CASE("parser: framing fields of bodiless responses are reported for re-emission when valid") {
    const Fields length = {{"Content-Length", "7, 7"}};
    const Fields bad_length = {{"Content-Length", "7, 8"}};
    const Fields gzip_chunked = {{"Transfer-Encoding", "gzip,, chunked"}};
    const Fields gzip = {{"Transfer-Encoding", "gzip"}};

    // HEAD and 304 keep their validated Content-Length (RFC 9110 §8.6)...
    for (auto framing : {response_framing(*response_with(200, length), "HEAD"),
                         response_framing(*response_with(304, length), "GET")}) {
        REQUIRE(is(framing, BodyKind::None));
        CHECK(framing->content_length);
        CHECK(framing->length == 7);
    }
    CHECK_FALSE(response_framing(*response_with(200, bad_length), "HEAD")->content_length);
    auto coded = response_framing(*response_with(200, gzip_chunked), "HEAD");
    REQUIRE(is(coded, BodyKind::None));
    CHECK(coded->transfer_coding);
    CHECK(coded->ends_chunked);
    // ...1xx and 204 carry none.
    CHECK_FALSE(response_framing(*response_with(204, length), "GET")->content_length);
    CHECK_FALSE(response_framing(*response_with(100, length), "GET")->content_length);
    // A close-delimited body keeps its codings.
    auto close_coded = response_framing(*response_with(200, gzip), "GET");
    REQUIRE(is(close_coded, BodyKind::UntilClose));
    CHECK(close_coded->transfer_coding);
    CHECK_FALSE(close_coded->ends_chunked);
}
