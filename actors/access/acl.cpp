// ACL parsing (emqttd terms, Mosquitto lines) and first-match evaluation.
#include "actors/access/acl.hpp"

#include <fstream>
#include <sstream>

namespace tern::actors::access {

namespace {

// ---- A reader for the subset of Erlang terms acl.conf uses ---------------------------------

struct term {
  enum class kind : std::uint8_t { atom, string, list, tuple };
  kind k = kind::atom;
  std::string text;  // atom name or string contents
  std::vector<term> items;
  unsigned line = 0;
};

struct parse_failure {
  unsigned line;
  std::string what;
};

class term_reader {
 public:
  explicit term_reader(std::string_view s) : s_(s) {}

  /// Next top-level term (terminated by '.'), or nullopt at the end of the text.
  std::optional<term> next() {
    skip();
    if (pos_ >= s_.size()) {
      return std::nullopt;
    }
    term t = value();
    skip();
    if (pos_ >= s_.size() || s_[pos_] != '.') {
      fail("expected '.' after the rule");
    }
    ++pos_;
    return t;
  }

 private:
  [[noreturn]] void fail(const std::string& what) const { throw parse_failure{line_, what}; }

  void skip() {
    while (pos_ < s_.size()) {
      char c = s_[pos_];
      if (c == '\n') {
        ++line_;
        ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else if (c == '%') {
        while (pos_ < s_.size() && s_[pos_] != '\n') {
          ++pos_;
        }
      } else {
        break;
      }
    }
  }

  term value(unsigned depth = 0) {
    // Rules nest a few levels ('and'/'or' lists); a limit keeps a hostile file from
    // exhausting the stack.
    if (depth > 32) {
      fail("terms nested too deeply");
    }
    skip();
    if (pos_ >= s_.size()) {
      fail("unexpected end of file");
    }
    term t;
    t.line = line_;
    char c = s_[pos_];
    if (c == '{' || c == '[') {
      char close = c == '{' ? '}' : ']';
      t.k = c == '{' ? term::kind::tuple : term::kind::list;
      ++pos_;
      skip();
      if (pos_ < s_.size() && s_[pos_] == close) {
        ++pos_;
        return t;
      }
      for (;;) {
        t.items.push_back(value(depth + 1));
        skip();
        if (pos_ >= s_.size()) {
          fail(std::string("missing '") + close + "'");
        }
        if (s_[pos_] == ',') {
          ++pos_;
          continue;
        }
        if (s_[pos_] == close) {
          ++pos_;
          return t;
        }
        fail(std::string("expected ',' or '") + close + "'");
      }
    }
    if (c == '"') {
      t.k = term::kind::string;
      t.text = quoted('"');
      return t;
    }
    if (c == '\'') {
      t.k = term::kind::atom;
      t.text = quoted('\'');
      return t;
    }
    if (c == '<' && s_.substr(pos_, 3) == "<<\"") {
      // A binary <<"...">> is accepted like a string.
      pos_ += 2;
      t.k = term::kind::string;
      t.text = quoted('"');
      if (s_.substr(pos_, 2) != ">>") {
        fail("expected '>>'");
      }
      pos_ += 2;
      return t;
    }
    if ((c >= 'a' && c <= 'z')) {
      t.k = term::kind::atom;
      while (pos_ < s_.size() && (std::isalnum(static_cast<unsigned char>(s_[pos_])) ||
                                  s_[pos_] == '_' || s_[pos_] == '@')) {
        t.text += s_[pos_++];
      }
      return t;
    }
    fail(std::string("unexpected character '") + c + "'");
  }

  std::string quoted(char q) {
    ++pos_;
    std::string out;
    while (pos_ < s_.size() && s_[pos_] != q) {
      char c = s_[pos_++];
      if (c == '\n') {
        fail("line break inside a quoted text");
      }
      if (c == '\\' && pos_ < s_.size()) {
        char e = s_[pos_++];
        out += e == 'n' ? '\n' : e == 't' ? '\t' : e;
        continue;
      }
      out += c;
    }
    if (pos_ >= s_.size()) {
      fail("unterminated quoted text");
    }
    ++pos_;
    return out;
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  unsigned line_ = 1;
};

bool is_atom(const term& t, std::string_view name) {
  return t.k == term::kind::atom && t.text == name;
}

bool has_placeholders(std::string_view s) {
  if (s.find("%u") != std::string_view::npos || s.find("%c") != std::string_view::npos) {
    return true;
  }
  std::size_t start = 0;
  for (;;) {
    auto end = s.find('/', start);
    auto level = s.substr(start, end == std::string_view::npos ? s.npos : end - start);
    if (level == "$u" || level == "$c") {
      return true;
    }
    if (end == std::string_view::npos) {
      return false;
    }
    start = end + 1;
  }
}

who to_who(const term& t) {
  if (is_atom(t, "all")) {
    return who{};
  }
  if (t.k != term::kind::tuple || t.items.size() != 2 || t.items[0].k != term::kind::atom) {
    throw parse_failure{t.line,
                        "expected all, {user, \"u\"}, {client, \"c\"}, {ipaddr, \"a.b.c.d/n\"}, "
                        "{'and', [...]} or {'or', [...]}"};
  }
  const auto& tag = t.items[0].text;
  const auto& arg = t.items[1];
  who w;
  if (tag == "user" || tag == "client") {
    w.k = tag == "user" ? who::kind::user : who::kind::client;
    if (is_atom(arg, "all")) {
      w.any = true;
    } else if (arg.k == term::kind::string) {
      w.name = arg.text;
    } else {
      throw parse_failure{arg.line, tag + ": expected a string or all"};
    }
    return w;
  }
  if (tag == "ipaddr") {
    if (arg.k != term::kind::string) {
      throw parse_failure{arg.line, "ipaddr: expected a string"};
    }
    auto c = cidr::parse(arg.text);
    if (!c) {
      throw parse_failure{arg.line, "ipaddr: bad address or CIDR \"" + arg.text + "\""};
    }
    w.k = who::kind::ipaddr;
    w.net = *c;
    return w;
  }
  if (tag == "and" || tag == "or") {
    if (arg.k != term::kind::list || arg.items.empty()) {
      throw parse_failure{arg.line, tag + ": expected a non-empty list"};
    }
    w.k = tag == "and" ? who::kind::and_ : who::kind::or_;
    for (const auto& s : arg.items) {
      w.subs.push_back(to_who(s));
    }
    return w;
  }
  throw parse_failure{t.line, "unknown who '" + tag + "'"};
}

topic_item to_topic(const term& t) {
  topic_item item;
  if (t.k == term::kind::string) {
    item.text = t.text;
  } else if (t.k == term::kind::tuple && t.items.size() == 2 && is_atom(t.items[0], "eq") &&
             t.items[1].k == term::kind::string) {
    item.text = t.items[1].text;
    item.eq = true;
  } else {
    throw parse_failure{t.line, "expected a topic string or {eq, \"topic\"}"};
  }
  if (item.text.empty()) {
    throw parse_failure{t.line, "empty topic"};
  }
  item.has_placeholders = !item.eq && has_placeholders(item.text);
  return item;
}

acl_rule to_rule(const term& t) {
  if (t.k != term::kind::tuple || (t.items.size() != 2 && t.items.size() != 4)) {
    throw parse_failure{t.line, "expected {allow|deny, Who, Access, Topics} or {allow|deny, all}"};
  }
  acl_rule r;
  r.line = t.line;
  const auto& eff = t.items[0];
  if (is_atom(eff, "allow")) {
    r.effect = decision::allow;
  } else if (is_atom(eff, "deny")) {
    r.effect = decision::deny;
  } else {
    throw parse_failure{eff.line, "expected allow or deny"};
  }
  if (t.items.size() == 2) {
    if (!is_atom(t.items[1], "all")) {
      throw parse_failure{t.items[1].line, "a two-element rule must be {allow|deny, all}"};
    }
    r.all_topics = true;
    return r;
  }
  r.w = to_who(t.items[1]);
  const auto& access = t.items[2];
  if (is_atom(access, "publish")) {
    r.for_subscribe = false;
  } else if (is_atom(access, "subscribe")) {
    r.for_publish = false;
  } else if (!is_atom(access, "pubsub")) {
    throw parse_failure{access.line, "expected publish, subscribe or pubsub"};
  }
  const auto& topics = t.items[3];
  if (topics.k == term::kind::list) {
    for (const auto& i : topics.items) {
      r.topics.push_back(to_topic(i));
    }
  } else if (topics.k == term::kind::string) {
    r.topics.push_back(to_topic(topics));
  } else {
    throw parse_failure{topics.line, "expected a list of topics"};
  }
  return r;
}

std::vector<std::string_view> split_ws(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) {
      ++i;
    }
    std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      ++i;
    }
    if (i > start) {
      out.push_back(line.substr(start, i - start));
    }
  }
  return out;
}

bool item_matches(const topic_item& item, const client_info& c, std::string_view topic) {
  if (item.eq) {
    return item.text == topic;
  }
  if (!item.has_placeholders) {
    return acl_topic_matches(item.text, topic);
  }
  auto expanded = expand_placeholders(item.text, c);
  return expanded && acl_topic_matches(*expanded, topic);
}

}  // namespace

bool who::matches(const client_info& c) const {
  switch (k) {
    case kind::all:
      return true;
    case kind::user:
      return c.username && (any || *c.username == name);
    case kind::client:
      return any || c.client_id == name;
    case kind::ipaddr:
      return c.address && net.contains(*c.address);
    case kind::anonymous:
      return !c.username;
    case kind::and_:
      for (const auto& s : subs) {
        if (!s.matches(c)) {
          return false;
        }
      }
      return true;
    case kind::or_:
      for (const auto& s : subs) {
        if (s.matches(c)) {
          return true;
        }
      }
      return false;
  }
  return false;
}

bool acl_topic_matches(std::string_view filter, std::string_view topic) {
  if (!topic.empty() && topic.front() == '$' && !filter.empty() &&
      (filter.front() == '+' || filter.front() == '#')) {
    return false;
  }
  std::size_t f = 0;
  std::size_t t = 0;
  for (;;) {
    auto fe = filter.find('/', f);
    auto flevel = filter.substr(f, fe == std::string_view::npos ? filter.npos : fe - f);
    if (flevel == "#") {
      return true;  // also matches the parent level ("a/#" covers "a")
    }
    if (t > topic.size()) {
      return false;
    }
    auto te = topic.find('/', t);
    auto tlevel = topic.substr(t, te == std::string_view::npos ? topic.npos : te - t);
    if (flevel != "+" && flevel != tlevel) {
      return false;
    }
    bool f_end = fe == std::string_view::npos;
    bool t_end = te == std::string_view::npos;
    if (f_end || t_end) {
      if (f_end && t_end) {
        return true;
      }
      // "a/#" matches "a": the filter continues with exactly "/#".
      return t_end && filter.substr(fe) == "/#";
    }
    f = fe + 1;
    t = te + 1;
  }
}

std::optional<std::string> expand_placeholders(std::string_view pattern, const client_info& c) {
  std::string out;
  out.reserve(pattern.size() + 16);
  std::size_t start = 0;
  for (;;) {
    auto end = pattern.find('/', start);
    auto level = pattern.substr(start, end == std::string_view::npos ? pattern.npos : end - start);
    if (level == "$u") {
      if (!c.username) {
        return std::nullopt;
      }
      out += *c.username;
    } else if (level == "$c") {
      out += c.client_id;
    } else {
      for (std::size_t i = 0; i < level.size(); ++i) {
        if (level[i] == '%' && i + 1 < level.size() &&
            (level[i + 1] == 'u' || level[i + 1] == 'c')) {
          if (level[i + 1] == 'u') {
            if (!c.username) {
              return std::nullopt;
            }
            out += *c.username;
          } else {
            out += c.client_id;
          }
          ++i;
        } else {
          out += level[i];
        }
      }
    }
    if (end == std::string_view::npos) {
      return out;
    }
    out += '/';
    start = end + 1;
  }
}

std::variant<acl, acl_error> acl::parse_emqttd(std::string_view text, const std::string& origin) {
  std::vector<acl_rule> rules;
  try {
    term_reader reader(text);
    while (auto t = reader.next()) {
      rules.push_back(to_rule(*t));
    }
  } catch (const parse_failure& f) {
    return acl_error{origin + ":" + std::to_string(f.line) + ": " + f.what};
  }
  return acl(std::move(rules));
}

std::variant<acl, acl_error> acl::parse_mosquitto(std::string_view text,
                                                  const std::string& origin) {
  // Mosquitto checks the client's own `user` block (or the anonymous block before any
  // `user` line), then the patterns; within them the first entry whose topic matches and
  // which grants or denies the requested access decides.
  std::vector<acl_rule> user_rules;
  std::vector<acl_rule> pattern_rules;
  std::optional<std::string> current_user;
  unsigned lineno = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    auto nl = text.find('\n', pos);
    auto line = text.substr(pos, nl == std::string_view::npos ? text.npos : nl - pos);
    pos = nl == std::string_view::npos ? text.size() + 1 : nl + 1;
    ++lineno;
    if (!line.empty() && line.back() == '\r') {
      line.remove_suffix(1);
    }
    auto words = split_ws(line);
    if (words.empty() || words[0].front() == '#') {
      continue;
    }
    auto err = [&](const std::string& what) {
      return acl_error{origin + ":" + std::to_string(lineno) + ": " + what};
    };
    if (words[0] == "user") {
      if (words.size() < 2) {
        return err("user: missing user name");
      }
      // A user name may contain spaces: everything after "user ".
      auto name_start = static_cast<std::size_t>(words[1].data() - line.data());
      current_user = std::string(line.substr(name_start));
      while (!current_user->empty() &&
             (current_user->back() == ' ' || current_user->back() == '\t')) {
        current_user->pop_back();
      }
      continue;
    }
    if (words[0] != "topic" && words[0] != "pattern") {
      return err("unknown directive '" + std::string(words[0]) +
                 "' (expected topic, pattern or user)");
    }
    acl_rule r;
    r.line = lineno;
    r.effect = decision::allow;
    if (words.size() < 2) {
      return err(std::string(words[0]) + ": missing topic");
    }
    std::size_t topic_word = 1;
    auto access = words[1];
    bool is_access =
        access == "read" || access == "write" || access == "readwrite" || access == "deny";
    if (is_access && words.size() < 3) {
      return err(std::string(words[0]) + ": missing topic after '" + std::string(access) + "'");
    }
    if (is_access) {
      topic_word = 2;
      if (access == "read") {
        r.for_publish = false;
      } else if (access == "write") {
        r.for_subscribe = false;
      } else if (access == "deny") {
        r.effect = decision::deny;
      }
    }
    // The topic is the rest of the line (topics may contain spaces).
    auto tstart = static_cast<std::size_t>(words[topic_word].data() - line.data());
    std::string topic(line.substr(tstart));
    while (!topic.empty() && (topic.back() == ' ' || topic.back() == '\t')) {
      topic.pop_back();
    }
    topic_item item;
    item.text = topic;
    if (words[0] == "pattern") {
      item.has_placeholders = has_placeholders(topic);
      r.topics.push_back(std::move(item));
      pattern_rules.push_back(std::move(r));
    } else {
      if (current_user) {
        r.w.k = who::kind::user;
        r.w.name = *current_user;
      } else {
        r.w.k = who::kind::anonymous;
      }
      r.topics.push_back(std::move(item));
      user_rules.push_back(std::move(r));
    }
  }
  for (auto& r : pattern_rules) {
    user_rules.push_back(std::move(r));
  }
  return acl(std::move(user_rules));
}

std::variant<acl, acl_error> acl::load_file(const std::string& path, const std::string& format) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return acl_error{path + ": cannot open file"};
  }
  std::stringstream ss;
  ss << in.rdbuf();
  if (format == "mosquitto") {
    return parse_mosquitto(ss.str(), path);
  }
  return parse_emqttd(ss.str(), path);
}

std::optional<decision> acl::check(const client_info& c, access_kind k,
                                   std::string_view topic) const {
  unsigned line = 0;
  return check(c, k, topic, line);
}

std::optional<decision> acl::check(const client_info& c, access_kind k, std::string_view topic,
                                   unsigned& line) const {
  for (const auto& r : rules_) {
    if (k == access_kind::publish ? !r.for_publish : !r.for_subscribe) {
      continue;
    }
    if (!r.w.matches(c)) {
      continue;
    }
    bool hit = r.all_topics;
    for (std::size_t i = 0; !hit && i < r.topics.size(); ++i) {
      hit = item_matches(r.topics[i], c, topic);
    }
    if (hit) {
      line = r.line;
      return r.effect;
    }
  }
  line = 0;
  return std::nullopt;
}

}  // namespace tern::actors::access
