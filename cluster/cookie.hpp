// Cookie proofs for the cluster handshake: HMAC-SHA256(cookie, label | nonce | name). The
// cookie never leaves the node; a proof is bound to the peer's fresh nonce and to the name of
// the node proving, so it cannot be replayed to another handshake.
#pragma once

#include <string>

namespace tern::cluster {

/// A fresh random nonce (16 bytes).
std::string make_nonce();

/// HMAC-SHA256(cookie, label + '\0' + nonce + '\0' + name), 32 raw bytes.
std::string cookie_proof(const std::string& cookie, const std::string& label,
                         const std::string& nonce, const std::string& name);

/// Constant-time comparison of two proofs.
bool proof_equal(const std::string& a, const std::string& b);

}  // namespace tern::cluster
