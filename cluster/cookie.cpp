// Cookie proofs (OpenSSL HMAC and RAND).
#include "cluster/cookie.hpp"

#include <stdexcept>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

namespace tern::cluster {

std::string make_nonce() {
  std::string n(16, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(n.data()), static_cast<int>(n.size())) != 1) {
    throw std::runtime_error("RAND_bytes failed");
  }
  return n;
}

std::string cookie_proof(const std::string& cookie, const std::string& label,
                         const std::string& nonce, const std::string& name) {
  std::string data = label;
  data.push_back('\0');
  data += nonce;
  data.push_back('\0');
  data += name;
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  HMAC(EVP_sha256(), cookie.data(), static_cast<int>(cookie.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &len);
  return std::string(reinterpret_cast<const char*>(out), len);
}

bool proof_equal(const std::string& a, const std::string& b) {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace tern::cluster
