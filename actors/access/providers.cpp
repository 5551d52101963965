// Password-file, client-id and HTTP authentication providers.
#include "actors/access/providers.hpp"
#include "actors/access/url_encode.hpp"

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

namespace tern::actors::access {

namespace {

std::string read_file(const std::string& path, bool& ok) {
  std::ifstream in(path, std::ios::binary);
  ok = static_cast<bool>(in);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) {
    s.remove_prefix(1);
  }
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) {
    s.remove_suffix(1);
  }
  return std::string(s);
}

}  // namespace

// ---- password file ----------------------------------------------------------------------

std::variant<std::unique_ptr<password_file_provider>, std::string> password_file_provider::open(
    const std::string& path) {
  std::unique_ptr<password_file_provider> p(new password_file_provider(path));
  if (auto err = p->reload(); !err.empty()) {
    return err;
  }
  return p;
}

std::string password_file_provider::reload() {
  auto r = password_file::load(path_);
  if (auto* err = std::get_if<std::string>(&r)) {
    return *err;
  }
  auto f = std::make_shared<const password_file>(std::get<password_file>(std::move(r)));
  std::lock_guard lock{mtx_};
  file_ = std::move(f);
  return {};
}

std::shared_ptr<const password_file> password_file_provider::current() const {
  std::lock_guard lock{mtx_};
  return file_;
}

auth_answer password_file_provider::authenticate(const client_info& c,
                                                 const std::optional<std::string>& password) {
  if (!c.username) {
    return {decision::ignore, false, "no username"};
  }
  auto f = current();
  if (!f->contains(*c.username)) {
    return {decision::ignore, false, "unknown user"};
  }
  if (!password || !f->verify(*c.username, *password)) {
    return {decision::deny, true, "wrong password"};
  }
  return {decision::allow, false, "password ok"};
}

std::optional<scram_credentials> password_file_provider::scram(const std::string& user) const {
  auto f = current();
  const auto* e = f->find(user);
  if (!e || !e->scram) {
    return std::nullopt;
  }
  return e->scram;
}

// ---- client id allow-list ---------------------------------------------------------------

std::variant<std::vector<clientid_provider::entry>, std::string> clientid_provider::parse(
    std::string_view text, const std::string& origin) {
  std::vector<entry> out;
  std::istringstream in{std::string(text)};
  std::string line;
  unsigned lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    auto t = trim(line);
    if (t.empty() || t.front() == '#') {
      continue;
    }
    std::istringstream words(t);
    entry e;
    std::string addr, extra;
    words >> e.client_id >> addr >> extra;
    if (!extra.empty()) {
      return origin + ":" + std::to_string(lineno) + ": expected \"client-id [address or CIDR]\"";
    }
    if (!addr.empty()) {
      e.net = cidr::parse(addr);
      if (!e.net) {
        return origin + ":" + std::to_string(lineno) + ": bad address or CIDR \"" + addr + "\"";
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

std::variant<std::unique_ptr<clientid_provider>, std::string> clientid_provider::open(
    const std::string& path) {
  std::unique_ptr<clientid_provider> p(new clientid_provider(path));
  if (auto err = p->reload(); !err.empty()) {
    return err;
  }
  return p;
}

std::string clientid_provider::reload() {
  bool ok = false;
  auto text = read_file(path_, ok);
  if (!ok) {
    return path_ + ": cannot open file";
  }
  auto r = parse(text, path_);
  if (auto* err = std::get_if<std::string>(&r)) {
    return *err;
  }
  auto e = std::make_shared<const std::vector<entry>>(std::get<0>(std::move(r)));
  std::lock_guard lock{mtx_};
  entries_ = std::move(e);
  return {};
}

auth_answer cert_provider::authenticate(const client_info& c,
                                         const std::optional<std::string>& /*password*/) {
  if (c.cert_cn.empty() && c.cert_san.empty()) {
    return {decision::ignore, false, "no client certificate"};
  }
  const auto& who = c.cert_cn.empty() ? c.cert_san : c.cert_cn;
  if (c.username && !c.username->empty() && *c.username != c.cert_cn &&
      *c.username != c.cert_san) {
    return {decision::deny, true, "username is not the client certificate's identity " + who};
  }
  return {decision::allow, false, "client certificate " + who};
}

auth_answer clientid_provider::authenticate(const client_info& c,
                                            const std::optional<std::string>&) {
  std::shared_ptr<const std::vector<entry>> entries;
  {
    std::lock_guard lock{mtx_};
    entries = entries_;
  }
  bool listed = false;
  for (const auto& e : *entries) {
    if (e.client_id != c.client_id) {
      continue;
    }
    listed = true;
    if (!e.net || (c.address && e.net->contains(*c.address))) {
      return {decision::allow, false, "client id listed"};
    }
  }
  if (listed) {
    return {decision::deny, false, "client id not allowed from this address"};
  }
  return {decision::ignore, false, "client id not listed"};
}

// ---- HTTP -------------------------------------------------------------------------------

std::string http_provider::body(const client_info& c,
                                const std::optional<std::string>& password) const {
  std::string addr = c.address ? c.address->to_string() : std::string();
  if (json_) {
    nlohmann::json j;
    j["clientid"] = c.client_id;
    j["username"] = c.username ? nlohmann::json(*c.username) : nlohmann::json(nullptr);
    j["password"] = password ? nlohmann::json(*password) : nlohmann::json(nullptr);
    j["ipaddress"] = addr;
    // Binary passwords that are not UTF-8 are replaced, not rejected.
    return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  }
  return "clientid=" + url_encode(c.client_id) +
         "&username=" + url_encode(c.username.value_or("")) +
         "&password=" + url_encode(password.value_or("")) + "&ipaddress=" + url_encode(addr);
}

auth_answer http_provider::interpret(int status, std::string_view body) {
  if (status == 401 || status == 403) {
    return {decision::deny, true, "HTTP " + std::to_string(status)};
  }
  if (status != 200 && status != 204) {
    return {decision::ignore, false, "HTTP " + std::to_string(status)};
  }
  auto b = trim(body);
  std::string result = b;
  if (!b.empty() && b.front() == '{') {
    auto j = nlohmann::json::parse(b, nullptr, false);
    if (j.is_discarded() || !j.is_object() || !j.contains("result") || !j["result"].is_string()) {
      return {decision::ignore, false, "HTTP response without a \"result\""};
    }
    result = j["result"].get<std::string>();
  }
  if (result.empty() || result == "allow") {
    return {decision::allow, false, "HTTP allow"};
  }
  if (result == "deny") {
    return {decision::deny, true, "HTTP deny"};
  }
  return {decision::ignore, false, "HTTP " + (result == "ignore" ? result : "unknown answer")};
}

auth_answer http_provider::authenticate(const client_info& c,
                                        const std::optional<std::string>& password) {
  auto r = http_post(url_, json_ ? "application/json" : "application/x-www-form-urlencoded",
                     body(c, password), timeout_);
  if (auto* err = std::get_if<std::string>(&r)) {
    return {decision::ignore, false, "HTTP request failed: " + *err};
  }
  const auto& resp = std::get<http_response>(r);
  return interpret(resp.status, resp.body);
}

}  // namespace tern::actors::access
