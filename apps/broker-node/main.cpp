// broker-node: starts one Tern node from etc/tern.toml (or embedded defaults) and flags.
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <CLI/CLI.hpp>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include "actors/broker/node.hpp"
#include "actors/config/config.hpp"
#include "actors/mgmt/service.hpp"

namespace {

namespace cfg = tern::actors::config;

struct flags {
  std::string config_file;
  std::string listen;
  std::string node_name;
  std::string data_dir;
  std::string log_level;
  std::string cluster_listen;
  std::string advertise;
  std::vector<std::string> join;
  std::string cookie;
};

/// Applies command-line overrides on top of the file; returns an error message or "".
std::string apply_flags(const flags& f, cfg::config& c) {
  if (!f.listen.empty()) {
    if (!cfg::split_host_port(f.listen)) {
      return "--listen: expected host:port, got \"" + f.listen + "\"";
    }
    c.listeners.erase("tcp.default");
    cfg::listener_config l{"default"};
    l.bind = f.listen;
    c.listeners["tcp.default"] = l;
  }
  if (!f.node_name.empty()) {
    c.node_name = f.node_name;
  }
  if (!f.data_dir.empty()) {
    c.data_dir = f.data_dir;
  }
  if (!f.log_level.empty()) {
    c.log_level = f.log_level;
  }
  if (!f.cluster_listen.empty()) {
    if (!cfg::split_host_port(f.cluster_listen)) {
      return "--cluster-listen: expected host:port, got \"" + f.cluster_listen + "\"";
    }
    c.cluster.listen = f.cluster_listen;
  }
  if (!f.advertise.empty()) {
    if (!cfg::split_host_port(f.advertise)) {
      return "--advertise: expected host:port, got \"" + f.advertise + "\"";
    }
    c.cluster.advertise = f.advertise;
  }
  for (auto& j : f.join) {
    if (!cfg::split_host_port(j)) {
      return "--join: expected host:port, got \"" + j + "\"";
    }
    c.cluster.seeds.push_back(j);
  }
  if (!f.cookie.empty()) {
    c.cluster.cookie = f.cookie;
  }
  if (c.cluster.cookie.empty()) {
    // Last resort, so that the secret need not appear in the command line or the file
    // (e.g. a Kubernetes Secret mapped into the environment).
    if (const char* env = std::getenv("TERN_COOKIE"); env != nullptr) {
      c.cluster.cookie = env;
    }
  }
  if (!c.cluster.seeds.empty() && !c.cluster.enabled()) {
    return "--join / cluster.seeds need a cluster listener (--cluster-listen or cluster.listen)";
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"Tern MQTT broker node"};
  flags f;
  app.add_option("-c,--config", f.config_file, "TOML configuration file (etc/tern.toml)");
  app.add_option("--listen", f.listen, "MQTT/TCP listener address host:port (default listener)");
  app.add_option("--node-name", f.node_name, "node name, e.g. tern@host");
  app.add_option("--data-dir", f.data_dir, "directory for the node's persistent state");
  app.add_option("--log-level", f.log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  app.add_option("--cluster-listen", f.cluster_listen,
                 "cluster listener host:port (enables clustering), e.g. 127.0.0.1:4370");
  app.add_option("--advertise", f.advertise,
                 "host:port the other nodes dial to reach this node (a DNS name is fine); "
                 "default: the cluster listen address");
  app.add_option("--join", f.join, "host:port of a cluster member to join (repeatable)");
  app.add_option("--cookie", f.cookie,
                 "cluster cookie (shared secret of the cluster's nodes); when neither this nor "
                 "cluster.cookie is set, the TERN_COOKIE environment variable");
  CLI11_PARSE(app, argc, argv);

  cfg::config c;
  if (!f.config_file.empty()) {
    auto r = cfg::load_file(f.config_file);
    if (auto* err = std::get_if<cfg::config_error>(&r)) {
      std::fprintf(stderr, "broker-node: config error: %s\n", err->message.c_str());
      return 2;
    }
    c = std::get<cfg::config>(std::move(r));
  }
  if (auto err = apply_flags(f, c); !err.empty()) {
    std::fprintf(stderr, "broker-node: %s\n", err.c_str());
    return 2;
  }

  auto logger = spdlog::stderr_color_mt("tern");
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(c.log_level));
  spdlog::set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");

  // Signals are taken synchronously by this thread; every other thread blocks them.
  sigset_t sigs;
  sigemptyset(&sigs);
  sigaddset(&sigs, SIGINT);
  sigaddset(&sigs, SIGTERM);
  sigaddset(&sigs, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  auto node = std::make_unique<tern::actors::broker::node>(c);
  if (auto err = node->start()) {
    // What the node needs at start (its store, its files, its ports) is not there: restarting
    // it as it is cannot help, so the exit code says "fix the setup" like a config error.
    spdlog::error("{}", *err);
    return 2;
  }
  auto mgmt = std::make_unique<tern::actors::mgmt::service>(node->system(), node->shared_context());
  if (auto err = mgmt->start()) {
    spdlog::error("{}", *err);
    node->stop();
    return 1;
  }
  int sig = 0;
  // SIGHUP re-reads the ACL, password and client id files; SIGINT/SIGTERM stop.
  while (sigwait(&sigs, &sig) == 0 && sig == SIGHUP) {
    auto err = node->reload_access();
    if (err.empty()) {
      spdlog::info("SIGHUP: access files reloaded");
    } else {
      spdlog::error("SIGHUP: reload failed, previous rules kept: {}", err);
    }
  }
  spdlog::info("received signal {}, shutting down", sig);
  // A watchdog: a stop that hangs must not keep the process (and its port) forever.
  std::thread([] {
    std::this_thread::sleep_for(std::chrono::seconds(10));
    std::fprintf(stderr, "broker-node: shutdown took too long, exiting\n");
    std::_Exit(3);
  }).detach();
  mgmt->stop();
  node->stop();
  mgmt.reset();
  node.reset();
  return 0;
}
