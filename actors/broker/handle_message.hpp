// Matching a message against one handler by hand, for actors' default handlers.
//
// CAF 0.17 allocates every handler of a behavior with each actor (about 40 B apiece), so
// the broker's per-client actors keep only their per-message handlers in the behavior and
// take their rare control messages in the default handler, a plain function that
// std::function stores inline. There, handle() plays the part of one behavior clause.
//
// Heavy (pulls in CAF): include it only from actor implementation files.
#pragma once

#include <cstddef>
#include <type_traits>
#include <utility>

#include <caf/all.hpp>

namespace tern::actors::broker {

namespace detail {

/// Element `i` of `xs` as a T (already matched); an atom constant is a fresh, empty value.
template <class T>
decltype(auto) element(caf::type_erased_tuple& xs, std::size_t i) {
  if constexpr (std::is_empty_v<T>) {
    return T{};
  } else {
    return *static_cast<T*>(xs.get_mutable(i));
  }
}

template <class F, class... Ts, std::size_t... Is>
bool handle_decayed(caf::type_erased_tuple& xs, caf::message& reply, F& f,
                    caf::detail::type_list<Ts...>, std::index_sequence<Is...>) {
  // Match on the decayed types, as a behavior does: a parameter `const std::string&`
  // must match a std::string element.
  if (!xs.match_elements<std::decay_t<Ts>...>()) {
    return false;
  }
  using result = decltype(f(std::declval<std::decay_t<Ts>&>()...));
  if constexpr (std::is_void_v<result>) {
    f(element<std::decay_t<Ts>>(xs, Is)...);
  } else {
    reply = caf::make_message(f(element<std::decay_t<Ts>>(xs, Is)...));
  }
  return true;
}

}  // namespace detail

/// Calls `f` when the elements of `xs` have the (decayed) types of its parameters, atoms
/// included, and returns true; a non-void result becomes `reply`. Atom parameters are
/// matched by value, as in a behavior.
template <class F>
bool handle(caf::type_erased_tuple& xs, caf::message& reply, F f) {
  using args = typename caf::detail::get_callable_trait<F>::arg_types;
  return detail::handle_decayed(xs, reply, f, args{},
                                std::make_index_sequence<caf::detail::tl_size<args>::value>{});
}

}  // namespace tern::actors::broker
