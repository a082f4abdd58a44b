#include "cproxy/dns_message.hpp"

#include <algorithm>
#include <cstring>

namespace cproxy::dns {

namespace {

constexpr std::size_t header_size = 12;
constexpr std::uint16_t class_in = 1;
constexpr std::uint16_t type_cname = 5;
constexpr std::uint16_t type_soa = 6;
constexpr int max_pointer_jumps = 16;

// A name as dotted lowercase text, without the final dot.
struct Name {
    char text[max_name + 1];
    std::size_t length = 0;
    std::string_view view() const noexcept { return {text, length}; }
};

char lower(char c) noexcept { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; }

std::uint16_t read16(const std::uint8_t* p) noexcept {
    return static_cast<std::uint16_t>((p[0] << 8) | p[1]);
}

std::uint32_t read32(const std::uint8_t* p) noexcept {
    return (static_cast<std::uint32_t>(p[0]) << 24) | (static_cast<std::uint32_t>(p[1]) << 16) |
           (static_cast<std::uint32_t>(p[2]) << 8) | p[3];
}

// RFC 2181 §8: a TTL with the top bit set is read as zero.
std::uint32_t ttl_of(const std::uint8_t* p) noexcept {
    std::uint32_t ttl = read32(p);
    return ttl > 0x7fffffffu ? 0 : ttl;
}

bool normalise(std::string_view name, Name& out) noexcept {
    out.length = normalise_name(name, out.text);
    return out.length != 0;
}

// Reads the name at `pos` (RFC 1035 §4.1.4) and moves `pos` past it. Each
// compression pointer must point before itself, so reading always ends.
bool read_name(const std::uint8_t* m, std::size_t size, std::size_t& pos, Name& out) noexcept {
    out.length = 0;
    std::size_t cursor = pos;
    bool jumped = false;
    int jumps = 0;
    while (true) {
        if (cursor >= size) return false;
        std::uint8_t length = m[cursor];
        if ((length & 0xc0) == 0xc0) {
            if (cursor + 1 >= size || ++jumps > max_pointer_jumps) return false;
            std::size_t target = static_cast<std::size_t>(((length & 0x3f) << 8) | m[cursor + 1]);
            if (target >= cursor) return false;
            if (!jumped) pos = cursor + 2;
            jumped = true;
            cursor = target;
            continue;
        }
        if (length & 0xc0) return false;  // the reserved label types
        if (length == 0) {
            if (!jumped) pos = cursor + 1;
            return true;
        }
        if (cursor + 1 + length > size) return false;
        std::size_t needed = out.length + (out.length ? 1 : 0) + length;
        if (needed > max_name) return false;
        if (out.length) out.text[out.length++] = '.';
        for (std::size_t i = 0; i < length; ++i)
            out.text[out.length++] = lower(static_cast<char>(m[cursor + 1 + i]));
        cursor += 1 + length;
    }
}

struct Record {
    std::uint16_t type;
    std::uint16_t klass;
    std::uint32_t ttl;
    std::size_t data;    // offset of the RDATA
    std::uint16_t data_length;
};

// Reads one resource record's fixed part after its owner name.
bool read_record(const std::uint8_t* m, std::size_t size, std::size_t& pos, Name& owner,
                 Record& record) noexcept {
    if (!read_name(m, size, pos, owner) || pos + 10 > size) return false;
    record.type = read16(m + pos);
    record.klass = read16(m + pos + 2);
    record.ttl = ttl_of(m + pos + 4);
    record.data_length = read16(m + pos + 8);
    record.data = pos + 10;
    if (record.data + record.data_length > size) return false;
    pos = record.data + record.data_length;
    return true;
}

struct Sections {
    std::size_t answers;    // offset of the answer section
    std::uint16_t answer_count;
    std::size_t authority;  // offset of the authority section
    std::uint16_t authority_count;
};

// The negative-caching TTL of RFC 2308 §5: the SOA's TTL, capped by its MINIMUM.
std::uint32_t negative_ttl(const std::uint8_t* m, std::size_t size, const Sections& sections) noexcept {
    std::size_t pos = sections.authority;
    Name owner;
    Record record{};
    for (std::uint16_t i = 0; i < sections.authority_count; ++i) {
        if (!read_record(m, size, pos, owner, record)) return 0;
        if (record.type == type_soa && record.klass == class_in && record.data_length >= 22)
            return std::min(record.ttl, ttl_of(m + record.data + record.data_length - 4));
    }
    return 0;
}

}  // namespace

std::size_t normalise_name(std::string_view name, char* out) noexcept {
    if (!name.empty() && name.back() == '.') name.remove_suffix(1);
    if (name.empty() || name.size() > max_name) return 0;
    std::size_t label = 0;
    for (std::size_t i = 0; i < name.size(); ++i) {
        char c = name[i];
        if (c == '.') {
            if (label == 0) return 0;
            label = 0;
        } else {
            bool valid = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                         c == '-' || c == '_';
            if (!valid || ++label > 63) return 0;
        }
        out[i] = lower(c);
    }
    return label != 0 ? name.size() : 0;
}

std::size_t write_query(std::uint16_t id, std::string_view name, QueryType type, std::uint8_t* out,
                        std::size_t capacity) noexcept {
    Name normal;
    if (!normalise(name, normal)) return 0;
    std::size_t length = header_size + normal.length + 2 + 4;
    if (length > capacity) return 0;
    std::memset(out, 0, header_size);
    out[0] = static_cast<std::uint8_t>(id >> 8);
    out[1] = static_cast<std::uint8_t>(id);
    out[2] = 0x01;  // RD: ask for recursion
    out[5] = 1;     // one question
    std::size_t pos = header_size;
    std::string_view rest = normal.view();
    while (!rest.empty()) {
        std::size_t dot = std::min(rest.find('.'), rest.size());
        out[pos++] = static_cast<std::uint8_t>(dot);
        std::memcpy(out + pos, rest.data(), dot);
        pos += dot;
        rest.remove_prefix(std::min(dot + 1, rest.size()));
    }
    out[pos++] = 0;
    auto qtype = static_cast<std::uint16_t>(type);
    out[pos++] = static_cast<std::uint8_t>(qtype >> 8);
    out[pos++] = static_cast<std::uint8_t>(qtype);
    out[pos++] = 0;
    out[pos++] = class_in;
    return pos;
}

Reply read_reply(const std::uint8_t* m, std::size_t size, std::uint16_t id, std::string_view name,
                 QueryType type) noexcept {
    Reply reply;
    Name asked;
    if (size < header_size || !normalise(name, asked)) return reply;
    std::uint16_t flags = read16(m + 2);
    bool is_reply = flags & 0x8000;
    unsigned opcode = (flags >> 11) & 0xf;
    if (!is_reply || opcode != 0) return reply;
    if (read16(m) != id || read16(m + 4) != 1) {
        reply.outcome = Outcome::NotOurs;
        return reply;
    }
    // The question must be the one asked: a reply to something else may be
    // an attempt to poison the cache.
    std::size_t pos = header_size;
    Name question;
    if (!read_name(m, size, pos, question) || pos + 4 > size) return reply;
    if (question.view() != asked.view() || read16(m + pos) != static_cast<std::uint16_t>(type) ||
        read16(m + pos + 2) != class_in) {
        reply.outcome = Outcome::NotOurs;
        return reply;
    }
    pos += 4;
    if (flags & 0x0200) {
        reply.outcome = Outcome::Truncated;
        return reply;
    }
    Sections sections{pos, read16(m + 6), 0, read16(m + 8)};
    // Every answer must be well formed before any of it is believed.
    Name owner;
    Record record{};
    for (std::uint16_t i = 0; i < sections.answer_count; ++i)
        if (!read_record(m, size, pos, owner, record)) return reply;
    sections.authority = pos;

    switch (flags & 0xf) {
    case 0: break;
    case 3:
        reply.outcome = Outcome::NoSuchName;
        reply.ttl = negative_ttl(m, size, sections);
        return reply;
    case 5: reply.outcome = Outcome::Refused; return reply;
    default: reply.outcome = Outcome::ServerFailure; return reply;
    }

    // Follow the chain asked → CNAME → … → addresses, in whatever order the
    // records come.
    Name current = asked;
    std::uint32_t ttl = UINT32_MAX;
    std::size_t address_bytes = type == QueryType::A ? 4 : 16;
    for (std::size_t hop = 0; hop <= max_cname_hops; ++hop) {
        bool renamed = false;
        std::uint32_t address_ttl = UINT32_MAX;
        pos = sections.answers;
        for (std::uint16_t i = 0; i < sections.answer_count; ++i) {
            read_record(m, size, pos, owner, record);
            if (record.klass != class_in || owner.view() != current.view()) continue;
            if (record.type == static_cast<std::uint16_t>(type)) {
                if (record.data_length != address_bytes) return Reply{};
                if (reply.count < max_addresses)
                    std::memcpy(reply.addresses[reply.count++].data(), m + record.data, address_bytes);
                address_ttl = std::min(address_ttl, record.ttl);
            } else if (record.type == type_cname && !renamed && reply.count == 0) {
                std::size_t target = record.data;
                Name next;
                if (!read_name(m, size, target, next) || target != record.data + record.data_length)
                    return Reply{};
                ttl = std::min(ttl, record.ttl);
                current = next;
                renamed = true;
            }
        }
        if (reply.count > 0) {
            reply.outcome = Outcome::Addresses;
            reply.ttl = std::min(ttl, address_ttl);
            return reply;
        }
        if (!renamed) break;
    }
    reply.outcome = Outcome::NoData;
    reply.ttl = negative_ttl(m, size, sections);
    return reply;
}

}  // namespace cproxy::dns
