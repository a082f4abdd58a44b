// DNS reply reader: no crash and no read past the message on any bytes (ASan),
// and what it reports is consistent. The first byte picks the query type and
// name; the rest is the reply, whose own ID is taken as the one asked, so the
// fuzzer gets past the ID check.
#include "cproxy/dns_message.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 3) return 0;
    auto type = data[0] & 1 ? dns::QueryType::AAAA : dns::QueryType::A;
    std::string_view name = data[0] & 2 ? "example.com" : "a.b";
    const std::uint8_t* message = data + 1;
    std::size_t length = size - 1;
    auto id = static_cast<std::uint16_t>((message[0] << 8) | message[1]);
    dns::Reply reply = dns::read_reply(message, length, id, name, type);
    fuzz::require((reply.outcome == dns::Outcome::Addresses) == (reply.count > 0));
    fuzz::require(reply.count <= dns::max_addresses);
    if (reply.outcome == dns::Outcome::Malformed || reply.outcome == dns::Outcome::NotOurs)
        fuzz::require(reply.ttl == 0);
    return 0;
}
