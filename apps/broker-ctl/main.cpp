// broker-ctl: administer a Tern node through its management HTTP API.
//
// Exit codes: 0 success, 1 the node refused or failed the request (not found, not clustered,
// not supported, bad input), 2 usage error, 3 the node could not be reached or answered
// garbage, 4 authentication failed.
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <iostream>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "actors/mgmt/http_auth.hpp"
#include "apps/broker-ctl/http_client.hpp"
#include "apps/broker-ctl/render.hpp"

namespace {

using json = nlohmann::json;
using tern::ctl::key_values;
using tern::ctl::table;
using tern::ctl::url_encode;

enum exit_code { ok = 0, refused = 1, usage = 2, unreachable = 3, unauthorized = 4 };

struct options {
  std::string host = "127.0.0.1:18083";
  std::string user;  // "name:password"
  std::string api_key;
  bool json_out = false;
  bool tls = false;
  bool insecure = false;
  std::string ca_file;
  int timeout = 10;
};

std::string str(const json& j) {
  if (j.is_string()) {
    return j.get<std::string>();
  }
  if (j.is_null()) {
    return "-";
  }
  return j.dump();
}

std::string field(const json& j, const char* key) {
  return j.is_object() && j.contains(key) ? str(j[key]) : "-";
}

class ctl {
 public:
  explicit ctl(options o) : o_(std::move(o)) {}

  /// Calls the API; on success hands the parsed body to `show` (or prints JSON with --json).
  int call(const std::string& method, const std::string& target, const json& body,
           const std::function<void(const json&)>& show) {
    tern::ctl::endpoint ep;
    auto colon = o_.host.rfind(':');
    if (colon == std::string::npos || colon == 0 || colon + 1 == o_.host.size()) {
      std::fprintf(stderr, "broker-ctl: --host must be host:port, got \"%s\"\n", o_.host.c_str());
      return usage;
    }
    ep.host = o_.host.substr(0, colon);
    if (ep.host.size() > 2 && ep.host.front() == '[' && ep.host.back() == ']') {
      ep.host = ep.host.substr(1, ep.host.size() - 2);
    }
    ep.port = o_.host.substr(colon + 1);
    ep.tls = o_.tls;
    ep.verify = !o_.insecure;
    ep.ca_file = o_.ca_file;
    ep.timeout = std::chrono::seconds(o_.timeout);
    std::string auth;
    if (!o_.api_key.empty()) {
      auth = "Bearer " + o_.api_key;
    } else if (!o_.user.empty()) {
      auth = "Basic " + tern::actors::mgmt::base64_encode(o_.user);
    }
    auto r = tern::ctl::request(ep, method, "/api/v1/" + target,
                                body.is_null() ? std::string() : body.dump(), auth);
    if (auto* err = std::get_if<std::string>(&r)) {
      std::fprintf(stderr, "broker-ctl: %s\n", err->c_str());
      return unreachable;
    }
    auto& rep = std::get<tern::ctl::reply>(r);
    auto j = json::parse(rep.body, nullptr, false);
    if (j.is_discarded()) {
      std::fprintf(stderr, "broker-ctl: the node answered %u with a non-JSON body\n", rep.status);
      return unreachable;
    }
    if (rep.status == 401) {
      std::fprintf(stderr, "broker-ctl: %s (give --user NAME:PASSWORD or --api-key KEY)\n",
                   field(j, "error").c_str());
      return unauthorized;
    }
    if (rep.status < 200 || rep.status >= 300) {
      std::fprintf(stderr, "broker-ctl: %s (HTTP %u)\n", field(j, "error").c_str(), rep.status);
      return refused;
    }
    if (o_.json_out) {
      std::cout << j.dump(2) << "\n";
    } else {
      show(j);
    }
    return ok;
  }

 private:
  options o_;
};

void print(const std::string& s) { std::cout << s; }

json items(const json& j) { return j.is_object() && j.contains("items") ? j["items"] : j; }

void footer(const json& j) {
  if (j.is_object() && j.contains("total")) {
    auto shown = j["items"].size();
    auto total = j["total"].get<std::size_t>();
    std::cout << shown << " of " << total << " shown";
    if (shown < total) {
      std::cout << " (use --page/--limit)";
    }
    std::cout << "\n";
  }
  if (j.is_object() && j.contains("missing_nodes")) {
    std::string names;
    for (auto& n : j["missing_nodes"]) {
      names += (names.empty() ? "" : ", ") + str(n);
    }
    std::cerr << "warning: no answer from " << names << ": their entries are missing\n";
  }
}

void show_clients(const json& j) {
  std::vector<std::vector<std::string>> rows;
  for (auto& c : items(j)) {
    rows.push_back({field(c, "clientid"), field(c, "username"), field(c, "node"),
                    field(c, "ipaddress"), field(c, "proto_name"), field(c, "keepalive"),
                    field(c, "clean_start"), field(c, "connected_at")});
  }
  print(table({"CLIENT ID", "USERNAME", "NODE", "ADDRESS", "PROTOCOL", "KEEPALIVE", "CLEAN",
               "CONNECTED AT"},
              rows));
  footer(j);
}

void show_subscription_rows(const json& list) {
  std::vector<std::vector<std::string>> rows;
  for (auto& s : list) {
    rows.push_back({field(s, "clientid"), field(s, "topic"), field(s, "qos")});
  }
  print(table({"CLIENT ID", "TOPIC", "QOS"}, rows));
}

void show_session(const json& s) {
  print(key_values({{"client id", field(s, "clientid")},
                    {"connected", field(s, "connected")},
                    {"inflight", field(s, "inflight") + " / " + field(s, "max_inflight")},
                    {"queue length", field(s, "queue_len")},
                    {"awaiting PUBREL", field(s, "awaiting_rel")},
                    {"expiry (ms)", field(s, "expiry_interval_ms")},
                    {"subscriptions", field(s, "subscriptions_count")}}));
  if (s.contains("subscriptions") && !s["subscriptions"].empty()) {
    std::vector<std::vector<std::string>> rows;
    for (auto& sub : s["subscriptions"]) {
      rows.push_back({field(sub, "topic"), field(sub, "qos")});
    }
    std::cout << "\n";
    print(table({"TOPIC", "QOS"}, rows));
  }
}

void show_stats(const json& stats) {
  std::vector<std::vector<std::string>> rows;
  for (auto& [k, v] : stats.items()) {
    rows.push_back({k, str(v)});
  }
  print(table({"STAT", "VALUE"}, rows));
}

std::string paging_query(int page, int limit,
                         const std::vector<std::pair<std::string, std::string>>& f) {
  std::string q = "?page=" + std::to_string(page) + "&limit=" + std::to_string(limit);
  for (auto& [k, v] : f) {
    if (!v.empty()) {
      q += "&" + k + "=" + url_encode(v);
    }
  }
  return q;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"broker-ctl: administer a Tern MQTT broker node over its HTTP API"};
  app.require_subcommand(1);
  options o;
  if (const char* h = std::getenv("TERN_CTL_HOST")) {
    o.host = h;
  }
  if (const char* u = std::getenv("TERN_CTL_USER")) {
    o.user = u;
  }
  if (const char* k = std::getenv("TERN_CTL_API_KEY")) {
    o.api_key = k;
  }
  app.add_option("--host", o.host, "management API address host:port (env TERN_CTL_HOST)")
      ->capture_default_str();
  app.add_option("-u,--user", o.user, "basic auth NAME:PASSWORD (env TERN_CTL_USER)");
  app.add_option("--api-key", o.api_key, "bearer API key (env TERN_CTL_API_KEY)");
  app.add_flag("--json", o.json_out, "print the API's JSON instead of tables");
  app.add_flag("--tls", o.tls, "use HTTPS");
  app.add_flag("--insecure", o.insecure, "with --tls: do not verify the server certificate");
  app.add_option("--cafile", o.ca_file, "with --tls: trust this CA certificate (PEM)");
  app.add_option("--timeout", o.timeout, "seconds to wait for the node")
      ->capture_default_str()
      ->check(CLI::Range(1, 3600));

  std::function<int(ctl&)> action;
  auto on = [&](CLI::App* cmd, std::function<int(ctl&)> f) {
    cmd->callback([&action, f] { action = f; });
  };

  // status, broker
  on(app.add_subcommand("status", "is the node running"), [](ctl& c) {
    return c.call("GET", "status", nullptr, [](const json& j) {
      std::cout << "Node " << field(j, "node") << " is " << field(j, "status") << " (Tern "
                << field(j, "version") << ", up " << field(j, "uptime") << ")\n";
    });
  });
  on(app.add_subcommand("broker", "version, uptime and stats of the node"), [](ctl& c) {
    return c.call("GET", "status", nullptr, [](const json& j) {
      print(key_values({{"sysdescr", field(j, "sysdescr")},
                        {"version", field(j, "version")},
                        {"uptime", field(j, "uptime")},
                        {"datetime", field(j, "datetime")}}));
      std::cout << "\n";
      show_stats(j["stats"]);
    });
  });

  // cluster
  auto* cluster = app.add_subcommand("cluster", "cluster membership");
  cluster->require_subcommand(1);
  on(cluster->add_subcommand("status", "running and stopped nodes"), [](ctl& c) {
    return c.call("GET", "cluster", nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& n : j.value("nodes", json::array())) {
        auto inc = n.value("incarnation", std::uint64_t{0});
        rows.push_back({field(n, "name") + (n.value("self", false) ? " (this node)" : ""),
                        field(n, "status"), n.contains("address") ? field(n, "address") : "-",
                        inc == 0 ? "-" : std::to_string(inc)});
      }
      print(table({"NODE", "STATUS", "ADDRESS", "INCARNATION"}, rows));
      if (!j.value("clustered", false)) {
        std::cout << "(stand-alone node, not clustered)\n";
      }
    });
  });
  static std::string cluster_arg;
  auto* join = cluster->add_subcommand("join", "join the cluster of another node");
  join->add_option("node", cluster_arg, "host:port of a member")->required();
  on(join, [](ctl& c) {
    return c.call("POST", "cluster/join", json{{"node", cluster_arg}},
                  [](const json& j) { std::cout << field(j, "result") << "\n"; });
  });
  on(cluster->add_subcommand("leave", "leave the cluster"), [](ctl& c) {
    return c.call("POST", "cluster/leave", json::object(),
                  [](const json& j) { std::cout << field(j, "result") << "\n"; });
  });
  auto* remove = cluster->add_subcommand("remove", "remove a (stopped) node from the cluster");
  remove->add_option("node", cluster_arg, "node name")->required();
  on(remove, [](ctl& c) {
    return c.call("POST", "cluster/remove", json{{"node", cluster_arg}},
                  [](const json& j) { std::cout << field(j, "result") << "\n"; });
  });

  // clients
  static std::string id;
  static std::string f_clientid;
  static std::string f_username;
  static std::string f_node;
  static int page = 1;
  static int limit = 1000;
  auto add_paging = [](CLI::App* cmd) {
    cmd->add_option("--page", page, "page number (from 1)")->check(CLI::Range(1, 1000000000));
    cmd->add_option("--limit", limit, "items per page")->check(CLI::Range(1, 10000));
  };
  auto* clients = app.add_subcommand("clients", "connected clients");
  clients->require_subcommand(1);
  auto* clients_list = clients->add_subcommand("list", "list connected clients");
  clients_list->add_option("--clientid", f_clientid, "only this client id");
  clients_list->add_option("--username", f_username, "only this username");
  clients_list->add_option("--node", f_node, "only the clients of this cluster node");
  add_paging(clients_list);
  on(clients_list, [](ctl& c) {
    return c.call(
        "GET",
        "clients" + paging_query(page, limit,
                                 {{"clientid", f_clientid}, {"username", f_username},
                                  {"node", f_node}}),
        nullptr, show_clients);
  });
  auto* clients_show = clients->add_subcommand("show", "details of one client");
  clients_show->add_option("clientid", id)->required();
  on(clients_show, [](ctl& c) {
    return c.call("GET", "clients/" + url_encode(id), nullptr, [](const json& j) {
      print(key_values({{"client id", field(j, "clientid")},
                        {"username", field(j, "username")},
                        {"node", field(j, "node")},
                        {"address", field(j, "ipaddress")},
                        {"protocol", field(j, "proto_name")},
                        {"keepalive", field(j, "keepalive")},
                        {"clean start", field(j, "clean_start")},
                        {"connected at", field(j, "connected_at")},
                        {"inflight", field(j, "inflight")},
                        {"queue length", field(j, "queue_len")}}));
      if (j.contains("subscriptions") && !j["subscriptions"].empty()) {
        std::cout << "\n";
        std::vector<std::vector<std::string>> rows;
        for (auto& s : j["subscriptions"]) {
          rows.push_back({field(s, "topic"), field(s, "qos")});
        }
        print(table({"TOPIC", "QOS"}, rows));
      }
    });
  });
  auto* kick = clients->add_subcommand("kick", "disconnect a client");
  kick->add_option("clientid", id)->required();
  on(kick, [](ctl& c) {
    return c.call("DELETE", "clients/" + url_encode(id), nullptr,
                  [](const json&) { std::cout << "client " << id << " kicked\n"; });
  });

  // sessions
  auto* sessions = app.add_subcommand("sessions", "sessions (online and offline)");
  sessions->require_subcommand(1);
  auto* sessions_list = sessions->add_subcommand("list", "list sessions");
  add_paging(sessions_list);
  on(sessions_list, [](ctl& c) {
    return c.call("GET", "sessions" + paging_query(page, limit, {}), nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& s : items(j)) {
        rows.push_back({field(s, "clientid"), field(s, "connected"), field(s, "inflight"),
                        field(s, "queue_len"), field(s, "subscriptions_count"),
                        field(s, "expiry_interval_ms")});
      }
      print(table({"CLIENT ID", "CONNECTED", "INFLIGHT", "QUEUED", "SUBSCRIPTIONS", "EXPIRY MS"},
                  rows));
      footer(j);
    });
  });
  auto* sessions_show = sessions->add_subcommand("show", "details of one session");
  sessions_show->add_option("clientid", id)->required();
  on(sessions_show,
     [](ctl& c) { return c.call("GET", "sessions/" + url_encode(id), nullptr, show_session); });

  // subscriptions
  auto* subs = app.add_subcommand("subscriptions", "subscriptions");
  subs->require_subcommand(1);
  auto* subs_list = subs->add_subcommand("list", "list subscriptions");
  subs_list->add_option("--clientid", f_clientid, "only this client id");
  add_paging(subs_list);
  on(subs_list, [](ctl& c) {
    return c.call("GET", "subscriptions" + paging_query(page, limit, {{"clientid", f_clientid}}),
                  nullptr, [](const json& j) {
                    show_subscription_rows(items(j));
                    footer(j);
                  });
  });
  auto* subs_show = subs->add_subcommand("show", "subscriptions of one client");
  subs_show->add_option("clientid", id)->required();
  on(subs_show, [](ctl& c) {
    return c.call("GET", "subscriptions/" + url_encode(id), nullptr, show_subscription_rows);
  });

  // routes, listeners, metrics
  auto* routes = app.add_subcommand("routes", "topic filter -> nodes");
  routes->require_subcommand(1);
  auto* routes_list = routes->add_subcommand("list", "list routes");
  add_paging(routes_list);
  on(routes_list, [](ctl& c) {
    return c.call("GET", "routes" + paging_query(page, limit, {}), nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& r : items(j)) {
        std::string nodes;
        for (auto& n : r["nodes"]) {
          nodes += (nodes.empty() ? "" : ",") + str(n);
        }
        rows.push_back({field(r, "topic"), nodes});
      }
      print(table({"TOPIC", "NODES"}, rows));
      footer(j);
    });
  });
  on(app.add_subcommand("listeners", "the node's listeners"), [](ctl& c) {
    return c.call("GET", "listeners", nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& l : j) {
        rows.push_back({field(l, "name"), field(l, "protocol"), field(l, "bind"),
                        field(l, "current_connections"), field(l, "max_connections")});
      }
      print(table({"NAME", "PROTOCOL", "BIND", "CONNECTIONS", "MAX"}, rows));
    });
  });
  on(app.add_subcommand("metrics", "counters and stats"), [](ctl& c) {
    return c.call("GET", "metrics", nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& [k, v] : j["metrics"].items()) {
        rows.push_back({k, str(v)});
      }
      print(table({"METRIC", "VALUE"}, rows));
      std::cout << "\n";
      show_stats(j["stats"]);
    });
  });

  // publish
  static std::string topic;
  static std::string payload;
  static int qos = 0;
  static bool retain = false;
  auto* publish = app.add_subcommand("publish", "publish a message");
  publish->add_option("topic", topic)->required();
  publish->add_option("payload", payload)->required();
  publish->add_option("-q,--qos", qos, "QoS 0, 1 or 2")->check(CLI::Range(0, 2));
  publish->add_flag("-r,--retain", retain, "retain the message");
  on(publish, [](ctl& c) {
    return c.call("POST", "publish",
                  json{{"topic", topic}, {"payload", payload}, {"qos", qos}, {"retain", retain}},
                  [](const json& j) {
                    std::cout << "published to " << field(j, "topic") << " ("
                              << field(j, "delivered_to") << " subscribers on this node)\n";
                  });
  });

  // users, acl
  static std::string username;
  static std::string password;
  auto* users = app.add_subcommand("users", "users of the password file");
  users->require_subcommand(1);
  on(users->add_subcommand("list", "list users"), [](ctl& c) {
    return c.call("GET", "users", nullptr, [](const json& j) {
      std::vector<std::vector<std::string>> rows;
      for (auto& u : items(j)) {
        rows.push_back({u.is_object() ? field(u, "username") : str(u)});
      }
      print(table({"USERNAME"}, rows));
    });
  });
  auto* users_add = users->add_subcommand("add", "add a user");
  users_add->add_option("username", username)->required();
  users_add->add_option("password", password)->required();
  on(users_add, [](ctl& c) {
    return c.call("POST", "users", json{{"username", username}, {"password", password}},
                  [](const json&) { std::cout << "user " << username << " added\n"; });
  });
  auto* users_passwd = users->add_subcommand("passwd", "change a user's password");
  users_passwd->add_option("username", username)->required();
  users_passwd->add_option("password", password)->required();
  on(users_passwd, [](ctl& c) {
    return c.call("PUT", "users/" + url_encode(username), json{{"password", password}},
                  [](const json&) { std::cout << "password of " << username << " changed\n"; });
  });
  auto* users_del = users->add_subcommand("del", "delete a user");
  users_del->add_option("username", username)->required();
  on(users_del, [](ctl& c) {
    return c.call("DELETE", "users/" + url_encode(username), nullptr,
                  [](const json&) { std::cout << "user " << username << " deleted\n"; });
  });
  auto* acl = app.add_subcommand("acl", "access control list");
  acl->require_subcommand(1);
  on(acl->add_subcommand("reload", "reload the ACL file"), [](ctl& c) {
    return c.call("POST", "acl/reload", json::object(),
                  [](const json&) { std::cout << "ACL reloaded\n"; });
  });

  // log level
  static std::string level;
  auto* log = app.add_subcommand("log", "logging");
  log->require_subcommand(1);
  auto* log_level = log->add_subcommand("level", "show or set the log level");
  log_level->add_option("level", level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  on(log_level, [](ctl& c) {
    if (level.empty()) {
      return c.call("GET", "log/level", nullptr,
                    [](const json& j) { std::cout << field(j, "level") << "\n"; });
    }
    return c.call("PUT", "log/level", json{{"level", level}}, [](const json& j) {
      std::cout << "log level set to " << field(j, "level") << "\n";
    });
  });

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? ok : usage;
  }
  if (!action) {
    std::cerr << app.help();
    return usage;
  }
  ctl c{o};
  return action(c);
}
