// SCRAM-SHA-256 server state machine.
#include "actors/access/scram.hpp"

#include <vector>

#include "actors/access/crypto.hpp"

namespace tern::actors::access {

namespace {

/// Splits "a=1,b=2" into attribute/value pairs; nullopt if an item is not "x=...".
std::optional<std::vector<std::pair<char, std::string>>> attributes(std::string_view s) {
  std::vector<std::pair<char, std::string>> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    auto comma = s.find(',', start);
    auto item = s.substr(start, comma == std::string_view::npos ? s.npos : comma - start);
    if (item.size() < 2 || item[1] != '=') {
      return std::nullopt;
    }
    out.emplace_back(item[0], std::string(item.substr(2)));
    if (comma == std::string_view::npos) {
      break;
    }
    start = comma + 1;
  }
  return out;
}

/// RFC 5802 saslname: "=2C" is ',' and "=3D" is '='; any other '=' is an error.
std::optional<std::string> decode_saslname(std::string_view s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '=') {
      auto esc = s.substr(i + 1, 2);
      if (esc == "2C") {
        out += ',';
      } else if (esc == "3D") {
        out += '=';
      } else {
        return std::nullopt;
      }
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::string xor_bytes(std::string a, std::string_view b) {
  for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
    a[i] = static_cast<char>(a[i] ^ b[i]);
  }
  return a;
}

}  // namespace

scram_credentials make_scram_credentials(std::string_view password, std::string_view salt,
                                         std::uint32_t iterations) {
  auto salted = crypto::pbkdf2(password, salt, iterations, false, 32);
  scram_credentials c;
  c.iterations = iterations;
  c.salt = std::string(salt);
  c.stored_key = crypto::sha256(crypto::hmac_sha256(salted, "Client Key"));
  c.server_key = crypto::hmac_sha256(salted, "Server Key");
  return c;
}

scram_server::scram_server(lookup_fn lookup, std::string nonce)
    : lookup_(std::move(lookup)), server_nonce_(std::move(nonce)) {
  if (server_nonce_.empty()) {
    server_nonce_ = crypto::base64_encode(crypto::random_bytes(18));
  }
}

std::optional<std::string> scram_server::client_first(std::string_view msg) {
  if (!server_first_.empty() || msg.size() > 4096) {
    return std::nullopt;
  }
  // gs2-header: "n,," (no channel binding, no authzid) or "y,,".
  if (msg.size() < 3 || (msg[0] != 'n' && msg[0] != 'y') || msg[1] != ',') {
    return std::nullopt;
  }
  auto second_comma = msg.find(',', 2);
  if (second_comma == std::string_view::npos) {
    return std::nullopt;
  }
  auto bare = msg.substr(second_comma + 1);
  auto attrs = attributes(bare);
  if (!attrs || attrs->size() < 2 || (*attrs)[0].first != 'n' || (*attrs)[1].first != 'r' ||
      (*attrs)[1].second.empty()) {
    return std::nullopt;
  }
  auto user = decode_saslname((*attrs)[0].second);
  if (!user || user->empty()) {
    return std::nullopt;
  }
  creds_ = lookup_(*user);
  if (!creds_) {
    return std::nullopt;
  }
  user_ = *user;
  client_first_bare_ = std::string(bare);
  nonce_ = (*attrs)[1].second + server_nonce_;
  server_first_ = "r=" + nonce_ + ",s=" + crypto::base64_encode(creds_->salt) +
                  ",i=" + std::to_string(creds_->iterations);
  return server_first_;
}

std::optional<std::string> scram_server::client_final(std::string_view msg) {
  if (server_first_.empty() || done_ || msg.size() > 4096) {
    return std::nullopt;
  }
  auto proof_pos = msg.rfind(",p=");
  if (proof_pos == std::string_view::npos) {
    return std::nullopt;
  }
  auto without_proof = msg.substr(0, proof_pos);
  auto attrs = attributes(without_proof);
  if (!attrs || attrs->size() < 2 || (*attrs)[0].first != 'c' || (*attrs)[1].first != 'r') {
    return std::nullopt;
  }
  // c= must be base64("n,,") (or "y,,"): no channel binding.
  if ((*attrs)[0].second != "biws" && (*attrs)[0].second != "eSws") {
    return std::nullopt;
  }
  if ((*attrs)[1].second != nonce_) {
    return std::nullopt;
  }
  auto proof = crypto::base64_decode(msg.substr(proof_pos + 3));
  if (!proof || proof->size() != 32) {
    return std::nullopt;
  }
  std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  auto client_signature = crypto::hmac_sha256(creds_->stored_key, auth_message);
  auto client_key = xor_bytes(*proof, client_signature);
  if (!crypto::equal_ct(crypto::sha256(client_key), creds_->stored_key)) {
    return std::nullopt;
  }
  done_ = true;
  auto server_signature = crypto::hmac_sha256(creds_->server_key, auth_message);
  return "v=" + crypto::base64_encode(server_signature);
}

}  // namespace tern::actors::access
