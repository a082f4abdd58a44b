// HTTP/1.x head parsers, chunked body decoder and framing rules.
//
// Head parsers: one byte-driven state machine shared by requests and responses.
// Only the state, the offset validated so far and a field count are kept between
// calls; everything else is recovered from the bytes, which the caller keeps
// contiguous from the first byte of the head. Views are produced only when the
// head is complete, by one pass over bytes that have already been validated.
//
//  request:                                             response:
//   RequestStart ──CR──► LeadingLf ──LF──┐                VersionH
//     ▲  (at most 4 empty lines)         │                   │ "HTTP/1."DIGIT
//     └──────────────────────────────────┘                   ▼
//     │ tchar                                             StatusSeparator ──SP──►
//     ▼                                                   StatusDigit1..3 (100-999)
//   Method ──SP──► TargetStart ──VCHAR──► Target              │
//                                           │ SP            SP │      │ CR
//                                           ▼                  ▼      │
//                              VersionH .. VersionMinor      Reason   │
//                              ("HTTP/" DIGIT "." DIGIT)       │ CR   │
//                                           │                  ▼      ▼
//                                           ▼              StatusLineLf
//                              RequestLineCr ──CR──►           │ LF
//                              RequestLineLf                    │
//                                           │ LF (major 1,      │
//                                           │  else 505)        │
//                                           ▼                   ▼
//                 ┌──────────────────► FieldLineStart ◄─────────┘
//                 │                      │ tchar     │ CR
//                 │                      ▼           ▼
//                 │                   FieldName   FinalLf ──LF──► Done
//                 │                      │ ':'
//                 │                      ▼
//                 │                   FieldValue
//                 │                      │ CR
//                 └────────LF─────── FieldLineLf
//
// Any byte not on an arrow leads to Failed with a specific error. An LF that no
// arrow expects is "bare LF"; a CR followed by anything but LF is "bare CR".

#include "cproxy/http_parser.hpp"

#include <algorithm>
#include <cstring>

namespace cproxy::http {
namespace {

// ---- character classes -------------------------------------------------------

enum CharClass : std::uint8_t {
    token_char = 1 << 0,        // RFC 9110 tchar
    visible_char = 1 << 1,      // VCHAR, 0x21-0x7E
    field_value_char = 1 << 2,  // HTAB, SP, VCHAR, obs-text
    hex_digit_char = 1 << 3,
    qdtext_char = 1 << 4,       // quoted-string content other than a quoted-pair
};

constexpr std::array<std::uint8_t, 256> make_char_classes() noexcept {
    std::array<std::uint8_t, 256> classes{};
    for (int c = 0; c < 256; ++c) {
        std::uint8_t bits = 0;
        const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
        const bool digit = c >= '0' && c <= '9';
        const bool visible = c >= 0x21 && c <= 0x7E;
        if (alpha || digit) bits |= token_char;
        for (char special : std::string_view("!#$%&'*+-.^_`|~")) {
            if (c == static_cast<unsigned char>(special)) bits |= token_char;
        }
        if (visible) bits |= visible_char;
        if (visible || c == '\t' || c == ' ' || c >= 0x80) bits |= field_value_char;
        if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) bits |= hex_digit_char;
        if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5B) ||
            (c >= 0x5D && c <= 0x7E) || c >= 0x80) {
            bits |= qdtext_char;
        }
        classes[static_cast<std::size_t>(c)] = bits;
    }
    return classes;
}

constexpr auto char_classes = make_char_classes();

constexpr bool has_class(unsigned char c, CharClass cls) noexcept {
    return (char_classes[c] & cls) != 0;
}
constexpr bool is_blank(unsigned char c) noexcept { return c == ' ' || c == '\t'; }
constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }

constexpr unsigned hex_value(unsigned char c) noexcept {
    if (c <= '9') return c - '0';
    return (c | 0x20) - 'a' + 10;
}

// Index of the first byte in [from, to) that is not of class `cls` (or `to`):
// the fast path over the long runs (targets, names, values) that make up a head.
std::size_t skip_class(std::string_view bytes, std::size_t from, std::size_t to,
                       CharClass cls) noexcept {
    while (from < to && has_class(static_cast<unsigned char>(bytes[from]), cls)) ++from;
    return from;
}

// A view of [begin, end) of `bytes`; the caller guarantees the bounds.
std::string_view slice(std::string_view bytes, std::size_t begin, std::size_t end) noexcept {
    return std::string_view(bytes.data() + begin, end - begin);
}

std::string_view trim_blanks(std::string_view text) noexcept {
    std::size_t begin = 0;
    std::size_t end = text.size();
    while (begin < end && is_blank(static_cast<unsigned char>(text[begin]))) ++begin;
    while (end > begin && is_blank(static_cast<unsigned char>(text[end - 1]))) --end;
    return slice(text, begin, end);
}

// ---- head parser -------------------------------------------------------------

enum class HeadState : std::uint8_t {
    RequestStart,
    LeadingLf,
    Method,
    TargetStart,
    Target,
    VersionH,
    VersionT1,
    VersionT2,
    VersionP,
    VersionSlash,
    VersionMajor,
    VersionDot,
    VersionMinor,
    RequestLineCr,
    RequestLineLf,
    StatusSeparator,
    StatusDigit1,
    StatusDigit2,
    StatusDigit3,
    AfterStatus,
    Reason,
    StatusLineLf,
    FieldLineStart,
    FieldName,
    FieldValue,
    FieldLineLf,
    FinalLf,
    Done,
    Failed,
};

enum class HeadError : std::uint8_t {
    None,
    TooManyEmptyLines,
    InvalidMethod,
    MalformedRequestLine,
    InvalidTarget,
    MalformedVersion,
    UnsupportedVersion,
    RequestLineTooLong,
    HeadTooLarge,
    TooManyFields,
    BareLf,
    BareCr,
    WhitespaceBeforeFirstField,
    ObsFold,
    InvalidFieldName,
    WhitespaceBeforeColon,
    MissingColon,
    InvalidFieldValue,
    MalformedStatusLine,
    InvalidStatusCode,
};

const char* describe(HeadError error) noexcept {
    switch (error) {
    case HeadError::None: return "no error";
    case HeadError::TooManyEmptyLines: return "too many empty lines before request line";
    case HeadError::InvalidMethod: return "invalid method";
    case HeadError::MalformedRequestLine: return "malformed request line";
    case HeadError::InvalidTarget: return "invalid request target";
    case HeadError::MalformedVersion: return "malformed HTTP version";
    case HeadError::UnsupportedVersion: return "unsupported HTTP version";
    case HeadError::RequestLineTooLong: return "request line too long";
    case HeadError::HeadTooLarge: return "head too large";
    case HeadError::TooManyFields: return "too many header fields";
    case HeadError::BareLf: return "bare LF";
    case HeadError::BareCr: return "bare CR";
    case HeadError::WhitespaceBeforeFirstField: return "whitespace before first header field";
    case HeadError::ObsFold: return "obs-fold";
    case HeadError::InvalidFieldName: return "invalid header name";
    case HeadError::WhitespaceBeforeColon: return "header name has whitespace before colon";
    case HeadError::MissingColon: return "header line without colon";
    case HeadError::InvalidFieldValue: return "invalid byte in header value";
    case HeadError::MalformedStatusLine: return "malformed status line";
    case HeadError::InvalidStatusCode: return "invalid status code";
    }
    return "unknown error";
}

// RFC 9112 §2.2: a server SHOULD ignore at least one empty line received before
// the request line (some clients send an extra CRLF after a POST body). We skip
// up to four and refuse more, so that a peer cannot keep a session busy with
// empty lines; they count towards the head's length and max_head_bytes.
constexpr std::size_t max_leading_empty_lines = 4;

// The parser's saved fields, unpacked for the duration of one call.
struct HeadProgress {
    std::uint32_t scanned;
    std::uint16_t field_count;
    HeadState state;
    HeadError error;
};

// Bytes of the empty lines the request parser skipped: the request line starts
// right after them. They are CRLF pairs, at most max_leading_empty_lines of them.
std::size_t leading_empty_line_bytes(std::string_view head) noexcept {
    std::size_t pos = 0;
    while (pos + 1 < head.size() && head[pos] == '\r' && head[pos + 1] == '\n') pos += 2;
    return pos;
}

constexpr bool in_request_line(HeadState state) noexcept {
    return state >= HeadState::Method && state <= HeadState::RequestLineCr;
}

// Validates input[progress.scanned, ...) and advances `progress`. Leaves the
// state at Done (scanned = head length), Failed (error set) or anything else
// (all available bytes validated, more needed).
template <bool IsRequest>
void scan_head(std::string_view input, std::uint32_t max_head_bytes, std::uint16_t max_fields,
               HeadProgress& progress) noexcept {
    const std::size_t end = std::min<std::size_t>(input.size(), max_head_bytes);
    std::size_t pos = progress.scanned;
    HeadState state = progress.state;
    std::uint16_t field_count = progress.field_count;

    // Bytes at or past this offset in the request line make it too long.
    std::size_t request_line_limit = 0;
    if constexpr (IsRequest) {
        if (in_request_line(state)) {
            request_line_limit = leading_empty_line_bytes(input) + max_request_line;
        }
    }

    auto save = [&] {
        progress.scanned = static_cast<std::uint32_t>(pos);
        progress.state = state;
        progress.field_count = field_count;
    };
    auto fail = [&](HeadError error) {
        state = HeadState::Failed;
        progress.error = error;
        save();
    };
    // The error for a byte no arrow of the current state accepts.
    auto unexpected = [](unsigned char c, HeadError otherwise) {
        return c == '\n' ? HeadError::BareLf : otherwise;
    };

    while (pos < end) {
        const auto c = static_cast<unsigned char>(input[pos]);
        if constexpr (IsRequest) {
            // A CR may end a line of exactly max_request_line bytes; anything
            // else that far in means the line is too long, complete or not.
            if (in_request_line(state) && pos >= request_line_limit && c != '\r') {
                return fail(HeadError::RequestLineTooLong);
            }
        }
        switch (state) {
        case HeadState::RequestStart:
            if (has_class(c, token_char)) {
                state = HeadState::Method;
                request_line_limit = pos + max_request_line;
            } else if (c == '\r') {
                if (pos / 2 >= max_leading_empty_lines) return fail(HeadError::TooManyEmptyLines);
                state = HeadState::LeadingLf;
            } else {
                return fail(unexpected(c, HeadError::InvalidMethod));
            }
            break;
        case HeadState::LeadingLf:
            if (c != '\n') return fail(HeadError::BareCr);
            state = HeadState::RequestStart;
            break;
        case HeadState::Method:
            if (has_class(c, token_char)) {
                pos = skip_class(input, pos + 1, std::min(end, request_line_limit), token_char);
                continue;
            }
            if (c == ' ') {
                state = HeadState::TargetStart;
            } else if (c == '\r') {
                return fail(HeadError::MalformedRequestLine);
            } else {
                return fail(unexpected(c, HeadError::InvalidMethod));
            }
            break;
        case HeadState::TargetStart:
            if (has_class(c, visible_char)) {
                state = HeadState::Target;
            } else if (c == ' ' || c == '\r') {
                return fail(HeadError::MalformedRequestLine);
            } else {
                return fail(unexpected(c, HeadError::InvalidTarget));
            }
            break;
        case HeadState::Target:
            if (has_class(c, visible_char)) {
                pos = skip_class(input, pos + 1, std::min(end, request_line_limit), visible_char);
                continue;
            }
            if (c == ' ') {
                state = HeadState::VersionH;
            } else if (c == '\r') {
                return fail(HeadError::MalformedRequestLine);
            } else {
                return fail(unexpected(c, HeadError::InvalidTarget));
            }
            break;
        case HeadState::VersionH:
        case HeadState::VersionT1:
        case HeadState::VersionT2:
        case HeadState::VersionP:
        case HeadState::VersionSlash: {
            // "HTTP/" is case-sensitive (RFC 9112 §2.3).
            constexpr std::string_view prefix = "HTTP/";
            const auto index = static_cast<std::size_t>(state) -
                               static_cast<std::size_t>(HeadState::VersionH);
            if (c != static_cast<unsigned char>(prefix[index])) {
                return fail(unexpected(c, IsRequest ? HeadError::MalformedVersion
                                                    : HeadError::MalformedStatusLine));
            }
            state = static_cast<HeadState>(static_cast<std::uint8_t>(state) + 1);
            break;
        }
        case HeadState::VersionMajor:
            if (!is_digit(c)) {
                return fail(unexpected(c, IsRequest ? HeadError::MalformedVersion
                                                    : HeadError::MalformedStatusLine));
            }
            // A request with another major version is well-formed but answered
            // with 505, decided once the line is known to be otherwise valid.
            // A response has no such distinction: any error is a 502.
            if (!IsRequest && c != '1') return fail(HeadError::UnsupportedVersion);
            state = HeadState::VersionDot;
            break;
        case HeadState::VersionDot:
            if (c != '.') {
                return fail(unexpected(c, IsRequest ? HeadError::MalformedVersion
                                                    : HeadError::MalformedStatusLine));
            }
            state = HeadState::VersionMinor;
            break;
        case HeadState::VersionMinor:
            if (!is_digit(c)) {
                return fail(unexpected(c, IsRequest ? HeadError::MalformedVersion
                                                    : HeadError::MalformedStatusLine));
            }
            state = IsRequest ? HeadState::RequestLineCr : HeadState::StatusSeparator;
            break;
        case HeadState::RequestLineCr:
            if (c != '\r') return fail(unexpected(c, HeadError::MalformedVersion));
            state = HeadState::RequestLineLf;
            break;
        case HeadState::RequestLineLf:
            if (c != '\n') return fail(HeadError::BareCr);
            // The line ends "DIGIT.DIGIT CR LF": the major digit is 4 bytes back.
            if (input[pos - 4] != '1') return fail(HeadError::UnsupportedVersion);
            state = HeadState::FieldLineStart;
            break;
        case HeadState::StatusSeparator:
            if (c != ' ') return fail(unexpected(c, HeadError::MalformedStatusLine));
            state = HeadState::StatusDigit1;
            break;
        case HeadState::StatusDigit1:
            if (!is_digit(c) || c == '0') return fail(unexpected(c, HeadError::InvalidStatusCode));
            state = HeadState::StatusDigit2;
            break;
        case HeadState::StatusDigit2:
            if (!is_digit(c)) return fail(unexpected(c, HeadError::InvalidStatusCode));
            state = HeadState::StatusDigit3;
            break;
        case HeadState::StatusDigit3:
            if (!is_digit(c)) return fail(unexpected(c, HeadError::InvalidStatusCode));
            state = HeadState::AfterStatus;
            break;
        case HeadState::AfterStatus:
            // Some servers omit the reason, with or without its separator.
            if (c == ' ') {
                state = HeadState::Reason;
            } else if (c == '\r') {
                state = HeadState::StatusLineLf;
            } else {
                return fail(unexpected(c, HeadError::InvalidStatusCode));
            }
            break;
        case HeadState::Reason:
            if (has_class(c, field_value_char)) {
                pos = skip_class(input, pos + 1, end, field_value_char);
                continue;
            }
            if (c != '\r') return fail(unexpected(c, HeadError::MalformedStatusLine));
            state = HeadState::StatusLineLf;
            break;
        case HeadState::StatusLineLf:
            if (c != '\n') return fail(HeadError::BareCr);
            state = HeadState::FieldLineStart;
            break;
        case HeadState::FieldLineStart:
            if (has_class(c, token_char)) {
                if (++field_count > max_fields) return fail(HeadError::TooManyFields);
                state = HeadState::FieldName;
            } else if (c == '\r') {
                state = HeadState::FinalLf;
            } else if (is_blank(c)) {
                // RFC 9112 §2.2 and §5.2 let a recipient reject both forms.
                return fail(field_count == 0 ? HeadError::WhitespaceBeforeFirstField
                                             : HeadError::ObsFold);
            } else {
                return fail(unexpected(c, HeadError::InvalidFieldName));
            }
            break;
        case HeadState::FieldName:
            if (has_class(c, token_char)) {
                pos = skip_class(input, pos + 1, end, token_char);
                continue;
            }
            if (c == ':') {
                state = HeadState::FieldValue;
            } else if (is_blank(c)) {
                // RFC 9112 §5.1: MUST reject, a known smuggling vector.
                return fail(HeadError::WhitespaceBeforeColon);
            } else if (c == '\r') {
                return fail(HeadError::MissingColon);
            } else {
                return fail(unexpected(c, HeadError::InvalidFieldName));
            }
            break;
        case HeadState::FieldValue:
            if (has_class(c, field_value_char)) {
                pos = skip_class(input, pos + 1, end, field_value_char);
                continue;
            }
            if (c != '\r') return fail(unexpected(c, HeadError::InvalidFieldValue));
            state = HeadState::FieldLineLf;
            break;
        case HeadState::FieldLineLf:
            if (c != '\n') return fail(HeadError::BareCr);
            state = HeadState::FieldLineStart;
            break;
        case HeadState::FinalLf:
            if (c != '\n') return fail(HeadError::BareCr);
            ++pos;
            state = HeadState::Done;
            return save();
        case HeadState::Done:
        case HeadState::Failed:
            return save();
        }
        ++pos;
    }
    save();
    // Everything up to the limit is validated and the head has not ended.
    if (input.size() > max_head_bytes) fail(HeadError::HeadTooLarge);
}

// Fills headers from the validated field lines starting at `pos`.
void fill_fields(std::string_view head, std::size_t pos,
                        std::array<Header, header_capacity>& headers,
                        std::size_t& header_count) noexcept {
    std::size_t count = 0;
    while (head[pos] != '\r') {
        const std::size_t colon = head.find(':', pos);
        const std::size_t line_end = head.find('\r', colon);
        headers[count++] = Header{slice(head, pos, colon),
                                  trim_blanks(slice(head, colon + 1, line_end))};
        pos = line_end + 2;
    }
    header_count = count;
}

void fill_request(std::string_view head, RequestHead& out) noexcept {
    const std::size_t method_begin = leading_empty_line_bytes(head);
    const std::size_t method_end = head.find(' ', method_begin);
    const std::size_t target_end = head.find(' ', method_end + 1);
    out.method = slice(head, method_begin, method_end);
    out.target = slice(head, method_end + 1, target_end);
    // "HTTP/1.x": minor 0 is HTTP/1.0, any other minor is treated as 1.1.
    out.version_minor = head[target_end + 8] == '0' ? 0 : 1;
    const std::size_t fields_begin = target_end + 1 + 8 + 2;
    fill_fields(head, fields_begin, out.headers, out.header_count);
    out.length = head.size();
}

void fill_response(std::string_view head, ResponseHead& out) noexcept {
    // "HTTP/1.x SP DDD" occupies bytes 0-11, then SP reason or nothing.
    out.version_minor = head[7] == '0' ? 0 : 1;
    out.status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
    const std::size_t line_end = head.find('\r');
    const std::size_t reason_begin = head[12] == ' ' ? 13 : 12;
    out.reason = slice(head, reason_begin, line_end);
    fill_fields(head, line_end + 2, out.headers, out.header_count);
    out.length = head.size();
}

// Shared driver: resumes the scan, then fills `out` once the head is complete.
template <bool IsRequest, class Head>
ParseStatus parse_head(std::string_view input, Head& out, std::uint32_t max_head_bytes,
                       std::uint16_t max_fields, std::uint32_t& scanned, std::uint16_t& field_count,
                       std::uint8_t& state, std::uint8_t& error) noexcept {
    auto current = static_cast<HeadState>(state);
    if (current == HeadState::Failed) return ParseStatus::Error;
    // A shorter input than last time breaks the contract; there is nothing new.
    if (input.size() < scanned) return ParseStatus::Partial;
    if (current != HeadState::Done) {
        HeadProgress progress{scanned, field_count, current, static_cast<HeadError>(error)};
        scan_head<IsRequest>(input, max_head_bytes, max_fields, progress);
        scanned = progress.scanned;
        field_count = progress.field_count;
        state = static_cast<std::uint8_t>(progress.state);
        error = static_cast<std::uint8_t>(progress.error);
        if (progress.state == HeadState::Failed) return ParseStatus::Error;
        if (progress.state != HeadState::Done) return ParseStatus::Partial;
    }
    if constexpr (IsRequest) {
        fill_request(slice(input, 0, scanned), out);
    } else {
        fill_response(slice(input, 0, scanned), out);
    }
    return ParseStatus::Done;
}

}  // namespace

RequestParser::RequestParser(std::uint32_t max_head_bytes, std::uint16_t max_fields) noexcept
    : max_head_bytes_(max_head_bytes), max_fields_(max_fields) {
    reset();
}

void RequestParser::set_limits(std::uint32_t max_head_bytes, std::uint16_t max_fields) noexcept {
    max_head_bytes_ = max_head_bytes;
    max_fields_ = max_fields;
}

void RequestParser::reset() noexcept {
    scanned_ = 0;
    field_count_ = 0;
    state_ = static_cast<std::uint8_t>(HeadState::RequestStart);
    error_ = static_cast<std::uint8_t>(HeadError::None);
}

ParseStatus RequestParser::parse(std::string_view input, RequestHead& out) noexcept {
    return parse_head<true>(input, out, max_head_bytes_, max_fields_, scanned_, field_count_, state_, error_);
}

int RequestParser::error_status() const noexcept {
    switch (static_cast<HeadError>(error_)) {
    case HeadError::None: return 0;
    case HeadError::RequestLineTooLong: return 414;
    case HeadError::HeadTooLarge:
    case HeadError::TooManyFields: return 431;
    case HeadError::UnsupportedVersion: return 505;
    default: return 400;
    }
}

const char* RequestParser::error_reason() const noexcept {
    return describe(static_cast<HeadError>(error_));
}

ResponseParser::ResponseParser(std::uint32_t max_head_bytes, std::uint16_t max_fields) noexcept
    : max_head_bytes_(max_head_bytes), max_fields_(max_fields) {
    reset();
}

void ResponseParser::reset() noexcept {
    scanned_ = 0;
    field_count_ = 0;
    state_ = static_cast<std::uint8_t>(HeadState::VersionH);
    error_ = static_cast<std::uint8_t>(HeadError::None);
}

ParseStatus ResponseParser::parse(std::string_view input, ResponseHead& out) noexcept {
    return parse_head<false>(input, out, max_head_bytes_, max_fields_, scanned_, field_count_, state_, error_);
}

const char* ResponseParser::error_reason() const noexcept {
    return describe(static_cast<HeadError>(error_));
}

// ---- chunked body ------------------------------------------------------------
//
// RFC 9112 §7.1, relayed verbatim, so only validated and delimited:
//
//   SizeStart ─HEXDIG─► Size ─CR─► SizeLf ─LF─┬─(size > 0)─► Data ─► DataCr ─CR─► DataLf
//       ▲                │ [BWS] ';'  ▲       │                                     │ LF
//       │                ▼            │ CR    │                                     │
//       │               chunk-ext ────┘       │                                     │
//       └─────────────────────────────────────┼─────────────────────────────────────┘
//                                             └─(size 0)─► TrailerLineStart ◄──────────┐
//                                                            │ CR       │ tchar        │ LF
//                                  Done ◄─LF─ FinalLf ◄──────┘          ▼              │
//                                                                   TrailerName     TrailerLf
//                                                                       │ ':'          ▲ CR
//                                                                       ▼              │
//                                                                   TrailerValue ──────┘
//
//   chunk-ext: BwsBeforeName ─tchar─► ExtName [─[BWS] '='─► BwsBeforeValue ─► ExtTokenValue
//              or ExtQuotedValue (ExtQuotedPair, ExtAfterQuoted)], then [BWS] ';' for the
//              next extension (BwsBeforeSemicolon) or CR.

namespace {

enum class ChunkState : std::uint8_t {
    SizeStart,
    Size,
    BwsBeforeSemicolon,
    BwsBeforeName,
    ExtName,
    BwsAfterName,
    BwsBeforeValue,
    ExtTokenValue,
    ExtQuotedValue,
    ExtQuotedPair,
    ExtAfterQuoted,
    SizeLf,
    Data,
    DataCr,
    DataLf,
    TrailerLineStart,
    TrailerName,
    TrailerValue,
    TrailerLf,
    FinalLf,
    Done,
    Failed,
};

// Larger chunks than this are refused rather than risk overflow downstream.
constexpr std::uint64_t max_chunk_size = std::uint64_t{1} << 60;
// Bounds on the parts of a chunked body that are not data, so that a peer
// cannot make the proxy validate an endless size line or trailer.
constexpr std::uint32_t max_chunk_size_line = 4096;
constexpr std::uint32_t max_trailer_bytes = 8192;

constexpr bool in_size_line(ChunkState state) noexcept {
    return state >= ChunkState::SizeStart && state <= ChunkState::ExtAfterQuoted;
}
constexpr bool in_trailer(ChunkState state) noexcept {
    return state >= ChunkState::TrailerLineStart && state <= ChunkState::FinalLf;
}

}  // namespace

void ChunkedDecoder::reset() noexcept {
    remaining_ = 0;
    line_bytes_ = 0;
    trailer_bytes_ = 0;
    state_ = static_cast<std::uint8_t>(ChunkState::SizeStart);
}

ChunkedDecoder::Result ChunkedDecoder::feed(std::string_view input) noexcept {
    return run(input, nullptr);
}

ChunkedDecoder::Result ChunkedDecoder::decode(char* data, std::size_t size) noexcept {
    return run({data, size}, data);
}

// `out`, when given, is where the chunk data goes: at or before its place in
// `input` (never past it), so moving it down in place is safe.
ChunkedDecoder::Result ChunkedDecoder::run(std::string_view input, char* out) noexcept {
    auto state = static_cast<ChunkState>(state_);
    if (state == ChunkState::Done) return {0, ParseStatus::Done, 0};
    if (state == ChunkState::Failed) return {0, ParseStatus::Error, 0};

    std::size_t pos = 0;
    std::size_t produced = 0;
    // On error, `consumed` is the offset of the offending byte.
    auto fail = [&]() -> Result {
        state_ = static_cast<std::uint8_t>(ChunkState::Failed);
        return {pos, ParseStatus::Error, produced};
    };

    while (pos < input.size()) {
        if (state == ChunkState::Data) {
            // Chunk data is opaque: skip it whole instead of byte by byte.
            const std::uint64_t available = input.size() - pos;
            const std::uint64_t take = std::min(remaining_, available);
            if (out) {
                std::memmove(out + produced, input.data() + pos, static_cast<std::size_t>(take));
                produced += static_cast<std::size_t>(take);
            }
            pos += static_cast<std::size_t>(take);
            remaining_ -= take;
            if (remaining_ == 0) state = ChunkState::DataCr;
            continue;
        }
        const auto c = static_cast<unsigned char>(input[pos]);
        if (in_size_line(state) && c != '\r' && ++line_bytes_ > max_chunk_size_line) return fail();
        if (in_trailer(state) && ++trailer_bytes_ > max_trailer_bytes) return fail();

        switch (state) {
        case ChunkState::SizeStart:
            // No leading whitespace and no "0x": 1*HEXDIG exactly.
            if (!has_class(c, hex_digit_char)) return fail();
            remaining_ = hex_value(c);
            state = ChunkState::Size;
            break;
        case ChunkState::Size:
            if (has_class(c, hex_digit_char)) {
                if (remaining_ > max_chunk_size / 16) return fail();
                remaining_ = remaining_ * 16 + hex_value(c);
                if (remaining_ > max_chunk_size) return fail();
            } else if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (is_blank(c)) {
                state = ChunkState::BwsBeforeSemicolon;
            } else if (c == '\r') {
                state = ChunkState::SizeLf;
            } else {
                return fail();
            }
            break;
        case ChunkState::BwsBeforeSemicolon:
            // BWS is only allowed before ';' or '=', never before CR.
            if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (!is_blank(c)) {
                return fail();
            }
            break;
        case ChunkState::BwsBeforeName:
            if (has_class(c, token_char)) {
                state = ChunkState::ExtName;
            } else if (!is_blank(c)) {
                return fail();
            }
            break;
        case ChunkState::ExtName:
            if (has_class(c, token_char)) break;
            if (c == '=') {
                state = ChunkState::BwsBeforeValue;
            } else if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (is_blank(c)) {
                state = ChunkState::BwsAfterName;
            } else if (c == '\r') {
                state = ChunkState::SizeLf;
            } else {
                return fail();
            }
            break;
        case ChunkState::BwsAfterName:
            if (c == '=') {
                state = ChunkState::BwsBeforeValue;
            } else if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (!is_blank(c)) {
                return fail();
            }
            break;
        case ChunkState::BwsBeforeValue:
            if (has_class(c, token_char)) {
                state = ChunkState::ExtTokenValue;
            } else if (c == '"') {
                state = ChunkState::ExtQuotedValue;
            } else if (!is_blank(c)) {
                return fail();
            }
            break;
        case ChunkState::ExtTokenValue:
            if (has_class(c, token_char)) break;
            if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (is_blank(c)) {
                state = ChunkState::BwsBeforeSemicolon;
            } else if (c == '\r') {
                state = ChunkState::SizeLf;
            } else {
                return fail();
            }
            break;
        case ChunkState::ExtQuotedValue:
            if (c == '"') {
                state = ChunkState::ExtAfterQuoted;
            } else if (c == '\\') {
                state = ChunkState::ExtQuotedPair;
            } else if (!has_class(c, qdtext_char)) {
                return fail();
            }
            break;
        case ChunkState::ExtQuotedPair:
            if (!has_class(c, field_value_char)) return fail();
            state = ChunkState::ExtQuotedValue;
            break;
        case ChunkState::ExtAfterQuoted:
            if (c == ';') {
                state = ChunkState::BwsBeforeName;
            } else if (is_blank(c)) {
                state = ChunkState::BwsBeforeSemicolon;
            } else if (c == '\r') {
                state = ChunkState::SizeLf;
            } else {
                return fail();
            }
            break;
        case ChunkState::SizeLf:
            if (c != '\n') return fail();
            line_bytes_ = 0;
            state = remaining_ == 0 ? ChunkState::TrailerLineStart : ChunkState::Data;
            break;
        case ChunkState::Data:
            break;  // handled before the switch
        case ChunkState::DataCr:
            if (c != '\r') return fail();
            state = ChunkState::DataLf;
            break;
        case ChunkState::DataLf:
            if (c != '\n') return fail();
            state = ChunkState::SizeStart;
            break;
        case ChunkState::TrailerLineStart:
            // Same rules as header fields: no obs-fold, no leading whitespace.
            if (has_class(c, token_char)) {
                state = ChunkState::TrailerName;
            } else if (c == '\r') {
                state = ChunkState::FinalLf;
            } else {
                return fail();
            }
            break;
        case ChunkState::TrailerName:
            if (has_class(c, token_char)) break;
            if (c != ':') return fail();
            state = ChunkState::TrailerValue;
            break;
        case ChunkState::TrailerValue:
            if (has_class(c, field_value_char)) break;
            if (c != '\r') return fail();
            state = ChunkState::TrailerLf;
            break;
        case ChunkState::TrailerLf:
            if (c != '\n') return fail();
            state = ChunkState::TrailerLineStart;
            break;
        case ChunkState::FinalLf:
            if (c != '\n') return fail();
            state_ = static_cast<std::uint8_t>(ChunkState::Done);
            return {pos + 1, ParseStatus::Done, produced};
        case ChunkState::Done:
        case ChunkState::Failed:
            break;  // returned before the loop
        }
        ++pos;
    }
    state_ = static_cast<std::uint8_t>(state);
    return {pos, ParseStatus::Partial, produced};
}

// ---- field helpers -----------------------------------------------------------

namespace {

// Calls visit(element) for each comma-separated element of `list`, trimmed of
// SP/HTAB, including empty ones; stops and returns false as soon as visit does.
// Quoted strings are not special: none of the lists read here (Connection,
// Transfer-Encoding codings we accept, Content-Length) may contain one.
template <class Visit>
bool for_each_element(std::string_view list, Visit&& visit) noexcept {
    std::size_t begin = 0;
    while (true) {
        std::size_t comma = list.find(',', begin);
        if (comma == std::string_view::npos) comma = list.size();
        if (!visit(trim_blanks(slice(list, begin, comma)))) return false;
        if (comma == list.size()) return true;
        begin = comma + 1;
    }
}

constexpr std::uint64_t max_content_length = std::uint64_t{1} << 62;

}  // namespace

bool list_contains(std::string_view list, std::string_view token) noexcept {
    bool found = false;
    for_each_element(list, [&](std::string_view element) noexcept {
        found = !element.empty() && iequals(element, token);
        return !found;
    });
    return found;
}

std::optional<std::uint64_t> parse_content_length(std::string_view value) noexcept {
    if (value.empty()) return std::nullopt;
    std::uint64_t length = 0;
    for (char ch : value) {
        const auto c = static_cast<unsigned char>(ch);
        if (!is_digit(c)) return std::nullopt;
        const unsigned digit = c - '0';
        // Checked before multiplying: 2^62 * 10 would already wrap.
        if (length > (max_content_length - digit) / 10) return std::nullopt;
        length = length * 10 + digit;
    }
    return length;
}

namespace {

// What the framing fields of a head say, before the request/response rules.
// Empty list elements are dropped (RFC 9110 §5.6.1); equal Content-Length
// values, in one field or several, stand for one (RFC 9110 §8.6).
struct FramingFields {
    bool has_transfer_encoding = false;
    bool codings_valid = true;          // every coding a token
    std::size_t coding_count = 0;       // non-empty elements over all TE fields
    std::size_t chunked_count = 0;      // of which "chunked"
    bool last_coding_chunked = false;
    bool has_content_length = false;
    bool content_length_valid = true;   // every element a number, all equal
    std::uint64_t content_length = 0;
    bool lookalike_name = false;        // "Content_Length" or "Transfer_Encoding", any case
};

bool is_token(std::string_view text) noexcept {
    if (text.empty()) return false;
    for (char ch : text)
        if (!has_class(static_cast<unsigned char>(ch), token_char)) return false;
    return true;
}

// A name that differs from `framing_name` only in '_' for '-' (and case):
// some servers read both spellings as the same variable.
bool underscore_spelling_of(std::string_view name, std::string_view framing_name) noexcept {
    if (name.size() != framing_name.size() || name.find('_') == std::string_view::npos) return false;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i] == '_' ? '-' : name[i];
        if (!iequals({&c, 1}, framing_name.substr(i, 1))) return false;
    }
    return true;
}

FramingFields read_framing_fields(const Header* headers, std::size_t count) noexcept {
    FramingFields fields;
    std::optional<std::uint64_t> agreed;
    for (std::size_t i = 0; i < count; ++i) {
        const Header& header = headers[i];
        if (iequals(header.name, "transfer-encoding")) {
            fields.has_transfer_encoding = true;
            for_each_element(header.value, [&](std::string_view coding) noexcept {
                if (coding.empty()) return true;
                ++fields.coding_count;
                fields.codings_valid = fields.codings_valid && is_token(coding);
                fields.last_coding_chunked = iequals(coding, "chunked");
                if (fields.last_coding_chunked) ++fields.chunked_count;
                return true;
            });
        } else if (iequals(header.name, "content-length")) {
            fields.has_content_length = true;
            fields.content_length_valid =
                fields.content_length_valid &&
                for_each_element(header.value, [&](std::string_view element) noexcept {
                    if (element.empty()) return true;
                    const auto length = parse_content_length(element);
                    if (!length || (agreed && *agreed != *length)) return false;
                    agreed = length;
                    return true;
                });
        } else if (underscore_spelling_of(header.name, "content-length") ||
                   underscore_spelling_of(header.name, "transfer-encoding")) {
            fields.lookalike_name = true;
        }
    }
    if (agreed) fields.content_length = *agreed;
    else if (fields.has_content_length) fields.content_length_valid = false;  // only empty elements
    return fields;
}

std::optional<Framing> framing_from_length(const FramingFields& fields) noexcept {
    if (!fields.content_length_valid) return std::nullopt;
    Framing framing{BodyKind::Length, fields.content_length};
    framing.content_length = true;
    // A zero length is reported as no body at all: callers need no special case.
    if (fields.content_length == 0) framing.kind = BodyKind::None;
    return framing;
}

// A validated coding list, as the response writer re-emits it.
Framing coded(BodyKind kind, const FramingFields& fields) noexcept {
    Framing framing{kind, 0};
    framing.transfer_coding = true;
    framing.ends_chunked = fields.last_coding_chunked;
    framing.other_codings = fields.coding_count > fields.chunked_count;
    return framing;
}

// Validity of a response's coding list: tokens, and chunked at most once and
// only last (a proxy cannot re-frame anything else unambiguously).
bool response_codings_valid(const FramingFields& fields) noexcept {
    return fields.coding_count > 0 && fields.codings_valid &&
           (fields.chunked_count == 0 || (fields.chunked_count == 1 && fields.last_coding_chunked));
}

RequestFraming refuse(std::uint16_t status, const char* reason) noexcept {
    RequestFraming result;
    result.refusal = status;
    result.reason = reason;
    return result;
}

}  // namespace

RequestFraming request_framing(const RequestHead& head) noexcept {
    const FramingFields fields = read_framing_fields(head.headers.data(), head.header_count);
    if (fields.lookalike_name)
        return refuse(400, "a field named like Content-Length or Transfer-Encoding with '_' for '-'");
    RequestFraming result;
    if (fields.has_transfer_encoding) {
        // Both framings at once is the classic smuggling setup (RFC 9112 §6.3
        // lets a server reject it). RFC 9112 §6.1: TE in an HTTP/1.0 message
        // means faulty framing.
        if (fields.has_content_length) return refuse(400, "both Content-Length and Transfer-Encoding");
        if (head.version_minor == 0) return refuse(400, "Transfer-Encoding in an HTTP/1.0 request");
        // RFC 9112 §6.3: a request whose final coding is not chunked has no
        // reliable length: 400 and close.
        if (fields.coding_count == 0 || !fields.codings_valid || !fields.last_coding_chunked ||
            fields.chunked_count > 1)
            return refuse(400, "invalid Transfer-Encoding");
        // "gzip, chunked" is valid, but an upstream that does not know gzip may
        // frame it differently than cproxy does: a coding cproxy does not
        // implement is 501 (RFC 9112 §6.1).
        if (fields.coding_count != 1) return refuse(501, "only the transfer coding chunked is supported");
        result.framing = coded(BodyKind::Chunked, fields);
        return result;
    }
    if (fields.has_content_length) {
        auto framing = framing_from_length(fields);
        if (!framing) return refuse(400, "invalid Content-Length");
        result.framing = *framing;
    }
    return result;
}

std::optional<Framing> response_framing(const ResponseHead& head,
                                        std::string_view request_method) noexcept {
    const bool informational = head.status >= 100 && head.status < 200;
    // 1xx and 204 carry no framing fields at all (RFC 9110 §8.6, §6.4.1).
    if (informational || head.status == 204) return Framing{BodyKind::None, 0};
    const FramingFields fields = read_framing_fields(head.headers.data(), head.header_count);
    // RFC 9112 §6.3 items 1-2; the method is case-sensitive (RFC 9110 §9.1).
    // Their fields describe the body a GET would get: kept when valid.
    if (request_method == "HEAD" || head.status == 304) {
        if (fields.has_transfer_encoding) {
            if (response_codings_valid(fields)) return coded(BodyKind::None, fields);
            return Framing{BodyKind::None, 0};
        }
        auto framing = fields.has_content_length ? framing_from_length(fields) : std::nullopt;
        Framing bodiless{BodyKind::None, 0};
        if (framing) {
            bodiless.content_length = true;
            bodiless.length = fields.content_length;
        }
        return bodiless;
    }
    if (fields.has_transfer_encoding) {
        // RFC 9112 §6.3 says TE overrides CL, but a proxy that relays such a
        // response lets the next hop pick the other reading: refuse it (502).
        if (fields.has_content_length || !response_codings_valid(fields)) return std::nullopt;
        // RFC 9112 §6.1: an HTTP/1.0 message with TE has faulty framing; the
        // body of a 1.0 response can only end with the connection.
        if (head.version_minor == 0 || !fields.last_coding_chunked) return coded(BodyKind::UntilClose, fields);
        return coded(BodyKind::Chunked, fields);
    }
    if (fields.has_content_length) return framing_from_length(fields);
    return Framing{BodyKind::UntilClose, 0};
}

}  // namespace cproxy::http
