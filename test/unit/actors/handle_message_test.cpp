// Unit tests for broker::handle(): one message against one handler, as a behavior clause.
#include "actors/broker/handle_message.hpp"

#include <catch2/catch.hpp>

namespace {

using tern::actors::broker::handle;
using one_atom = caf::atom_constant<caf::atom("one")>;
using two_atom = caf::atom_constant<caf::atom("two")>;

}  // namespace

TEST_CASE("handle: matches decayed parameter types and atom values", "[actors]") {
  auto msg = caf::make_message(one_atom::value, std::string("text"), std::uint16_t{7});
  caf::message reply;
  std::string seen;
  std::uint16_t id = 0;
  CHECK_FALSE(handle(msg.content(), reply, [&](two_atom, const std::string&, std::uint16_t) {}));
  CHECK_FALSE(handle(msg.content(), reply, [&](one_atom, const std::string&) {}));
  CHECK_FALSE(handle(msg.content(), reply, [&](one_atom, const std::string&, std::uint32_t) {}));
  CHECK(seen.empty());
  CHECK(handle(msg.content(), reply, [&](one_atom, const std::string& s, std::uint16_t i) {
    seen = s;
    id = i;
  }));
  CHECK(seen == "text");
  CHECK(id == 7);
  CHECK(reply.empty());  // void: no reply
}

TEST_CASE("handle: a result becomes the reply; mutable parameters refer to the element",
          "[actors]") {
  auto msg = caf::make_message(two_atom::value, std::vector<int>{1, 2, 3});
  caf::message reply;
  CHECK(handle(msg.content(), reply, [](two_atom, std::vector<int>& v) -> std::uint8_t {
    auto n = static_cast<std::uint8_t>(v.size());
    v.clear();
    return n;
  }));
  REQUIRE(reply.match_elements<std::uint8_t>());
  CHECK(reply.get_as<std::uint8_t>(0) == 3);
  CHECK(msg.get_as<std::vector<int>>(1).empty());
}
