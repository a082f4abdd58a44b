// Clients and strict parsers for the stats endpoint (--stats-listen):
// the Prometheus text exposition of /metrics and the JSON of /stats. A
// malformed line or document is an error, never skipped.
#pragma once

#include "harness.hpp"

#include <cctype>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>

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

// The value of the one sample `name` with worker="0" and `extra` labels
// (others may exist only if extra does not pin them).
double value_of(const Exposition& e, const std::string& name, const Labels& extra = {});

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
    explicit StatsClient(std::uint16_t port) : port_(port), conn_(connect_to(port)) {}

    // One request with `extra` header lines ("Name: value\r\n" each) and `body`.
    std::optional<HttpResponse> request(const std::string& method, const std::string& path,
                                        const std::string& extra = "", const std::string& body = "")
    {
        if (closed_) {
            conn_ = connect_to(port_);
            closed_ = false;
            ++reconnects;
        }
        std::string req = method + " " + path + " HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port_) +
                          "\r\n" + extra + "\r\n" + body;
        auto r = conn_.roundtrip(req, kWait, method == "HEAD");
        if (!r || conn_.eof() ||
            (r->header("Connection") && icontains(*r->header("Connection"), "close")))
            closed_ = true;
        return r;
    }

    Exposition metrics()
    {
        auto r = request("GET", "/metrics");
        REQUIRE(r);
        INFO("response head:\n" << r->raw_head << "body:\n" << r->body);
        REQUIRE(r->status == 200);
        std::string error;
        auto e = parse_exposition(r->body, error);
        INFO("parse error: " << error);
        REQUIRE(e);
        return *e;
    }

    Json stats()
    {
        auto r = request("GET", "/stats");
        REQUIRE(r);
        INFO("response head:\n" << r->raw_head << "body:\n" << r->body);
        REQUIRE(r->status == 200);
        std::string error;
        auto j = JsonParser(r->body).document(error);
        INFO("JSON error: " << error);
        REQUIRE(j);
        return *j;
    }

    // Scrapes until pred holds (bounded); returns the last scrape.
    Exposition metrics_when(const std::function<bool(const Exposition&)>& pred, Ms timeout = kWait)
    {
        auto deadline = Clock::now() + timeout;
        for (;;) {
            Exposition e = metrics();
            if (pred(e) || Clock::now() >= deadline)
                return e;
            std::this_thread::sleep_for(Ms(20));
        }
    }

    int reconnects = 0;

private:
    std::uint16_t port_;
    Conn conn_;
    bool closed_ = false;
};

// The port of the proxy's "stats on ADDR:PORT" line (REQUIREd).
std::uint16_t stats_port(Proxy& p);

} // namespace itest
