// tern-passwd: manages the broker's password file (salted PBKDF2-SHA512 hashes).
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <string>

#include <CLI/CLI.hpp>

#include "actors/access/password_file.hpp"

namespace {

namespace access = tern::actors::access;

/// Reads a password from the terminal without echo (twice, to confirm), or one line
/// from a non-terminal stdin.
std::optional<std::string> read_password() {
  bool tty = isatty(STDIN_FILENO) != 0;
  auto read_line = [&](const char* prompt) -> std::optional<std::string> {
    termios old{};
    if (tty) {
      std::fprintf(stderr, "%s", prompt);
      tcgetattr(STDIN_FILENO, &old);
      termios quiet = old;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      tcsetattr(STDIN_FILENO, TCSANOW, &quiet);
    }
    std::string line;
    bool ok = static_cast<bool>(std::getline(std::cin, line));
    if (tty) {
      tcsetattr(STDIN_FILENO, TCSANOW, &old);
      std::fprintf(stderr, "\n");
    }
    if (!ok) {
      return std::nullopt;
    }
    if (!line.empty() && line.back() == '\r') {
      line.pop_back();
    }
    return line;
  };
  auto first = read_line("Password: ");
  if (!first || !tty) {
    return first;
  }
  auto again = read_line("Reenter password: ");
  if (!again || *again != *first) {
    std::fprintf(stderr, "tern-passwd: passwords do not match\n");
    return std::nullopt;
  }
  return first;
}

int fail(const std::string& msg) {
  std::fprintf(stderr, "tern-passwd: %s\n", msg.c_str());
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "Manage a Tern password file (user:$7$... lines, PBKDF2-SHA512 with a random salt).\n"
      "Without PASSWORD on the command line it is read from the terminal or stdin."};
  app.require_subcommand(1);
  std::string file, user, password;
  std::uint32_t iterations = access::password_file::default_iterations;
  app.add_option("-I,--iterations", iterations, "PBKDF2 iterations for new hashes")
      ->check(CLI::Range(1000u, 10000000u));
  auto* add = app.add_subcommand("add", "add a user (the file is created if missing)");
  auto* del = app.add_subcommand("del", "delete a user");
  auto* pw = app.add_subcommand("passwd", "change a user's password");
  auto* list = app.add_subcommand("list", "list the users");
  for (auto* sc : {add, del, pw, list}) {
    sc->add_option("file", file, "password file")->required();
  }
  for (auto* sc : {add, del, pw}) {
    sc->add_option("user", user, "user name")->required();
  }
  for (auto* sc : {add, pw}) {
    sc->add_option("password", password, "password (prefer stdin: command lines are visible)");
  }
  CLI11_PARSE(app, argc, argv);

  access::password_file f;
  struct stat sb {};
  bool exists = ::stat(file.c_str(), &sb) == 0;
  if (exists) {
    auto r = access::password_file::load(file);
    if (auto* err = std::get_if<std::string>(&r)) {
      return fail(*err);
    }
    f = std::get<access::password_file>(std::move(r));
  } else if (!add->parsed()) {
    return fail(file + ": no such file");
  }

  if (list->parsed()) {
    for (const auto& u : f.users()) {
      std::printf("%s\n", u.c_str());
    }
    return 0;
  }
  if (!access::is_valid_username(user)) {
    return fail("bad user name (empty, or contains ':' or control characters)");
  }
  if (del->parsed()) {
    if (!f.remove(user)) {
      return fail("no user " + user + " in " + file);
    }
  } else {
    if (add->parsed() && f.contains(user)) {
      return fail("user " + user + " exists; use passwd to change the password");
    }
    if (pw->parsed() && !f.contains(user)) {
      return fail("no user " + user + " in " + file);
    }
    if (add->get_option("password")->count() == 0 && pw->get_option("password")->count() == 0) {
      auto p = read_password();
      if (!p) {
        return fail("no password given");
      }
      password = *p;
    }
    if (password.empty()) {
      return fail("empty password");
    }
    f.set(user, password, iterations);
  }
  if (auto err = f.save(file); !err.empty()) {
    return fail(err);
  }
  return 0;
}
