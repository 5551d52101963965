// Password file: parsing, hashing, checking and atomic saving.
#include "actors/access/password_file.hpp"

#include <sys/stat.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include "actors/access/crypto.hpp"

namespace tern::actors::access {

namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  for (;;) {
    auto p = s.find(sep, start);
    out.push_back(s.substr(start, p == std::string_view::npos ? s.npos : p - start));
    if (p == std::string_view::npos) {
      return out;
    }
    start = p + 1;
  }
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  if (s.empty() || s.size() > 9) {
    return std::nullopt;
  }
  std::uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') {
      return std::nullopt;
    }
    v = v * 10 + static_cast<std::uint32_t>(c - '0');
  }
  return v;
}

bool is_valid_hash(std::string_view hash) {
  auto parts = split(hash, '$');
  if (parts.size() == 5 && parts[0].empty() && parts[1] == "7") {
    auto it = parse_u32(parts[2]);
    return it && *it > 0 && crypto::base64_decode(parts[3]) && crypto::base64_decode(parts[4]);
  }
  if (parts.size() == 4 && parts[0].empty() && parts[1] == "6") {
    return crypto::base64_decode(parts[2]) && crypto::base64_decode(parts[3]);
  }
  return false;
}

std::optional<scram_credentials> parse_scram(std::string_view s) {
  auto parts = split(s, '$');
  if (parts.size() != 5 || parts[0] != "scram-sha-256") {
    return std::nullopt;
  }
  auto it = parse_u32(parts[1]);
  auto salt = crypto::base64_decode(parts[2]);
  auto stored = crypto::base64_decode(parts[3]);
  auto server = crypto::base64_decode(parts[4]);
  if (!it || *it == 0 || !salt || !stored || !server || stored->size() != 32 ||
      server->size() != 32) {
    return std::nullopt;
  }
  return scram_credentials{*it, *salt, *stored, *server};
}

std::string format_scram(const scram_credentials& c) {
  return "scram-sha-256$" + std::to_string(c.iterations) + "$" + crypto::base64_encode(c.salt) +
         "$" + crypto::base64_encode(c.stored_key) + "$" + crypto::base64_encode(c.server_key);
}

}  // namespace

bool is_valid_username(std::string_view user) {
  if (user.empty() || user.size() > 65535) {
    return false;
  }
  for (char c : user) {
    if (c == ':' || static_cast<unsigned char>(c) < 0x20 || c == 0x7f) {
      return false;
    }
  }
  return true;
}

std::string hash_password(std::string_view password, std::uint32_t iterations) {
  auto salt = crypto::random_bytes(12);
  auto hash = crypto::pbkdf2(password, salt, iterations, true, 64);
  return "$7$" + std::to_string(iterations) + "$" + crypto::base64_encode(salt) + "$" +
         crypto::base64_encode(hash);
}

bool verify_password(std::string_view hash, std::string_view password) {
  auto parts = split(hash, '$');
  if (parts.size() == 5 && parts[0].empty() && parts[1] == "7") {
    auto it = parse_u32(parts[2]);
    auto salt = crypto::base64_decode(parts[3]);
    auto want = crypto::base64_decode(parts[4]);
    if (!it || *it == 0 || !salt || !want || want->empty()) {
      return false;
    }
    return crypto::equal_ct(crypto::pbkdf2(password, *salt, *it, true, want->size()), *want);
  }
  if (parts.size() == 4 && parts[0].empty() && parts[1] == "6") {
    auto salt = crypto::base64_decode(parts[2]);
    auto want = crypto::base64_decode(parts[3]);
    if (!salt || !want) {
      return false;
    }
    return crypto::equal_ct(crypto::sha512(std::string(password) + *salt), *want);
  }
  return false;
}

std::variant<password_file, std::string> password_file::parse(std::string_view text,
                                                              const std::string& origin) {
  password_file f;
  unsigned lineno = 0;
  std::size_t pos = 0;
  while (pos < text.size()) {
    auto nl = text.find('\n', pos);
    auto line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() : nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    if (line.empty() || line.front() == '#') {
      continue;
    }
    auto where = origin + ":" + std::to_string(lineno) + ": ";
    auto fields = split(line, ':');
    if (fields.size() < 2 || fields.size() > 3) {
      return where + "expected user:hash";
    }
    std::string user(fields[0]);
    if (!is_valid_username(user)) {
      return where + "bad user name";
    }
    if (!is_valid_hash(fields[1])) {
      return where + "user " + user +
             ": not a salted hash ($7$ PBKDF2-SHA512 or $6$); plain-text passwords are not "
             "accepted, use tern-passwd";
    }
    password_entry e;
    e.hash = std::string(fields[1]);
    if (fields.size() == 3) {
      e.scram = parse_scram(fields[2]);
      if (!e.scram) {
        return where + "user " + user + ": bad scram-sha-256 credentials";
      }
    }
    if (f.users_.count(user) != 0) {
      return where + "user " + user + " listed twice";
    }
    f.users_.emplace(std::move(user), std::move(e));
  }
  return f;
}

std::variant<password_file, std::string> password_file::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return path + ": cannot open file";
  }
  std::stringstream ss;
  ss << in.rdbuf();
  return parse(ss.str(), path);
}

std::string password_file::save(const std::string& path) const {
  auto tmp = path + ".tmp";
  {
    auto old = umask(077);
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    umask(old);
    if (!out) {
      return tmp + ": cannot create file";
    }
    for (const auto& [user, e] : users_) {
      out << user << ':' << e.hash;
      if (e.scram) {
        out << ':' << format_scram(*e.scram);
      }
      out << '\n';
    }
    out.flush();
    if (!out) {
      return tmp + ": write failed";
    }
  }
  chmod(tmp.c_str(), 0600);
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    std::remove(tmp.c_str());
    return path + ": cannot replace file";
  }
  return {};
}

bool password_file::verify(const std::string& user, std::string_view password) const {
  auto it = users_.find(user);
  return it != users_.end() && verify_password(it->second.hash, password);
}

const password_entry* password_file::find(const std::string& user) const {
  auto it = users_.find(user);
  return it == users_.end() ? nullptr : &it->second;
}

void password_file::set(const std::string& user, std::string_view password,
                        std::uint32_t iterations) {
  password_entry e;
  e.hash = hash_password(password, iterations);
  e.scram = make_scram_credentials(password, crypto::random_bytes(16), 4096);
  users_[user] = std::move(e);
}

std::vector<std::string> password_file::users() const {
  std::vector<std::string> out;
  for (const auto& [u, e] : users_) {
    out.push_back(u);
  }
  return out;
}

}  // namespace tern::actors::access
