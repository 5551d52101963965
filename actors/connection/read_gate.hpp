// A publishing connection as seen by back-pressure (flow::backlog): pausing it stops reading
// its socket and makes its actor hold every PUBLISH it has not handled yet; letting it go
// reads again and replays what was held. Created on a connection's first PUBLISH.
#pragma once

#include <chrono>
#include <memory>

#include <caf/actor_cast.hpp>
#include <caf/send.hpp>

#include "actors/broker/types.hpp"
#include "actors/connection/conn_io.hpp"
#include "actors/session/backlog.hpp"

namespace tern::actors::connection {

class read_gate final : public flow::gate {
 public:
  read_gate(std::weak_ptr<conn_io> io, caf::actor_addr owner, std::chrono::milliseconds max_pause)
      : io_(std::move(io)), owner_(std::move(owner)), max_pause_(max_pause) {}

 protected:
  bool stop() override {
    auto io = io_.lock();
    // The socket is read again after max_pause even while the pause lasts: what it brings is
    // then held by the actor (PUBLISH) or handled (acknowledgements), so that the
    // acknowledgements behind a full hold still get through (two clients publishing to each
    // other, the node's budget) instead of waiting for the stall check.
    return io && io->pause_reading(max_pause_);
  }
  void go() override {
    if (auto io = io_.lock()) {
      io->resume_reading();
    }
    if (auto a = caf::actor_cast<caf::actor>(owner_)) {
      caf::anon_send(a, replay_atom::value);  // the PUBLISHes held while paused
    }
  }

 private:
  std::weak_ptr<conn_io> io_;
  caf::actor_addr owner_;
  std::chrono::milliseconds max_pause_;
};

}  // namespace tern::actors::connection
