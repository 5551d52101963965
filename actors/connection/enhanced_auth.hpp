// MQTT 5 enhanced authentication (AUTH packet) seam: the connection runs the exchange, an
// authenticator registered per Authentication Method decides. Pure interface, no I/O.
//
// The connection creates one `auth_exchange` per CONNECT (or re-authentication) that names
// a registered method, feeds it the client's Authentication Data and sends what it returns:
// AUTH 0x18 while the exchange continues, then CONNACK (or AUTH 0x00 when re-authenticating)
// on success, CONNACK / DISCONNECT with `failure_reason` on failure. A CONNECT naming a method
// nobody registered is refused with CONNACK 0x8C (bad authentication method).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "proto/mqtt/packet.hpp"

namespace tern::actors::connection {

/// What an authenticator answers to one step of the exchange.
struct auth_step {
  enum class outcome : std::uint8_t { success, continue_auth, failure };
  outcome result = outcome::failure;
  /// Authentication Data for the client (sent when set).
  std::optional<std::string> data;
  /// Reason code of the CONNACK / DISCONNECT on failure.
  proto::mqtt::reason_code failure_reason = proto::mqtt::reason_code::not_authorized;
};

/// One authentication exchange with one client. Called from that client's connection actor
/// only (never concurrently); must not block.
class auth_exchange {
 public:
  virtual ~auth_exchange() = default;
  /// The client's CONNECT (or AUTH 0x19 for re-authentication) with its Authentication Data.
  virtual auth_step start(const proto::mqtt::connect& c,
                          const std::optional<std::string>& data) = 0;
  /// The client's AUTH 0x18 (continue authentication) with its Authentication Data.
  virtual auth_step next(const std::optional<std::string>& data) = 0;
};

/// Creates the exchange for one client.
using auth_factory = std::function<std::unique_ptr<auth_exchange>()>;
/// Authentication Method name -> factory. Filled before the listeners start; read-only after.
using auth_methods = std::map<std::string, auth_factory>;

}  // namespace tern::actors::connection
