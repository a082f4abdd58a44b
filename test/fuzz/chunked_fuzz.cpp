// Chunked body decoder: no crash, and where the body ends does not depend on
// how the bytes are split between calls; decoding in place (for HTTP/1.0
// clients) ends the body where validating does, with no more data than it
// consumed.
#include <string>

#include "cproxy/http_parser.hpp"
#include "fuzz_input.hpp"

using namespace cproxy;

namespace {

// Feeds `body` in two pieces split at `split`; returns (bytes consumed, status).
http::ChunkedDecoder::Result feed_in_two(std::string_view body, std::size_t split) {
    http::ChunkedDecoder decoder;
    decoder.reset();
    auto first = decoder.feed(body.substr(0, split));
    fuzz::require(first.consumed <= split);
    if (first.status != http::ParseStatus::Partial) return first;
    fuzz::require(first.consumed == split);
    auto second = decoder.feed(body.substr(split));
    fuzz::require(second.consumed <= body.size() - split);
    return {split + second.consumed, second.status, 0};
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    auto [body, split] = fuzz::split_input(data, size);
    http::ChunkedDecoder decoder;
    decoder.reset();
    auto whole = decoder.feed(body);
    fuzz::require(whole.consumed <= body.size());
    if (whole.status == http::ParseStatus::Partial) fuzz::require(whole.consumed == body.size());
    auto pieces = feed_in_two(body, split);
    fuzz::require(pieces.status == whole.status);
    if (whole.status == http::ParseStatus::Done) fuzz::require(pieces.consumed == whole.consumed);

    std::string copy(body);
    http::ChunkedDecoder in_place;
    in_place.reset();
    auto decoded = in_place.decode(copy.data(), copy.size());
    fuzz::require(decoded.status == whole.status);
    if (decoded.status != http::ParseStatus::Error) fuzz::require(decoded.consumed == whole.consumed);
    fuzz::require(decoded.produced <= decoded.consumed);
    return 0;
}
