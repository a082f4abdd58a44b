#include "stats_client.hpp"

#include <cmath>
#include <set>
#include <thread>

#include <catch2/catch.hpp>

namespace itest {

namespace {

bool metric_name_char(char c, bool first)
{
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
}

bool label_name_char(char c, bool first)
{
    return std::isalpha(static_cast<unsigned char>(c)) || c == '_' ||
           (!first && std::isdigit(static_cast<unsigned char>(c)));
}

bool valid_metric_name(std::string_view s)
{
    if (s.empty())
        return false;
    for (std::size_t i = 0; i < s.size(); ++i)
        if (!metric_name_char(s[i], i == 0))
            return false;
    return true;
}

// A sample value: a decimal float, or +Inf, -Inf, Inf, NaN.
std::optional<double> parse_value(std::string_view s)
{
    if (s == "+Inf" || s == "Inf")
        return HUGE_VAL;
    if (s == "-Inf")
        return -HUGE_VAL;
    if (s == "NaN")
        return std::nan("");
    if (s.empty())
        return std::nullopt;
    for (char c : s)
        if (!std::isdigit(static_cast<unsigned char>(c)) && c != '.' && c != 'e' && c != 'E' &&
            c != '+' && c != '-')
            return std::nullopt;
    std::string copy(s);
    char* end = nullptr;
    double v = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size())
        return std::nullopt;
    return v;
}

// The family a sample belongs to: its own name, or for histograms and
// summaries the name without _bucket/_sum/_count.
std::string family_of(const std::string& name, const std::map<std::string, std::string>& types)
{
    if (types.count(name))
        return name;
    for (const char* suffix : {"_bucket", "_sum", "_count"}) {
        std::string sfx = suffix;
        if (name.size() > sfx.size() && name.compare(name.size() - sfx.size(), sfx.size(), sfx) == 0) {
            std::string base = name.substr(0, name.size() - sfx.size());
            auto t = types.find(base);
            if (t != types.end() && (t->second == "histogram" || t->second == "summary"))
                return base;
        }
    }
    return name;
}
} // namespace

std::optional<Exposition> parse_exposition(const std::string& text, std::string& error)
{
    Exposition e;
    if (text.empty() || text.back() != '\n') {
        error = "the exposition does not end with a newline";
        return std::nullopt;
    }
    std::set<std::string> closed_families; // families whose group has ended
    std::string current;                   // family of the current group
    std::set<std::pair<std::string, Labels>> seen;
    auto enter = [&](const std::string& family) -> bool {
        if (family == current)
            return true;
        if (closed_families.count(family))
            return false;
        if (!current.empty())
            closed_families.insert(current);
        current = family;
        return true;
    };
    std::size_t pos = 0;
    int lineno = 0;
    while (pos < text.size()) {
        std::size_t eol = text.find('\n', pos);
        std::string line = text.substr(pos, eol - pos);
        pos = eol + 1;
        ++lineno;
        auto fail = [&](const std::string& why) {
            error = "line " + std::to_string(lineno) + ": " + why + ": [" + line + "]";
            return std::nullopt;
        };
        if (line.find('\r') != std::string::npos)
            return fail("carriage return");
        if (line.empty())
            continue; // empty lines are ignored by the format
        if (line[0] == '#') {
            if (line.rfind("# HELP ", 0) == 0 || line.rfind("# TYPE ", 0) == 0) {
                bool is_help = line[2] == 'H';
                std::string rest = line.substr(7);
                std::size_t sp = rest.find(' ');
                std::string name = rest.substr(0, sp);
                std::string arg = sp == std::string::npos ? "" : rest.substr(sp + 1);
                if (!valid_metric_name(name))
                    return fail("bad metric name in a comment");
                if (!enter(name))
                    return fail("family " + name + " appears in two separate groups");
                if (is_help) {
                    if (e.help.count(name))
                        return fail("second HELP for " + name);
                    if (arg.empty())
                        return fail("HELP without text");
                    e.help[name] = arg;
                } else {
                    if (e.types.count(name))
                        return fail("second TYPE for " + name);
                    static const std::set<std::string> kinds{"counter", "gauge", "histogram", "summary",
                                                             "untyped"};
                    if (!kinds.count(arg))
                        return fail("unknown type");
                    for (const auto& s : e.samples)
                        if (family_of(s.name, {{name, arg}}) == name)
                            return fail("TYPE after a sample of " + name);
                    e.types[name] = arg;
                }
            }
            continue; // any other comment
        }
        // A sample.
        Sample s;
        std::size_t i = 0;
        while (i < line.size() && metric_name_char(line[i], i == 0))
            ++i;
        s.name = line.substr(0, i);
        if (s.name.empty())
            return fail("no metric name");
        if (i < line.size() && line[i] == '{') {
            ++i;
            auto blanks = [&] {
                while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
                    ++i;
            };
            for (;;) {
                blanks();
                if (i < line.size() && line[i] == '}') {
                    ++i;
                    break;
                }
                std::size_t start = i;
                while (i < line.size() && label_name_char(line[i], i == start))
                    ++i;
                std::string label = line.substr(start, i - start);
                if (label.empty())
                    return fail("bad label name");
                blanks();
                if (i >= line.size() || line[i] != '=')
                    return fail("label without '='");
                ++i;
                blanks();
                if (i >= line.size() || line[i] != '"')
                    return fail("label value not quoted");
                ++i;
                std::string value;
                for (;;) {
                    if (i >= line.size())
                        return fail("unterminated label value");
                    char c = line[i++];
                    if (c == '"')
                        break;
                    if (c == '\\') {
                        if (i >= line.size())
                            return fail("backslash at the end");
                        char x = line[i++];
                        if (x == 'n')
                            value += '\n';
                        else if (x == '\\' || x == '"')
                            value += x;
                        else
                            return fail("bad escape in a label value");
                    } else {
                        value += c;
                    }
                }
                if (s.labels.count(label))
                    return fail("label " + label + " twice");
                s.labels[label] = value;
                blanks();
                if (i < line.size() && line[i] == ',') {
                    ++i;
                    continue;
                }
                if (i < line.size() && line[i] == '}') {
                    ++i;
                    break;
                }
                return fail("expected ',' or '}' after a label");
            }
        }
        if (i >= line.size() || (line[i] != ' ' && line[i] != '\t'))
            return fail("no blank before the value");
        while (i < line.size() && (line[i] == ' ' || line[i] == '\t'))
            ++i;
        std::size_t vend = line.find_first_of(" \t", i);
        auto value = parse_value(std::string_view(line).substr(i, vend - i));
        if (!value)
            return fail("value is not a number");
        s.value = *value;
        if (vend != std::string::npos) { // an optional timestamp, an integer
            std::size_t t = line.find_first_not_of(" \t", vend);
            if (t == std::string::npos)
                return fail("trailing blanks");
            std::string ts = line.substr(t);
            std::size_t d = ts[0] == '-' ? 1 : 0;
            if (d == ts.size() || ts.find_first_not_of("0123456789", d) != std::string::npos)
                return fail("junk after the value");
        }
        std::string family = family_of(s.name, e.types);
        if (!e.types.count(family))
            return fail("sample of " + family + " without a TYPE line before it");
        if (!enter(family))
            return fail("family " + family + " appears in two separate groups");
        if (!seen.insert({s.name, s.labels}).second)
            return fail("the same sample twice");
        e.samples.push_back(std::move(s));
    }
    return e;
}

double count_of(const Json* v)
{
    if (!v || v->kind != Json::Kind::Number || v->number < 0 || v->number != std::floor(v->number))
        return -1;
    return v->number;
}

StatsClient::StatsClient(std::uint16_t port) : port_(port), conn_(connect_to(port)) {}

std::optional<HttpResponse> StatsClient::request(const std::string& method, const std::string& path,
                                                 const std::string& extra, const std::string& body)
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

Exposition StatsClient::metrics()
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

Json StatsClient::stats()
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

Exposition StatsClient::metrics_when(const std::function<bool(const Exposition&)>& pred, Ms timeout)
{
    auto deadline = Clock::now() + timeout;
    for (;;) {
        Exposition e = metrics();
        if (pred(e) || Clock::now() >= deadline)
            return e;
        std::this_thread::sleep_for(Ms(20));
    }
}

std::uint16_t stats_port(Proxy& p)
{
    auto line = p.stats_line();
    INFO("proxy stdout:\n" << p.out() << "\nproxy stderr:\n" << p.err());
    REQUIRE(line);
    return line->port;
}

} // namespace itest
