#include "cproxy/metrics.hpp"

#include <cstdarg>
#include <cstdio>

namespace cproxy {

namespace {

// Appends printf-style to a fixed buffer; remembers running out of room.
class Text {
public:
    Text(char* out, std::size_t capacity) noexcept : out_(out), capacity_(capacity) {}

    [[gnu::format(printf, 2, 3)]] void add(const char* format, ...) noexcept {
        if (full_) return;
        va_list arguments;
        va_start(arguments, format);
        int n = std::vsnprintf(out_ + length_, capacity_ - length_, format, arguments);
        va_end(arguments);
        if (n < 0 || static_cast<std::size_t>(n) >= capacity_ - length_) full_ = true;
        else length_ += static_cast<std::size_t>(n);
    }
    std::size_t result() const noexcept { return full_ ? 0 : length_; }

private:
    char* out_;
    std::size_t capacity_;
    std::size_t length_ = 0;
    bool full_ = false;
};

using Field = std::uint64_t WorkerStats::*;

struct Family {
    const char* name;  // after "cproxy_"
    const char* type;
    const char* help;
    Field field;
    const char* label;  // an extra label ("direction=\"in\""), or nullptr
};

// One sample per worker for each; the families split by a label list each
// part, so their HELP and TYPE come once.
constexpr Family families[] = {
    {"connections_accepted_total", "counter", "Client connections accepted.", &WorkerStats::connections_accepted,
     nullptr},
    {"connections_refused_total", "counter", "Client connections refused with 503 (no slot or descriptor).",
     &WorkerStats::connections_refused, nullptr},
    {"connections_open", "gauge", "Client connections open.", &WorkerStats::connections_open, nullptr},
    {"tunnels_active", "gauge", "CONNECT and upgraded tunnels open.", &WorkerStats::tunnels_active, nullptr},
    {"tunnels_total", "counter", "CONNECT tunnels established.", &WorkerStats::tunnels_total, nullptr},
    {"bytes_total", "counter", "Bytes from clients (in) and to clients (out).", &WorkerStats::bytes_in,
     "direction=\"in\""},
    {"bytes_total", nullptr, nullptr, &WorkerStats::bytes_out, "direction=\"out\""},
    {"buffers_in_use", "gauge", "Relay buffers in use.", &WorkerStats::buffers_in_use, nullptr},
    {"pipes_in_use", "gauge", "splice(2) pipes in use.", &WorkerStats::pipes_in_use, nullptr},
    {"upstream_idle_connections", "gauge", "Idle upstream connections kept for reuse.",
     &WorkerStats::upstream_idle_connections, nullptr},
    {"upstream_reused_total", "counter", "Requests sent on a kept-alive or pooled upstream connection.",
     &WorkerStats::upstream_reused, nullptr},
    {"upstream_waiting", "gauge", "Requests waiting for a connection under upstream_max_connections.",
     &WorkerStats::upstream_waiting, nullptr},
    {"dns_cache_hits_total", "counter", "Name lookups answered by the DNS cache.", &WorkerStats::dns_cache_hits,
     nullptr},
    {"dns_cache_misses_total", "counter", "Name lookups the DNS cache could not answer.",
     &WorkerStats::dns_cache_misses, nullptr},
    {"dns_lookups_active", "gauge", "Names being looked up.", &WorkerStats::dns_lookups_active, nullptr},
    {"parent_requests_total", "counter", "Requests and tunnels sent through a parent proxy.",
     &WorkerStats::parent_requests, nullptr},
    {"parents_marked_down_total", "counter", "Times a parent proxy that had been answering failed and was marked down.",
     &WorkerStats::parents_marked_down, nullptr},
    {"parents_down", "gauge", "Parent proxies this worker holds down now.", &WorkerStats::parents_down, nullptr},
};

void add_family_head(Text& text, const char* name, const char* type, const char* help) noexcept {
    text.add("# HELP cproxy_%s %s\n# TYPE cproxy_%s %s\n", name, help, name, type);
}

unsigned long long total(const WorkerStats& stats, Field field) noexcept { return stats.*field; }

unsigned long long copied(const WorkerStats& stats) noexcept {
    std::uint64_t relayed = stats.bytes_in + stats.bytes_out;
    return relayed > stats.bytes_spliced ? relayed - stats.bytes_spliced : 0;
}

unsigned long long successful(const WorkerStats& stats) noexcept {
    return stats.requests[0] + stats.requests[1] + stats.requests[2];
}

unsigned long long failed(const WorkerStats& stats) noexcept {
    return stats.requests[3] + stats.requests[4] + stats.requests_unanswered;
}

}  // namespace

std::size_t render_prometheus(const WorkerStats* workers, std::size_t count, char* out, std::size_t capacity) noexcept {
    Text text(out, capacity);
    add_family_head(text, "requests_total", "counter", "Requests ended, by the class of the status sent.");
    for (std::size_t i = 0; i < count; ++i)
        for (int c = 0; c < 5; ++c)
            text.add("cproxy_requests_total{worker=\"%u\",code=\"%dxx\"} %llu\n", static_cast<unsigned>(workers[i].worker), c + 1,
                     static_cast<unsigned long long>(workers[i].requests[c]));
    for (const Family& family : families) {
        if (family.type) add_family_head(text, family.name, family.type, family.help);
        for (std::size_t i = 0; i < count; ++i)
            text.add("cproxy_%s{worker=\"%u\"%s%s} %llu\n", family.name, static_cast<unsigned>(workers[i].worker), family.label ? "," : "",
                     family.label ? family.label : "", total(workers[i], family.field));
    }
    add_family_head(text, "relayed_bytes_total", "counter", "Bytes relayed, by splice(2) or by copying.");
    for (std::size_t i = 0; i < count; ++i) {
        text.add("cproxy_relayed_bytes_total{worker=\"%u\",method=\"splice\"} %llu\n", static_cast<unsigned>(workers[i].worker),
                 static_cast<unsigned long long>(workers[i].bytes_spliced));
        text.add("cproxy_relayed_bytes_total{worker=\"%u\",method=\"copy\"} %llu\n", static_cast<unsigned>(workers[i].worker),
                 copied(workers[i]));
    }
    return text.result();
}

std::size_t render_json(const WorkerStats* workers, std::size_t count, char* out, std::size_t capacity) noexcept {
    unsigned long long bandwidth = 0, succeeded = 0, failures = 0;
    for (std::size_t i = 0; i < count; ++i) {
        bandwidth += workers[i].bytes_in + workers[i].bytes_out;
        succeeded += successful(workers[i]);
        failures += failed(workers[i]);
    }
    Text text(out, capacity);
    text.add("{\"bandwidth_usage\":%llu,\"total_requests\":%llu,\"successful_visits\":%llu,"
             "\"failed_visits\":%llu,\"workers\":[",
             bandwidth, succeeded + failures, succeeded, failures);
    for (std::size_t i = 0; i < count; ++i) {
        const WorkerStats& stats = workers[i];
        text.add("%s{\"worker\":%u,\"requests\":{\"1xx\":%llu,\"2xx\":%llu,\"3xx\":%llu,\"4xx\":%llu,\"5xx\":%llu},"
                 "\"requests_unanswered\":%llu",
                 i == 0 ? "" : ",", static_cast<unsigned>(stats.worker), static_cast<unsigned long long>(stats.requests[0]),
                 static_cast<unsigned long long>(stats.requests[1]),
                 static_cast<unsigned long long>(stats.requests[2]),
                 static_cast<unsigned long long>(stats.requests[3]),
                 static_cast<unsigned long long>(stats.requests[4]),
                 static_cast<unsigned long long>(stats.requests_unanswered));
        for (const Family& family : families) {
            // "bytes_total" in and out become bytes_in and bytes_out.
            if (family.label) text.add(",\"bytes_%s\":%llu", family.field == &WorkerStats::bytes_in ? "in" : "out",
                                       total(stats, family.field));
            else text.add(",\"%s\":%llu", family.name, total(stats, family.field));
        }
        text.add(",\"relayed_bytes_splice\":%llu,\"relayed_bytes_copy\":%llu}",
                 static_cast<unsigned long long>(stats.bytes_spliced), copied(stats));
    }
    text.add("]}\n");
    return text.result();
}

}  // namespace cproxy
