// TLS server contexts (OpenSSL 3 through asio::ssl) and client certificate identities.
#include "actors/listener/tls.hpp"

#include <sstream>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <boost/asio/ssl/context.hpp>

namespace tern::actors::listener {

namespace {

namespace ssl = boost::asio::ssl;

std::string openssl_error() {
  auto e = ERR_get_error();
  if (e == 0) {
    return "unknown OpenSSL error";
  }
  char text[256];
  ERR_error_string_n(e, text, sizeof(text));
  ERR_clear_error();
  return text;
}

std::string asn1_text(ASN1_STRING* s) {
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, s);
  if (n < 0) {
    return {};
  }
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

}  // namespace

std::variant<std::shared_ptr<ssl::context>, std::string> make_tls_context(
    const config::listener_config& lc) {
  auto where = "listener " + lc.kind + "." + lc.name + ": ";
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  auto* native = ctx->native_handle();
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // Keep idle TLS connections small: OpenSSL frees its record buffers between records.
  SSL_CTX_set_mode(native, SSL_MODE_RELEASE_BUFFERS);

  bool has12 = lc.tls_versions.find("tlsv1.2") != std::string::npos;
  bool has13 = lc.tls_versions.find("tlsv1.3") != std::string::npos;
  SSL_CTX_set_min_proto_version(native, has12 ? TLS1_2_VERSION : TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(native, has13 ? TLS1_3_VERSION : TLS1_2_VERSION);

  if (SSL_CTX_use_certificate_chain_file(native, lc.certfile.c_str()) != 1) {
    return where + "cannot load certfile " + lc.certfile + ": " + openssl_error();
  }
  if (SSL_CTX_use_PrivateKey_file(native, lc.keyfile.c_str(), SSL_FILETYPE_PEM) != 1) {
    return where + "cannot load keyfile " + lc.keyfile + ": " + openssl_error();
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    return where + "keyfile " + lc.keyfile + " does not match certfile " + lc.certfile;
  }
  if (!lc.ciphers.empty() && SSL_CTX_set_cipher_list(native, lc.ciphers.c_str()) != 1) {
    return where + "bad ciphers \"" + lc.ciphers + "\": " + openssl_error();
  }
  if (!lc.ciphersuites.empty() && SSL_CTX_set_ciphersuites(native, lc.ciphersuites.c_str()) != 1) {
    return where + "bad ciphersuites \"" + lc.ciphersuites + "\": " + openssl_error();
  }
  if (!lc.cacertfile.empty()) {
    if (SSL_CTX_load_verify_locations(native, lc.cacertfile.c_str(), nullptr) != 1) {
      return where + "cannot load cacertfile " + lc.cacertfile + ": " + openssl_error();
    }
    // Tell clients which CAs we accept (the CertificateRequest's list).
    if (auto* names = SSL_load_client_CA_file(lc.cacertfile.c_str())) {
      SSL_CTX_set_client_CA_list(native, names);
    }
  }
  int mode = SSL_VERIFY_NONE;
  if (lc.verify == "request") {
    mode = SSL_VERIFY_PEER;
  } else if (lc.verify == "require") {
    mode = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
  }
  SSL_CTX_set_verify(native, mode, nullptr);
  // Session resumption with client verification needs a context id.
  static const unsigned char sid_ctx[] = "tern";
  SSL_CTX_set_session_id_context(native, sid_ctx, sizeof(sid_ctx) - 1);
  return ctx;
}

peer_cert read_peer_cert(SSL* ssl) {
  peer_cert out;
  X509* cert = SSL_get1_peer_certificate(ssl);
  if (!cert) {
    return out;
  }
  // With verify = request a client may present a certificate that fails verification: its
  // names are then not trusted.
  if (SSL_get_verify_result(ssl) != X509_V_OK) {
    X509_free(cert);
    return out;
  }
  out.is_present = true;
  if (X509_NAME* subject = X509_get_subject_name(cert)) {
    int i = X509_NAME_get_index_by_NID(subject, NID_commonName, -1);
    if (i >= 0) {
      out.cn = asn1_text(X509_NAME_ENTRY_get_data(X509_NAME_get_entry(subject, i)));
    }
  }
  auto* names =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (names) {
    for (int i = 0; i < sk_GENERAL_NAME_num(names) && out.san.empty(); ++i) {
      const GENERAL_NAME* n = sk_GENERAL_NAME_value(names, i);
      if (n->type == GEN_DNS || n->type == GEN_EMAIL || n->type == GEN_URI) {
        out.san = asn1_text(n->d.ia5);
      }
    }
    GENERAL_NAMES_free(names);
  }
  X509_free(cert);
  return out;
}

}  // namespace tern::actors::listener
