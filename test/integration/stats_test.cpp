// The stats endpoint (--stats-listen, stats_listen): off by default; GET
// /metrics in the Prometheus text format and GET /stats as JSON, both answered
// by cproxy itself; counters and gauges that follow proxied traffic but not
// the stats traffic; 404/405/HEAD/keep-alive on the stats listener; the
// allow/deny rules; the directive and start-up errors.
//
// The exposition and the JSON are checked by the strict parsers of
// stats_client.hpp, so a malformed line or document fails the test rather
// than being skipped.
#include "stats_client.hpp"

#include <cctype>
#include <cmath>
#include <cstdlib>
#include <map>
#include <set>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <catch2/catch.hpp>

using namespace itest;

namespace {

// The value of the one sample `name` with worker="0" and `extra` labels
// (others may exist only if extra does not pin them).
double value_of(const Exposition& e, const std::string& name, const Labels& extra = {})
{
    const Sample* found = nullptr;
    int matches = 0;
    for (const auto& s : e.samples) {
        if (s.name != name)
            continue;
        auto w = s.labels.find("worker");
        if (w == s.labels.end() || w->second != "0")
            continue;
        bool all = true;
        for (const auto& [k, v] : extra) {
            auto l = s.labels.find(k);
            all = all && l != s.labels.end() && l->second == v;
        }
        if (all) {
            found = &s;
            ++matches;
        }
    }
    INFO("sample " << name << " with " << extra.size() << " extra label(s)");
    REQUIRE(matches == 1);
    return found->value;
}

double requests(const Exposition& e, const std::string& code)
{
    return value_of(e, "cproxy_requests_total", {{"code", code}});
}

double bytes(const Exposition& e, const std::string& direction)
{
    return value_of(e, "cproxy_bytes_total", {{"direction", direction}});
}

double relayed(const Exposition& e, const std::string& method)
{
    return value_of(e, "cproxy_relayed_bytes_total", {{"method", method}});
}

const std::vector<std::string>& kCodes = kStatusClasses;

double all_requests(const Exposition& e)
{
    double n = 0;
    for (const auto& c : kCodes)
        n += requests(e, c);
    return n;
}

// Every family of the endpoint (see stats_client.hpp).
const std::vector<MetricFamily>& kFamilies = kMetricFamilies;

// A connection to `port` whose received and sent bytes are counted.
struct CountedConn {
    std::shared_ptr<std::size_t> received = std::make_shared<std::size_t>(0);
    std::size_t sent = 0;
    Conn conn;

    explicit CountedConn(std::uint16_t port) : conn(tapped(port, received)) {}

    static Conn tapped(std::uint16_t port, std::shared_ptr<std::size_t> counter)
    {
        Conn plain = connect_to(port);
        Fd fd(::dup(plain.fd()));
        plain.close();
        return Conn(std::move(fd), [counter](std::string_view d) { *counter += d.size(); });
    }

    bool send(const std::string& data)
    {
        sent += data.size();
        return conn.send_all(data);
    }
    std::optional<HttpResponse> roundtrip(const std::string& req, bool no_body = false)
    {
        if (!send(req))
            return std::nullopt;
        return conn.read_response(kWait, no_body);
    }
};

// A connection to 127.0.0.1:`port` from the source address `source`.
Conn connect_from(const std::string& source, std::uint16_t port)
{
    Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    REQUIRE(fd.valid());
    timeval tv{5, 0}; // bounds the blocking connect below
    ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in from{};
    from.sin_family = AF_INET;
    REQUIRE(::inet_pton(AF_INET, source.c_str(), &from.sin_addr) == 1);
    REQUIRE(::bind(fd.get(), reinterpret_cast<sockaddr*>(&from), sizeof from) == 0);
    sockaddr_in to{};
    to.sin_family = AF_INET;
    to.sin_port = htons(port);
    to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd.get(), reinterpret_cast<sockaddr*>(&to), sizeof to) == 0);
    return Conn(std::move(fd));
}

// The status of a response, 0 for none.
int status(const std::optional<HttpResponse>& r) { return r ? r->status : 0; }

std::vector<std::string> stats_args(std::vector<std::string> extra = {})
{
    std::vector<std::string> a{"--stats-listen", "127.0.0.1:0"};
    a.insert(a.end(), extra.begin(), extra.end());
    return proxy_args(a);
}

RunResult run_proxy(std::vector<std::string> args)
{
    args.insert(args.begin(), proxy_binary());
    if (args[0].find('/') == std::string::npos)
        args[0] = "./" + args[0];
    return run_command(args, kWait);
}

std::string get(const Origin& o, const std::string& path, const std::string& extra = "")
{
    return "GET " + o.url(path) + " HTTP/1.1\r\nHost: " + o.authority() + "\r\n" + extra + "\r\n";
}

// Origin: 404 for targets starting with /missing, 200 otherwise (keep-alive).
Origin::Handler ok_or_missing_origin()
{
    return http_origin([](const HttpRequest& r) {
        bool missing = r.target.rfind("/missing", 0) == 0;
        return Reply{http_response(missing ? 404 : 200, missing ? "no such thing" : "here it is: " + r.target)};
    });
}

// The media type of a Content-Type value, lower-cased, parameters dropped.
std::string media_type(const std::string& content_type)
{
    std::string m = content_type.substr(0, content_type.find(';'));
    while (!m.empty() && m.back() == ' ')
        m.pop_back();
    for (char& c : m)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return m;
}

} // namespace

TEST_CASE("integration: stats: the test's Prometheus and JSON parsers reject malformed input",
          "[integration][stats]")
{
    // No proxy here: this shows the checks below can fail.
    const std::string good = "# HELP a_total Things.\n# TYPE a_total counter\n"
                             "a_total{worker=\"0\",code=\"2xx\"} 3\na_total{worker=\"0\",code=\"4xx\"} 1e3\n"
                             "# TYPE b gauge\nb{worker=\"0\"} 0.5\n";
    std::string error;
    auto e = parse_exposition(good, error);
    INFO(error);
    REQUIRE(e);
    CHECK(e->samples.size() == 3);
    CHECK(e->types["b"] == "gauge");
    CHECK(value_of(*e, "a_total", {{"code", "4xx"}}) == 1000);
    const std::vector<std::string> bad{
        "",                                                               // empty
        "# TYPE a counter\na{worker=\"0\"} 1",                           // no final newline
        "a{worker=\"0\"} 1\n",                                           // no TYPE
        "a{worker=\"0\"} 1\n# TYPE a counter\n",                         // TYPE after the sample
        "# TYPE a counter\n# TYPE a counter\na{worker=\"0\"} 1\n",       // two TYPEs
        "# TYPE a counter\n# HELP a x\n# HELP a y\na 1\n",              // two HELPs
        "# TYPE a counter\na{worker=\"0\"} one\n",                       // not a number
        "# TYPE a counter\na{worker=\"0\"}1\n",                          // no blank
        "# TYPE a counter\na{worker=0} 1\n",                              // unquoted
        "# TYPE a counter\na{worker=\"0\" 1\n",                          // unclosed
        "# TYPE a counter\na{9w=\"0\"} 1\n",                             // bad label name
        "# TYPE 1a counter\n1a 1\n",                                     // bad metric name
        "# TYPE a counter\na{worker=\"0\"} 1 x\n",                       // junk
        "# TYPE a counter\na{worker=\"0\"} 1\r\n",                       // CRLF
        "# TYPE a counter\na{worker=\"0\"} 1\na{worker=\"0\"} 2\n",      // repeated sample
        "# TYPE a counter\na 1\n# TYPE b gauge\nb 1\na{x=\"1\"} 1\n",    // split group
        "# TYPE a widget\na 1\n",                                         // unknown type
    };
    for (const auto& text : bad) {
        INFO("accepted: [" << text << "]");
        std::string why;
        CHECK_FALSE(parse_exposition(text, why));
    }

    std::string jerror;
    auto j = JsonParser(" {\"a\": [1, -2.5e3, true, null, \"x\\\"y\\u00e9\"], \"b\": {}} ").document(jerror);
    INFO(jerror);
    REQUIRE(j);
    CHECK(count_of(j->get("a")) == -1);
    CHECK(j->get("a")->items.size() == 5);
    for (const char* text : {"", "{", "{\"a\":1,}", "{\"a\":1,\"a\":2}", "[1,2", "{'a':1}", "{\"a\":01}",
                             "{\"a\":1} x", "{\"a\":.5}", "{\"a\":tru}", "{\"a\":\"\n\"}", "{a:1}",
                             "[1,]", "{\"a\" 1}", "NaN"}) {
        INFO("accepted: [" << text << "]");
        std::string why;
        CHECK_FALSE(JsonParser(text).document(why));
    }
}

TEST_CASE("integration: stats: off by default; --stats-listen prints the stats line on stderr",
          "[integration][stats]")
{
    Origin o(static_origin("ok"));
    {
        // With the option the line comes (so the search below can find one).
        Proxy p(stats_args());
        auto line = p.stats_line();
        INFO("proxy stdout:\n" << p.out() << "\nproxy stderr:\n" << p.err());
        REQUIRE(line);
        CHECK(line->on_stderr);
        CHECK(line->line == "cproxy: stats on 127.0.0.1:" + std::to_string(line->port));
        CHECK(line->host == "127.0.0.1");
        CHECK(line->port != p.port());
        // It is a listener, and not the proxy: /metrics answers 200.
        StatsClient s(line->port);
        auto r = s.request("GET", "/metrics");
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    {
        Proxy p(proxy_args());
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/"));
        REQUIRE(r);
        CHECK(r->status == 200);
        // Well after start-up (a request was served), no stats line at all.
        CHECK_FALSE(p.stats_line(Ms(500)));
        CHECK(p.out().find("stats") == std::string::npos);
        CHECK(p.err().find("stats on") == std::string::npos);
    }
}

TEST_CASE("integration: stats: /metrics is Prometheus text with every family, each sample worker=\"0\"",
          "[integration][stats]")
{
    Proxy p(stats_args());
    StatsClient s(stats_port(p));
    auto r = s.request("GET", "/metrics");
    REQUIRE(r);
    INFO("response head:\n" << r->raw_head << "body:\n" << r->body);
    REQUIRE(r->status == 200);
    auto ct = r->header("Content-Type");
    REQUIRE(ct);
    CHECK(iequals(*ct, "text/plain; version=0.0.4; charset=utf-8"));
    std::string error;
    auto e = parse_exposition(r->body, error);
    INFO("parse error: " << error);
    REQUIRE(e);

    for (const auto& sample : e->samples) {
        INFO("sample " << sample.name);
        auto w = sample.labels.find("worker");
        REQUIRE(w != sample.labels.end());
        CHECK(w->second == "0");
        CHECK(std::isfinite(sample.value));
        CHECK(sample.value >= 0);
        CHECK(sample.value == std::floor(sample.value)); // every quantity here is a count
    }
    for (const auto& f : kFamilies) {
        INFO("family " << f.name);
        CHECK(e->types[f.name] == f.type);
        CHECK(e->help.count(f.name) == 1);
        std::set<std::string> values;
        std::size_t samples = 0;
        for (const auto& sample : e->samples) {
            if (sample.name != f.name)
                continue;
            ++samples;
            std::set<std::string> expected_labels{"worker"};
            if (!f.label.empty())
                expected_labels.insert(f.label);
            std::set<std::string> labels;
            for (const auto& [k, v] : sample.labels)
                labels.insert(k);
            CHECK(labels == expected_labels);
            if (!f.label.empty() && sample.labels.count(f.label))
                values.insert(sample.labels.at(f.label));
        }
        if (f.label.empty()) {
            CHECK(samples == 1);
        } else {
            CHECK(samples == f.values.size());
            CHECK(values == std::set<std::string>(f.values.begin(), f.values.end()));
        }
    }
    // A fresh proxy: nothing proxied yet, only this stats connection open.
    for (const auto& c : kCodes)
        CHECK(requests(*e, c) == 0);
    CHECK(value_of(*e, "cproxy_connections_open") == 1);
    CHECK(value_of(*e, "cproxy_tunnels_active") == 0);
    CHECK(value_of(*e, "cproxy_tunnels_total") == 0);
    CHECK(bytes(*e, "in") == 0);
    CHECK(bytes(*e, "out") == 0);
}

TEST_CASE("integration: stats: request, byte, connection and reuse counters follow proxied traffic",
          "[integration][stats]")
{
    Origin o(ok_or_missing_origin());
    Proxy p(stats_args());
    StatsClient s(stats_port(p));
    Exposition before = s.metrics();
    std::size_t sent = 0, received = 0;
    {
        // 5 requests answered 200 over one client keep-alive connection.
        CountedConn a(p.port());
        for (int i = 0; i < 5; ++i) {
            auto r = a.roundtrip(get(o, "/ok" + std::to_string(i)));
            REQUIRE(r);
            REQUIRE(r->status == 200);
        }
        // Several requests on one client connection went over one upstream
        // connection: the gauge of parked ones is checked below.
        a.conn.shutdown_write();
        CHECK(a.conn.wait_closed(Ms(3000)));
        sent += a.sent;
        received += *a.received;
    }
    {
        // 2 requests the origin answers 404.
        CountedConn b(p.port());
        for (int i = 0; i < 2; ++i) {
            auto r = b.roundtrip(get(o, "/missing" + std::to_string(i)));
            REQUIRE(r);
            REQUIRE(r->status == 404);
        }
        b.conn.shutdown_write();
        CHECK(b.conn.wait_closed(Ms(3000)));
        sent += b.sent;
        received += *b.received;
    }
    {
        // A malformed head: cproxy answers 400 and closes.
        CountedConn c(p.port());
        auto r = c.roundtrip("GET " + o.url("/bad") + " HTTP/1.1\r\nHost : x\r\n\r\n");
        REQUIRE(r);
        REQUIRE(r->status == 400);
        CHECK(c.conn.wait_closed(Ms(3000)));
        sent += c.sent;
        received += *c.received;
    }
    {
        // A server that refuses the connection: cproxy answers 502.
        CountedConn d(p.port());
        std::string closed = "127.0.0.1:" + std::to_string(unused_port());
        auto r = d.roundtrip("GET http://" + closed + "/ HTTP/1.1\r\nHost: " + closed +
                             "\r\nConnection: close\r\n\r\n");
        REQUIRE(r);
        REQUIRE(r->status == 502);
        CHECK(d.conn.wait_closed(Ms(3000)));
        sent += d.sent;
        received += *d.received;
    }
    // Every client is gone: only the stats connection stays open.
    Exposition after = s.metrics_when([&](const Exposition& e) {
        return all_requests(e) - all_requests(before) >= 9 && value_of(e, "cproxy_connections_open") == 1;
    });
    INFO("bytes sent " << sent << ", received " << received << "; stats reconnects " << s.reconnects);
    CHECK(requests(after, "1xx") - requests(before, "1xx") == 0);
    CHECK(requests(after, "2xx") - requests(before, "2xx") == 5);
    CHECK(requests(after, "3xx") - requests(before, "3xx") == 0);
    CHECK(requests(after, "4xx") - requests(before, "4xx") == 3);
    CHECK(requests(after, "5xx") - requests(before, "5xx") == 1);
    CHECK(value_of(after, "cproxy_connections_open") == 1);
    // Bytes from and to the clients: exactly what the four clients sent and
    // received (the stats traffic in between is not counted).
    CHECK(bytes(after, "in") - bytes(before, "in") >= static_cast<double>(sent));
    CHECK(bytes(after, "in") - bytes(before, "in") <= static_cast<double>(sent));
    CHECK(bytes(after, "out") - bytes(before, "out") >= static_cast<double>(received));
    CHECK(bytes(after, "out") - bytes(before, "out") <= static_cast<double>(received));
    double accepted = value_of(after, "cproxy_connections_accepted_total") -
                      value_of(before, "cproxy_connections_accepted_total");
    CHECK(accepted >= 4);
    CHECK(accepted <= 4 + s.reconnects);
    CHECK(value_of(after, "cproxy_connections_refused_total") ==
          value_of(before, "cproxy_connections_refused_total"));
    // The 5 requests of the first client (and then the others) went over one
    // kept-alive upstream connection: at least 4 were sent on a reused one.
    CHECK(value_of(after, "cproxy_upstream_reused_total") -
              value_of(before, "cproxy_upstream_reused_total") >= 4);
    CHECK(o.connections() == 1);
    // That connection is parked now (for two seconds).
    CHECK(value_of(after, "cproxy_upstream_idle_connections") == 1);
    CHECK(value_of(after, "cproxy_tunnels_active") == 0);
    CHECK(value_of(after, "cproxy_tunnels_total") == value_of(before, "cproxy_tunnels_total"));
    CHECK(value_of(after, "cproxy_pipes_in_use") == 0);
}

TEST_CASE("integration: stats: a CONNECT tunnel is active while open, then counted once as 2xx",
          "[integration][stats]")
{
    Origin echo(echo_origin());
    const std::string payload = random_bytes(128 * 1024, 31);
    for (const char* splice : {"on", "off"}) {
        INFO("--splice " << splice);
        Proxy p(stats_args({"--connect-ports", "any", "--splice", splice}));
        StatsClient s(stats_port(p));
        Exposition before = s.metrics();
        CountedConn t(p.port());
        REQUIRE(t.send("CONNECT " + echo.authority() + " HTTP/1.1\r\nHost: " + echo.authority() + "\r\n\r\n"));
        auto head = t.conn.read_until("\r\n\r\n");
        REQUIRE(head);
        REQUIRE(head->rfind("HTTP/1.1 200", 0) == 0);
        REQUIRE(t.send(payload));
        auto back = t.conn.read_exact(payload.size());
        REQUIRE(back);
        REQUIRE(fnv1a(*back) == fnv1a(payload));

        Exposition open = s.metrics_when(
            [](const Exposition& e) { return value_of(e, "cproxy_tunnels_active") == 1; });
        CHECK(value_of(open, "cproxy_tunnels_active") == 1);
        CHECK(value_of(open, "cproxy_connections_open") == 2);
        // Not ended yet: not in requests_total.
        CHECK(all_requests(open) == all_requests(before));

        t.conn.shutdown_write();
        CHECK(t.conn.wait_closed(Ms(3000)));
        Exposition after = s.metrics_when([&](const Exposition& e) {
            return value_of(e, "cproxy_tunnels_active") == 0 && value_of(e, "cproxy_connections_open") == 1 &&
                   all_requests(e) > all_requests(before);
        });
        CHECK(value_of(after, "cproxy_tunnels_active") == 0);
        CHECK(value_of(after, "cproxy_connections_open") == 1);
        CHECK(value_of(after, "cproxy_tunnels_total") - value_of(before, "cproxy_tunnels_total") == 1);
        CHECK(requests(after, "2xx") - requests(before, "2xx") == 1);
        CHECK(all_requests(after) - all_requests(before) == 1);
        INFO("tunnel client sent " << t.sent << ", received " << *t.received);
        CHECK(bytes(after, "in") - bytes(before, "in") == static_cast<double>(t.sent));
        CHECK(bytes(after, "out") - bytes(before, "out") == static_cast<double>(*t.received));
        // The payload crossed the tunnel once each way.
        double by_splice = relayed(after, "splice") - relayed(before, "splice");
        double by_copy = relayed(after, "copy") - relayed(before, "copy");
        INFO("relayed by splice " << by_splice << ", by copy " << by_copy);
        CHECK(by_splice + by_copy >= 2.0 * static_cast<double>(payload.size()));
        if (std::string(splice) == "off")
            CHECK(by_splice == 0);
        CHECK(value_of(after, "cproxy_pipes_in_use") == 0);
    }
}

TEST_CASE("integration: stats: /stats is JSON with the seed keys, consistent with /metrics, moving with traffic",
          "[integration][stats]")
{
    Origin o(ok_or_missing_origin());
    Proxy p(stats_args());
    StatsClient s(stats_port(p));

    // Some traffic on one keep-alive client connection: 3 OK, 1 404; returns
    // bytes sent + received.
    auto traffic = [&](int ok, int missing) {
        CountedConn c(p.port());
        for (int i = 0; i < ok; ++i) {
            auto r = c.roundtrip(get(o, "/ok"));
            REQUIRE(r);
            REQUIRE(r->status == 200);
        }
        for (int i = 0; i < missing; ++i) {
            auto r = c.roundtrip(get(o, "/missing"));
            REQUIRE(r);
            REQUIRE(r->status == 404);
        }
        c.conn.shutdown_write();
        CHECK(c.conn.wait_closed(Ms(3000)));
        return static_cast<double>(c.sent + *c.received);
    };
    // Checks /stats against a /metrics scrape of a quiet proxy; returns the
    // /stats document.
    auto consistent = [&](double expected_requests) {
        Exposition m = s.metrics_when([&](const Exposition& e) {
            return all_requests(e) >= expected_requests && value_of(e, "cproxy_connections_open") == 1;
        });
        REQUIRE(all_requests(m) == expected_requests);
        auto r = s.request("GET", "/stats");
        REQUIRE(r);
        INFO("response head:\n" << r->raw_head << "body:\n" << r->body);
        REQUIRE(r->status == 200);
        auto ct = r->header("Content-Type");
        REQUIRE(ct);
        CHECK(media_type(*ct) == "application/json");
        std::string error;
        auto j = JsonParser(r->body).document(error);
        INFO("JSON error: " << error);
        REQUIRE(j);
        REQUIRE(j->kind == Json::Kind::Object);
        double bandwidth = count_of(j->get("bandwidth_usage"));
        double total = count_of(j->get("total_requests"));
        double ok = count_of(j->get("successful_visits"));
        double failed = count_of(j->get("failed_visits"));
        CHECK(bandwidth >= 0);
        CHECK(total >= 0);
        CHECK(ok >= 0);
        CHECK(failed >= 0);
        CHECK(total == ok + failed);
        CHECK(total == all_requests(m));
        CHECK(ok == requests(m, "1xx") + requests(m, "2xx") + requests(m, "3xx"));
        CHECK(failed == requests(m, "4xx") + requests(m, "5xx"));
        CHECK(bandwidth == bytes(m, "in") + bytes(m, "out"));

        const Json* workers = j->get("workers");
        REQUIRE(workers);
        REQUIRE(workers->kind == Json::Kind::Array);
        REQUIRE(workers->items.size() == 1);
        const Json& w = workers->items[0];
        REQUIRE(w.kind == Json::Kind::Object);
        CHECK(count_of(w.get("worker")) == 0);
        // The unlabelled families, named without cproxy_ (with or without
        // _total), with the values /metrics gave.
        for (const auto& f : kFamilies) {
            std::string key = f.name.substr(std::string("cproxy_").size());
            std::string stem = key;
            if (stem.size() > 6 && stem.compare(stem.size() - 6, 6, "_total") == 0)
                stem.resize(stem.size() - 6);
            INFO("worker key " << key << " / " << stem);
            if (!f.label.empty()) {
                bool present = false;
                for (const auto& [k, v] : w.members)
                    present = present || k.rfind(stem, 0) == 0;
                CHECK(present);
                continue;
            }
            const Json* v = w.get(key) ? w.get(key) : w.get(stem);
            REQUIRE(v);
            CHECK(count_of(v) >= 0);
            // Parked upstream connections expire on their own; the rest
            // cannot change while the proxy is quiet.
            if (f.name != "cproxy_upstream_idle_connections")
                CHECK(count_of(v) == value_of(m, f.name));
        }
        return *j;
    };

    Json start = consistent(0);
    double moved = traffic(3, 1);
    Json mid = consistent(4);
    CHECK(count_of(mid.get("total_requests")) - count_of(start.get("total_requests")) == 4);
    CHECK(count_of(mid.get("successful_visits")) - count_of(start.get("successful_visits")) == 3);
    CHECK(count_of(mid.get("failed_visits")) - count_of(start.get("failed_visits")) == 1);
    CHECK(count_of(mid.get("bandwidth_usage")) - count_of(start.get("bandwidth_usage")) >= moved);
    moved = traffic(2, 2);
    Json end = consistent(8);
    CHECK(count_of(end.get("total_requests")) - count_of(mid.get("total_requests")) == 4);
    CHECK(count_of(end.get("successful_visits")) - count_of(mid.get("successful_visits")) == 2);
    CHECK(count_of(end.get("failed_visits")) - count_of(mid.get("failed_visits")) == 2);
    CHECK(count_of(end.get("bandwidth_usage")) - count_of(mid.get("bandwidth_usage")) >= moved);
}

TEST_CASE("integration: stats: 404 elsewhere, 405 with Allow for other methods, HEAD without a body, keep-alive",
          "[integration][stats]")
{
    Proxy p(stats_args());
    std::uint16_t port = stats_port(p);
    StatsClient s(port);

    for (const char* path : {"/", "/metric", "/metrics/x", "/statsx", "/favicon.ico"}) {
        INFO("GET " << path);
        auto r = s.request("GET", path);
        REQUIRE(r);
        CHECK(r->status == 404);
    }
    for (const char* method : {"POST", "PUT", "DELETE"}) {
        for (const char* path : {"/metrics", "/stats"}) {
            INFO(method << " " << path);
            auto r = s.request(method, path, "Content-Length: 3\r\n", "x=1");
            REQUIRE(r);
            CHECK(r->status == 405);
            auto allow = r->header("Allow");
            REQUIRE(allow);
            CHECK(*allow == "GET, HEAD");
        }
    }

    // HEAD: the GET's head with its Content-Length, and no body: the next
    // response on the same connection starts right after the head.
    Conn c = connect_to(port);
    for (const char* path : {"/metrics", "/stats"}) {
        INFO("HEAD then GET " << path);
        std::string req = std::string(" ") + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
        auto head = c.roundtrip("HEAD" + req, kWait, true);
        REQUIRE(head);
        CHECK(head->status == 200);
        auto length = head->header("Content-Length");
        REQUIRE(length);
        CHECK(std::atol(length->c_str()) > 0);
        c.fill(Ms(200)); // a body, if one were sent, would arrive now
        CHECK(c.buffer().empty());
        auto full = c.roundtrip("GET" + req);
        REQUIRE(full);
        CHECK(full->status == 200);
        CHECK(head->header("Content-Type") == full->header("Content-Type"));
        CHECK(std::to_string(full->body.size()) == *length);
    }

    // Keep-alive: several requests on one connection, then two pipelined.
    Conn k = connect_to(port);
    for (int i = 0; i < 3; ++i) {
        auto r = k.roundtrip("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
        REQUIRE(r);
        CHECK(r->status == 200);
        CHECK_FALSE(r->header("Connection") == std::optional<std::string>("close"));
    }
    REQUIRE(k.send_all("GET /stats HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                       "GET /nowhere HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
                       "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"));
    auto first = k.read_response();
    REQUIRE(first);
    CHECK(first->status == 200);
    CHECK(first->body.find("\"total_requests\"") != std::string::npos);
    auto second = k.read_response();
    REQUIRE(second);
    CHECK(second->status == 404);
    auto third = k.read_response();
    REQUIRE(third);
    CHECK(third->status == 200);
    CHECK(third->body.find("# TYPE cproxy_requests_total counter") != std::string::npos);
    // Connection: close from the client ends it.
    CHECK(k.wait_closed(Ms(3000)));
}

TEST_CASE("integration: stats: requests to the stats listener are not counted", "[integration][stats]")
{
    Origin o(static_origin("ok"));
    Proxy p(stats_args());
    StatsClient s(stats_port(p));
    {
        // One proxied request, so the counters are not all zero.
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/", "Connection: close\r\n"));
        REQUIRE(r);
        REQUIRE(r->status == 200);
        CHECK(c.wait_closed(Ms(3000)));
    }
    Exposition before = s.metrics_when([](const Exposition& e) {
        return all_requests(e) == 1 && value_of(e, "cproxy_connections_open") == 1;
    });
    REQUIRE(requests(before, "2xx") == 1);
    // Stats requests of every kind, on this connection and on new ones.
    for (int i = 0; i < 3; ++i) {
        CHECK(status(s.request("GET", "/metrics")) == 200);
        CHECK(status(s.request("GET", "/stats")) == 200);
        CHECK(status(s.request("HEAD", "/metrics")) == 200);
        CHECK(status(s.request("GET", "/nope")) == 404);
        CHECK(status(s.request("POST", "/metrics", "Content-Length: 0\r\n")) == 405);
        StatsClient other(stats_port(p));
        CHECK(status(other.request("GET", "/metrics", "Connection: close\r\n")) == 200);
    }
    // Let any late accounting land, then compare.
    std::this_thread::sleep_for(Ms(300));
    Exposition after = s.metrics();
    for (const auto& code : kCodes) {
        INFO("code " << code);
        CHECK(requests(after, code) == requests(before, code));
    }
    CHECK(bytes(after, "in") == bytes(before, "in"));
    CHECK(bytes(after, "out") == bytes(before, "out"));
    Json j = s.stats();
    CHECK(count_of(j.get("total_requests")) == 1);
    CHECK(count_of(j.get("successful_visits")) == 1);
    CHECK(count_of(j.get("failed_visits")) == 0);
    CHECK(count_of(j.get("bandwidth_usage")) == bytes(after, "in") + bytes(after, "out"));
}

TEST_CASE("integration: stats: the allow/deny rules decide who may connect to the stats listener",
          "[integration][stats]")
{
    Proxy p(stats_args({"--allow", "127.0.0.1"}));
    std::uint16_t port = stats_port(p);
    StatsClient s(port);
    CHECK(status(s.request("GET", "/metrics")) == 200);
    // 127.0.0.2 is not allowed: refused like a proxy client (403, closed),
    // never given the metrics.
    Conn refused = connect_from("127.0.0.2", port);
    refused.send_all("GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    auto all = refused.read_until_close(Ms(3000));
    INFO("the refused client received:\n" << all.data);
    CHECK(all.closed);
    CHECK(all.data.find("HTTP/1.1 200") == std::string::npos);
    CHECK(all.data.find("cproxy_") == std::string::npos);
    CHECK(all.data.rfind("HTTP/1.1 403", 0) == 0);
    // The allowed address still gets its answer.
    CHECK(status(s.request("GET", "/metrics")) == 200);
}

TEST_CASE("integration: stats: connections turned away with 503 at accept are counted as refused",
          "[integration][stats]")
{
    Proxy p(stats_args({"--max-connections", "2"}));
    StatsClient s(stats_port(p));
    Exposition before = s.metrics();
    // Hold silent client connections until one is answered 503 at once (the
    // stats connection may or may not take one of the two slots).
    std::vector<Conn> held;
    int turned_away = 0;
    for (int i = 0; i < 4 && turned_away == 0; ++i) {
        Conn c = p.connect();
        if (c.fill(Ms(300)) == -2) { // nothing said: admitted, waiting for a request
            held.push_back(std::move(c));
            continue;
        }
        auto r = c.read_response(Ms(1000));
        REQUIRE(r);
        CHECK(r->status == 503);
        CHECK(c.wait_closed(Ms(3000)));
        ++turned_away;
    }
    INFO(held.size() << " connections admitted before the 503");
    REQUIRE(turned_away == 1);
    CHECK(held.size() <= 2);
    Exposition after = s.metrics_when([&](const Exposition& e) {
        return value_of(e, "cproxy_connections_refused_total") >
               value_of(before, "cproxy_connections_refused_total");
    });
    CHECK(value_of(after, "cproxy_connections_refused_total") -
              value_of(before, "cproxy_connections_refused_total") == 1);
    CHECK(value_of(after, "cproxy_connections_open") == static_cast<double>(held.size()) + 1);
}

TEST_CASE("integration: stats: a stats_listen line in the config file works like --stats-listen",
          "[integration][stats]")
{
    ScratchDir dir("cproxy-stats");
    Origin o(static_origin("ok"));
    std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\nstats_listen 127.0.0.1:0   # metrics\n");
    RunResult checked = run_proxy({"-t", "-c", conf});
    INFO("-t stdout: " << checked.out << "\n-t stderr: " << checked.err);
    CHECK(checked.exited);
    CHECK(checked.exit_code == 0);

    Proxy p({"-c", conf});
    auto line = p.stats_line();
    INFO("proxy stdout:\n" << p.out() << "\nproxy stderr:\n" << p.err());
    REQUIRE(line);
    CHECK(line->line == "cproxy: stats on 127.0.0.1:" + std::to_string(line->port));
    StatsClient s(line->port);
    Exposition before = s.metrics();
    {
        Conn c = p.connect();
        auto r = c.roundtrip(get(o, "/", "Connection: close\r\n"));
        REQUIRE(r);
        CHECK(r->status == 200);
    }
    Exposition after = s.metrics_when(
        [&](const Exposition& e) { return requests(e, "2xx") > requests(before, "2xx"); });
    CHECK(requests(after, "2xx") - requests(before, "2xx") == 1);
    Json j = s.stats();
    CHECK(count_of(j.get("total_requests")) == 1);
}

TEST_CASE("integration: stats: an invalid stats address is a start-up error (exit 2) naming it",
          "[integration][stats]")
{
    for (const char* bad : {"nonsense", "127.0.0.1:99999", "127.0.0.1", "[::1:0"}) {
        INFO("--stats-listen " << bad);
        RunResult r = run_proxy({"-c", "/dev/null", "-l", "127.0.0.1:0", "--stats-listen", bad});
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exited);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("--stats-listen") != std::string::npos);
        CHECK(r.out.find("listening on") == std::string::npos);
        CHECK(r.err.find("stats on") == std::string::npos);
    }
    {
        // The option without its value.
        RunResult r = run_proxy({"-c", "/dev/null", "-l", "127.0.0.1:0", "--stats-listen"});
        INFO("stdout: " << r.out << "\nstderr: " << r.err);
        REQUIRE_FALSE(r.timed_out);
        CHECK(r.exit_code == 2);
        CHECK(r.err.find("stats-listen") != std::string::npos);
    }
    {
        // In the file: FILE:LINE, exit 2, for the run and for -t.
        ScratchDir dir("cproxy-stats");
        std::string conf = dir.write("cproxy.conf", "listen 127.0.0.1:0\nstats_listen nonsense\n");
        for (bool test_only : {false, true}) {
            std::vector<std::string> args{"-c", conf};
            if (test_only)
                args.insert(args.begin(), "-t");
            RunResult r = run_proxy(args);
            INFO((test_only ? "-t " : "") << "stdout: " << r.out << "\nstderr: " << r.err);
            REQUIRE_FALSE(r.timed_out);
            CHECK(r.exit_code == 2);
            CHECK(r.err.find(conf + ":2") != std::string::npos);
            CHECK(r.out.find("listening on") == std::string::npos);
        }
    }
}

TEST_CASE("integration: stats: a stats address already in use is a start-up failure (exit 1)",
          "[integration][stats]")
{
    // Hold a listener, then ask cproxy for the same address.
    std::uint16_t port = 0;
    Fd holder = listen_loopback(1, port);
    std::string taken = "127.0.0.1:" + std::to_string(port);
    RunResult r = run_proxy({"-c", "/dev/null", "-l", "127.0.0.1:0", "--stats-listen", taken});
    INFO("stdout: " << r.out << "\nstderr: " << r.err);
    REQUIRE_FALSE(r.timed_out);
    CHECK(r.exited);
    CHECK(r.exit_code == 1);
    CHECK(r.err.find(taken) != std::string::npos);
}
