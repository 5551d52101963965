// TLS for the ssl and wss listeners: the server context built from a listener's settings,
// and the identity in a client certificate.
#pragma once

#include <memory>
#include <string>
#include <variant>

#include "actors/config/config.hpp"
#include "actors/listener/transport.hpp"

typedef struct ssl_st SSL;

namespace tern::actors::listener {

/// Loads certificate, key and CA file, sets versions, ciphers and client certificate
/// verification. Returns the context, or an error naming the listener and the file.
std::variant<std::shared_ptr<boost::asio::ssl::context>, std::string> make_tls_context(
    const config::listener_config& lc);

/// The client certificate of an established TLS connection (is_present false without one).
peer_cert read_peer_cert(SSL* ssl);

}  // namespace tern::actors::listener
