// The stats endpoint as a client sees it: a keep-alive client of the stats
// listener and strict parsers for what it serves, the Prometheus text format
// of GET /metrics and the JSON of GET /stats. A malformed line or document
// fails the test rather than being skipped.
#pragma once

#include "harness.hpp"

#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace itest {

// ------------------------------------------------------ Prometheus text format

using Labels = std::map<std::string, std::string>;

struct Sample {
    std::string name;
    Labels labels;
    double value = 0;
};

struct Exposition {
    std::map<std::string, std::string> types; // family -> counter|gauge|...
    std::map<std::string, std::string> help;  // family -> text
    std::vector<Sample> samples;
};

// Parses a text exposition (format 0.0.4) strictly: every line ends in LF;
// comment lines are "# HELP name text", "# TYPE name type" or other "# ..."
// comments; a sample line is name[{label="value",...}] value [timestamp].
// Each family has exactly one TYPE line and at most one HELP line, both
// before its first sample; a family's lines form one group; no sample
// repeats a name and label set. Returns nullopt with `error` set otherwise.
std::optional<Exposition> parse_exposition(const std::string& text, std::string& error);

// The status classes of cproxy_requests_total.
inline const std::vector<std::string> kStatusClasses{"1xx", "2xx", "3xx", "4xx", "5xx"};

// Every family of the endpoint: name, type, and the labels besides worker
// with the values each must take (one sample per combination and worker).
struct MetricFamily {
    std::string name, type, label;
    std::vector<std::string> values;
};

inline const std::vector<MetricFamily> kMetricFamilies{
    {"cproxy_connections_accepted_total", "counter", "", {}},
    {"cproxy_connections_refused_total", "counter", "", {}},
    {"cproxy_connections_open", "gauge", "", {}},
    {"cproxy_requests_total", "counter", "code", kStatusClasses},
    {"cproxy_tunnels_active", "gauge", "", {}},
    {"cproxy_tunnels_total", "counter", "", {}},
    {"cproxy_bytes_total", "counter", "direction", {"in", "out"}},
    {"cproxy_relayed_bytes_total", "counter", "method", {"splice", "copy"}},
    {"cproxy_buffers_in_use", "gauge", "", {}},
    {"cproxy_pipes_in_use", "gauge", "", {}},
    {"cproxy_upstream_idle_connections", "gauge", "", {}},
    {"cproxy_upstream_reused_total", "counter", "", {}},
    {"cproxy_upstream_waiting", "gauge", "", {}},
    {"cproxy_dns_cache_hits_total", "counter", "", {}},
    {"cproxy_dns_cache_misses_total", "counter", "", {}},
    {"cproxy_dns_lookups_active", "gauge", "", {}},
    {"cproxy_parent_requests_total", "counter", "", {}},
    {"cproxy_parents_marked_down_total", "counter", "", {}},
    {"cproxy_parents_down", "gauge", "", {}},
};

// ------------------------------------------------------------------- JSON

struct Json {
    enum class Kind { Null, Bool, Number, String, Array, Object } kind = Kind::Null;
    bool boolean = false;
    double number = 0;
    std::string text;                               // the number as written, or the string
    std::vector<Json> items;                        // Array
    std::vector<std::pair<std::string, Json>> members; // Object, in order

    const Json* get(const std::string& key) const
    {
        for (const auto& [k, v] : members)
            if (k == key)
                return &v;
        return nullptr;
    }
};

// RFC 8259 recursive descent; a duplicate key in one object is an error too.
class JsonParser {
public:
    explicit JsonParser(std::string_view s) : s_(s) {}

    std::optional<Json> document(std::string& error)
    {
        Json v;
        blanks();
        if (!value(v, 0)) {
            error = error_ + " at byte " + std::to_string(i_);
            return std::nullopt;
        }
        blanks();
        if (i_ != s_.size()) {
            error = "data after the document at byte " + std::to_string(i_);
            return std::nullopt;
        }
        return v;
    }

private:
    bool fail(const std::string& why)
    {
        if (error_.empty())
            error_ = why;
        return false;
    }
    void blanks()
    {
        while (i_ < s_.size() && (s_[i_] == ' ' || s_[i_] == '\t' || s_[i_] == '\n' || s_[i_] == '\r'))
            ++i_;
    }
    bool literal(std::string_view word)
    {
        if (s_.substr(i_, word.size()) != word)
            return fail("bad literal");
        i_ += word.size();
        return true;
    }
    bool digits()
    {
        std::size_t start = i_;
        while (i_ < s_.size() && std::isdigit(static_cast<unsigned char>(s_[i_])))
            ++i_;
        return i_ > start || fail("digit expected");
    }
    bool number(Json& v)
    {
        std::size_t start = i_;
        if (s_[i_] == '-')
            ++i_;
        if (i_ < s_.size() && s_[i_] == '0')
            ++i_;
        else if (!digits())
            return false;
        if (i_ < s_.size() && s_[i_] == '.') {
            ++i_;
            if (!digits())
                return false;
        }
        if (i_ < s_.size() && (s_[i_] == 'e' || s_[i_] == 'E')) {
            ++i_;
            if (i_ < s_.size() && (s_[i_] == '+' || s_[i_] == '-'))
                ++i_;
            if (!digits())
                return false;
        }
        v.kind = Json::Kind::Number;
        v.text = std::string(s_.substr(start, i_ - start));
        v.number = std::strtod(v.text.c_str(), nullptr);
        return true;
    }
    bool string(std::string& out)
    {
        ++i_; // the opening quote
        for (;;) {
            if (i_ >= s_.size())
                return fail("unterminated string");
            unsigned char c = static_cast<unsigned char>(s_[i_++]);
            if (c == '"')
                return true;
            if (c < 0x20)
                return fail("control character in a string");
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            if (i_ >= s_.size())
                return fail("unterminated escape");
            char x = s_[i_++];
            switch (x) {
            case '"': out += '"'; break;
            case '\\': out += '\\'; break;
            case '/': out += '/'; break;
            case 'b': out += '\b'; break;
            case 'f': out += '\f'; break;
            case 'n': out += '\n'; break;
            case 'r': out += '\r'; break;
            case 't': out += '\t'; break;
            case 'u':
                for (int k = 0; k < 4; ++k, ++i_)
                    if (i_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[i_])))
                        return fail("bad \\u escape");
                out += '?'; // the code point itself does not matter here
                break;
            default: return fail("bad escape");
            }
        }
    }
    bool value(Json& v, int depth)
    {
        if (depth > 64)
            return fail("nested too deeply");
        if (i_ >= s_.size())
            return fail("value expected");
        char c = s_[i_];
        if (c == '{') {
            v.kind = Json::Kind::Object;
            ++i_;
            blanks();
            if (i_ < s_.size() && s_[i_] == '}') {
                ++i_;
                return true;
            }
            for (;;) {
                blanks();
                if (i_ >= s_.size() || s_[i_] != '"')
                    return fail("member name expected");
                std::string key;
                if (!string(key))
                    return false;
                if (v.get(key))
                    return fail("duplicate key \"" + key + "\"");
                blanks();
                if (i_ >= s_.size() || s_[i_] != ':')
                    return fail("':' expected");
                ++i_;
                blanks();
                Json member;
                if (!value(member, depth + 1))
                    return false;
                v.members.emplace_back(std::move(key), std::move(member));
                blanks();
                if (i_ < s_.size() && s_[i_] == ',') {
                    ++i_;
                    continue;
                }
                if (i_ < s_.size() && s_[i_] == '}') {
                    ++i_;
                    return true;
                }
                return fail("',' or '}' expected");
            }
        }
        if (c == '[') {
            v.kind = Json::Kind::Array;
            ++i_;
            blanks();
            if (i_ < s_.size() && s_[i_] == ']') {
                ++i_;
                return true;
            }
            for (;;) {
                blanks();
                Json item;
                if (!value(item, depth + 1))
                    return false;
                v.items.push_back(std::move(item));
                blanks();
                if (i_ < s_.size() && s_[i_] == ',') {
                    ++i_;
                    continue;
                }
                if (i_ < s_.size() && s_[i_] == ']') {
                    ++i_;
                    return true;
                }
                return fail("',' or ']' expected");
            }
        }
        if (c == '"') {
            v.kind = Json::Kind::String;
            return string(v.text);
        }
        if (c == 't' || c == 'f') {
            v.kind = Json::Kind::Bool;
            v.boolean = c == 't';
            return literal(c == 't' ? "true" : "false");
        }
        if (c == 'n')
            return literal("null");
        if (c == '-' || std::isdigit(static_cast<unsigned char>(c)))
            return number(v);
        return fail("unexpected character");
    }

    std::string_view s_;
    std::size_t i_ = 0;
    std::string error_;
};

// A JSON number that is a non-negative integer (a count), or -1.
double count_of(const Json* v);

// --------------------------------------------------------------- clients

// A client of the stats listener over one kept-alive connection; it opens a
// new one only when the server closed the last (counted in reconnects).
class StatsClient {
public:
    explicit StatsClient(std::uint16_t port);

    // One request with `extra` header lines ("Name: value\r\n" each) and `body`.
    std::optional<HttpResponse> request(const std::string& method, const std::string& path,
                                        const std::string& extra = "", const std::string& body = "");
    // GET /metrics, REQUIREd to be 200 and a valid exposition.
    Exposition metrics();
    // GET /stats, REQUIREd to be 200 and a valid JSON document.
    Json stats();
    // Scrapes until pred holds (bounded); returns the last scrape.
    Exposition metrics_when(const std::function<bool(const Exposition&)>& pred, Ms timeout = kWait);

    int reconnects = 0;

private:
    std::uint16_t port_;
    Conn conn_;
    bool closed_ = false;
};

// The port of the proxy's "stats on" line, REQUIREd to be there.
std::uint16_t stats_port(Proxy& p);

} // namespace itest
